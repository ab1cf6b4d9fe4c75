"""``triage serve``: receive alerts over HTTP, Alertmanager-compatible.

=========================  =====================================================================
``POST /api/v2/alerts``    Alertmanager API v2 alert list (what Prometheus posts to Alertmanager);
                           200 with an empty body, like Alertmanager
``POST /webhook``          Alertmanager webhook v4 receiver (what Alertmanager posts), and Grafana,
                           PagerDuty, CloudWatch/SNS: the format is detected per body
``POST /api/v1/alerts``    triage's generic JSON alert or an array of them (any format works)
``POST /api/v1/feedback``  responders' judgements, one or an array (docs/learning.md): appended to
                           ``feedback.store`` (embedded) or published to ``feedback`` (Kafka)
``GET /metrics``           Prometheus exposition (``triage.metrics``)
``GET /-/healthy``         200 while the process runs
``GET /-/ready``           200 when it can take alerts (Kafka mode: the broker answers)
=========================  =====================================================================

Two modes behind the same endpoints (``http.mode``): ``embedded`` runs the pipeline and the
incident stage in process (``triage.http.embedded``); ``kafka`` publishes each body to
``alerts.raw`` and answers once the broker acknowledged (``triage.http.relay``). Each body is
wrapped in an envelope stamped with the server's clock (``received_at``).
"""
