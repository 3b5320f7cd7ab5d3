"""Evaluation: the evaluator, its metrics and reports, held-out indexes, the cohort, abstain calibration."""
