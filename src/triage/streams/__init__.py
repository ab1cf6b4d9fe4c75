"""The only package that imports faust and Kafka clients: thin adapters over the core's
``Pipeline`` and ``IncidentEngine``.

* ``stages``: both stages per partition, with state deltas, replay skipping and clocks
  (no Kafka here: the stream semantics as plain functions)
* ``agents``: the faust agents, timer and change feed (deliver, then persist)
* ``app``: the faust app from ``Settings`` (broker, SASL/TLS, memory store + changelogs)
* ``worker``: ``triage worker``
* ``topics``: topic creation and the kafka-python clients behind ``produce`` / ``consume``
* ``publisher``: the aiokafka producer of ``triage serve`` in Kafka mode
"""
