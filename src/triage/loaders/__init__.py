"""Enrichment: the service dependency graph (networkx), the service catalog / CMDB, change
records and runbooks: loaders and lookups. May import ``triage.core`` only.

Arrives with the incident stage (correlation, root cause, P1-P4, ownership).
"""
