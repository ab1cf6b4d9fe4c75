"""The only package that imports faust and Kafka clients: the faust app, records, agents,
topics and worker, all thin adapters over ``triage.core.pipeline.Pipeline``.

Arrives with the streaming stage.
"""
