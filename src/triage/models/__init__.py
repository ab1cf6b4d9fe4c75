"""ML and statistics: features (pandas), the threshold tuner that writes the thresholds file
(``docs/thresholds.md``), the noise classifier (scikit-learn) behind the stage-1 noise gate,
and model artifacts. May import ``triage.core`` only.

Arrives with the learning stage.
"""
