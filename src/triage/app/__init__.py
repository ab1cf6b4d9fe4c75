"""The composition root: the validated configuration (``settings``), what builds the
stages from it (``bootstrap``), the runtimes that feed them (``runtime`` for ``triage run``,
``server`` for ``triage serve``), the demo and the garbage-collector tuning of
long-running processes.

Everything here is for ``triage.cli`` only, except ``settings``: the validated
configuration is what the streams, the receiver, the loaders and the simulator are given,
so they may read it (``tests/test_layers.py`` holds this).
"""
