"""The OpenAPI 3.1 document of the desk's API (``triage.desk.api``), served at
``/api/v1/openapi.json``. A test checks that it names every route the app serves, and only
those, and that it is a valid OpenAPI document."""

from __future__ import annotations

from typing import Any

from triage.desk.changes import CHANGE_KINDS, LEVELS, RISKS
from triage.desk.lifecycle import HYPOTHESIS_STATES, POSTABLE, ROLES
from triage.desk.schema import STATUSES
from triage.desk.updates import AUDIENCES, CHANNELS

VERSION = "1.0.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _ok(description: str, schema: dict[str, Any], code: str = "200") -> dict[str, Any]:
    return {code: {"description": description,
                   "content": {"application/json": {"schema": schema}}}}


ERRORS = {code: {"description": what, "content": {"application/json": {
    "schema": _ref("Error")}}} for code, what in (
    ("400", "the body is not a JSON object"),
    ("401", "no valid bearer token"),
    ("403", "the token's role may not do this"),
    ("404", "no such incident or entry"),
    ("409", "the incident's state does not allow it now"),
    ("422", "a field is wrong (named in the error)"))}

AT = {"description": "When it happened (RFC 3339 or epoch seconds); default: now.",
      "oneOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]}


def _write(summary: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"summary": summary, "security": [{"bearer": []}], "requestBody": _body(body),
            "responses": {**_ok("appended to the incident's log", _ref("Appended"), "201"),
                          **ERRORS}}


def _incident_id() -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


def _seq() -> dict[str, Any]:
    return {"name": "seq", "in": "path", "required": True, "schema": {"type": "integer"},
            "description": "The timeline entry's number."}


def document() -> dict[str, Any]:
    """The document."""
    by_id = [_incident_id()]
    return {
        "openapi": "3.1.0",
        "info": {"title": "triage incident desk", "version": VERSION,
                 "description": "Incidents triage raised, worked by responders: status, a "
                                "typed timeline, roles. Writes record the token's name."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "field", "reason"],
                          "properties": {"error": {"type": "string"},
                                         "field": {"type": "string"},
                                         "reason": {"type": "string"}}},
                "Incident": {"type": "object", "properties": {
                    "id": {"type": "string"}, "title": {"type": "string"},
                    "status": {"enum": list(STATUSES)},
                    "priority": {"enum": ["P1", "P2", "P3", "P4"]},
                    "services": {"type": "array", "items": {"type": "string"}},
                    "root_cause": {"type": ["string", "null"]},
                    "owner_team": {"type": ["string", "null"]},
                    "owner_person": {"type": ["string", "null"]},
                    "commander": {"type": ["string", "null"]},
                    "firing": {"type": "boolean"}, "alert_count": {"type": "integer"},
                    **{f"{s}_at": {"type": ["string", "null"], "format": "date-time"}
                       for s in STATUSES}}},
                "Entry": {"type": "object", "required": ["seq", "type", "at", "author"],
                          "properties": {"seq": {"type": "integer"},
                                         "type": {"type": "string"},
                                         "text": {"type": "string"},
                                         "at": {"type": "string", "format": "date-time"},
                                         "author": {"type": "string"},
                                         "pinned": {"type": "boolean"},
                                         "state": {"enum": list(HYPOTHESIS_STATES)}}},
                "Appended": {"type": "object", "properties": {
                    "appended": {"type": "array", "items": _ref("Entry")}}},
            },
        },
        "paths": {
            "/-/healthy": {"get": {"summary": "Health check (no token)",
                                   "responses": _ok("up", {"type": "object"})}},
            "/api/v1/openapi.json": {"get": {"summary": "This document (no token)",
                                             "responses": _ok("the document",
                                                              {"type": "object"})}},
            "/api/v1/incidents": {"get": {
                "summary": "Incidents, newest first", "security": [{"bearer": []}],
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"enum": list(STATUSES)},
                     "description": "repeatable"},
                    {"name": "priority", "in": "query", "schema": {"type": "string"},
                     "description": "repeatable"},
                    {"name": "q", "in": "query", "schema": {"type": "string"},
                     "description": "words each in the id, title, root cause, owner or "
                                    "commander"},
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 500}}],
                "responses": {**_ok("the incidents", {"type": "object", "properties": {
                    "incidents": {"type": "array", "items": _ref("Incident")}}}), **ERRORS}}},
            "/api/v1/incidents/{id}": {"get": {
                "summary": "One incident with its roles and timeline",
                "security": [{"bearer": []}], "parameters": by_id,
                "responses": {**_ok("the incident", {"type": "object", "properties": {
                    "incident": _ref("Incident"), "roles": {"type": "object"},
                    "timeline": {"type": "array", "items": _ref("Entry")}}}), **ERRORS}}},
            "/api/v1/incidents/{id}/status": {"post": {
                **_write("Move the status", {
                    "type": "object", "required": ["status"], "properties": {
                        "status": {"enum": list(STATUSES[1:])},
                        "reason": {"type": "string"}, "correct": {"type": "boolean"},
                        "at": AT}}), "parameters": by_id}},
            "/api/v1/incidents/{id}/entries": {"post": {
                **_write("Post a timeline entry", {
                    "type": "object", "required": ["type", "text"], "properties": {
                        "type": {"enum": list(POSTABLE)}, "text": {"type": "string"},
                        "pinned": {"type": "boolean"}, "at": AT}}), "parameters": by_id}},
            "/api/v1/incidents/{id}/entries/{seq}/judgement": {"post": {
                **_write("Confirm or refute a hypothesis", {
                    "type": "object", "required": ["state"], "properties": {
                        "state": {"enum": list(HYPOTHESIS_STATES)},
                        "reason": {"type": "string"}, "at": AT}}),
                "parameters": [*by_id, _seq()]}},
            "/api/v1/incidents/{id}/entries/{seq}/pin": {"post": {
                **_write("Pin or unpin an entry", {
                    "type": "object", "properties": {"pinned": {"type": "boolean"},
                                                     "at": AT}}),
                "parameters": [*by_id, _seq()]}},
            "/api/v1/incidents/{id}/roles": {"post": {
                **_write("Take a role (a handoff if someone holds it), or renounce it", {
                    "type": "object", "required": ["role"], "properties": {
                        "role": {"enum": list(ROLES)}, "person": {"type": "string"},
                        "renounce": {"type": "boolean"}, "note": {"type": "string"},
                        "at": AT}}), "parameters": by_id}},
            "/api/v1/incidents/{id}/mitigations": {"post": {
                **_write("Log a mitigation: the action, the hypothesis it tests, its success "
                         "criteria (PromQL, or a manual check) and their window", {
                             "type": "object", "required": ["action"], "properties": {
                                 "action": {"type": "string"},
                                 "hypothesis": {"type": "integer"},
                                 "promql": {"type": "string"}, "manual": {"type": "string"},
                                 "window": {"type": "number", "minimum": 0,
                                            "description": "seconds; default 600"},
                                 "at": AT}}), "parameters": by_id}},
            "/api/v1/incidents/{id}/mitigations/{seq}/checks": {"post": {
                **_write("Record a manual check of a mitigation's criteria", {
                    "type": "object", "required": ["holds"], "properties": {
                        "holds": {"type": "boolean"}, "value": {"type": "string"},
                        "at": AT}}), "parameters": [*by_id, _seq()]}},
            "/api/v1/incidents/{id}/mitigations/{seq}/outcome": {"post": {
                **_write("Set a mitigation's outcome", {
                    "type": "object", "required": ["outcome"], "properties": {
                        "outcome": {"enum": ["worked", "failed", "abandoned"]},
                        "note": {"type": "string"}, "at": AT}}),
                "parameters": [*by_id, _seq()]}},
            "/api/v1/incidents/{id}/changes": {"post": {
                **_write("Record an emergency change (written back as a change record)", {
                    "type": "object",
                    "required": ["service", "kind", "what", "why", "risk", "rollback"],
                    "properties": {"service": {"type": "string"},
                                   "kind": {"enum": list(CHANGE_KINDS)},
                                   "what": {"type": "string"}, "why": {"type": "string"},
                                   "risk": {"enum": list(RISKS)},
                                   "rollback": {"type": "string"},
                                   "approver": {"type": "string"}, "at": AT}}),
                "parameters": by_id}},
            "/api/v1/incidents/{id}/changes/{seq}/approval": {"post": {
                **_write("Approve an emergency change as the caller (a retro-approval when "
                         "after it; a high-risk one needs another person)",
                         {"type": "object", "properties": {"at": AT}}),
                "parameters": [*by_id, _seq()]}},
            "/api/v1/incidents/{id}/access": {"post": {
                **_write("Request just-in-time access", {
                    "type": "object", "required": ["resource", "level", "why", "minutes"],
                    "properties": {"who": {"type": "string"}, "resource": {"type": "string"},
                                   "level": {"enum": list(LEVELS)}, "why": {"type": "string"},
                                   "minutes": {"type": "number"}, "at": AT}}),
                "parameters": by_id}},
            "/api/v1/incidents/{id}/access/{seq}/decision": {"post": {
                **_write("Grant (until the requested time is up) or deny; never by the "
                         "requester", {"type": "object", "required": ["approve"],
                                       "properties": {"approve": {"type": "boolean"},
                                                      "note": {"type": "string"},
                                                      "at": AT}}),
                "parameters": [*by_id, _seq()]}},
            "/api/v1/incidents/{id}/access/{seq}/revoke": {"post": {
                **_write("Revoke a grant before it expires", {
                    "type": "object", "properties": {"reason": {"type": "string"},
                                                     "at": AT}}),
                "parameters": [*by_id, _seq()]}},
            "/api/v1/incidents/{id}/updates/draft": {"get": {
                "summary": "The status update template for an audience, filled in",
                "security": [{"bearer": []}],
                "parameters": [*by_id, {"name": "audience", "in": "query", "required": True,
                                        "schema": {"enum": list(AUDIENCES)}}],
                "responses": {**_ok("the draft", {"type": "object", "properties": {
                    "audience": {"type": "string"}, "text": {"type": "string"}}}),
                    **ERRORS}}},
            "/api/v1/incidents/{id}/updates": {"post": {
                **_write("Record a status update sent to an audience (the comms log); a "
                         "customer update naming an internal name is refused", {
                             "type": "object", "required": ["audience", "text"],
                             "properties": {"audience": {"enum": list(AUDIENCES)},
                                            "text": {"type": "string"},
                                            "channel": {"enum": list(CHANNELS)},
                                            "at": AT}}), "parameters": by_id}},
            "/metrics": {"get": {"summary": "Prometheus metrics (no token)",
                                 "responses": {"200": {"description": "text exposition",
                                                       "content": {"text/plain": {
                                                           "schema": {"type": "string"}}}}}}},
            "/api/v1/events": {"post": {
                "summary": "Triage's incident events (JSON Lines), applied once each "
                           "(admin)", "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {
                    "application/x-ndjson": {"schema": {"type": "string"}}}},
                "responses": {**_ok("what was applied", {"type": "object", "properties": {
                    "added": {"type": "integer"}, "duplicates": {"type": "integer"},
                    "rejected": {"type": "array", "items": {"type": "object"}}}}),
                    **ERRORS}}},
        },
    }
