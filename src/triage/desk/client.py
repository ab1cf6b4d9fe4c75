"""A small client of the desk's API, for the command line (``desk.api_url`` and
``desk.api_token`` set: ``triage incident ...`` goes through the API, and the writes are
recorded under the token's name)."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import orjson

from triage.errors import TriageError


class ApiError(TriageError):
    """The API refused (its error, the field it names, why) or could not be reached."""

    def __init__(self, status: int | None, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.status, self.field, self.reason = status, field, reason


class DeskClient:
    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        self.base = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = orjson.dumps(body) if body is not None else None
        request = urllib.request.Request(
            self.base + path, data=data, method=method,
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                doc = orjson.loads(exc.read())
                raise ApiError(exc.code, doc.get("field", ""), doc.get("reason", "")) from None
            except orjson.JSONDecodeError:
                raise ApiError(exc.code, "", f"HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(None, "", f"{self.base}: {exc}") from None

    def get(self, path: str, **query: Any) -> Any:
        pairs = [(k, v) for k, vs in query.items() if vs is not None
                 for v in (vs if isinstance(vs, list) else [vs])]
        return self._call("GET", path + ("?" + urllib.parse.urlencode(pairs) if pairs else ""))

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("POST", path, body)

    def incident_path(self, incident_id: str, suffix: str = "") -> str:
        return f"/api/v1/incidents/{urllib.parse.quote(incident_id, safe='')}{suffix}"
