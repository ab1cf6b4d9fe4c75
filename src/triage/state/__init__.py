"""Where the embedded runtimes keep state and write outputs: the SQLite state file
(``statefile``, ``--state``) and the append-only output files (``sinks``).

The snapshot format is the core's (``triage.core.snapshot``); the Kafka path's backend
for the same format is the stages' faust tables (``triage.streams``).
"""
