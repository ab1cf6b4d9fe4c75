"""ML and statistics for the learning stage. May import ``triage.core`` only (plus pandas,
numpy, scikit-learn, skops, matplotlib); never faust or Kafka. See ``docs/learning.md``.

========================  ==============================================================
module                    holds
========================  ==============================================================
``feedback``              responder feedback records, the append-only SQLite history
``simulate``              a deterministic, *simulated* feedback generator (tests, demos)
``tuning``                ``ThresholdClassifier`` and ``tune_thresholds``: thresholds file
``series``                one rule for many series, in each series' own scale, pooled
``nab``                   NAB folds (category held out, time split), ``tune_series``
``noise``                 noise-classifier features, training, evaluation, leave-one-out
``schema``                the features, types and classes a noise model must fit
``registry``              versioned artifacts, promotion, safe loading, ``load_noise_scorer``
``report``                PNG/JSON reports (matplotlib, Agg)
========================  ==============================================================
"""
