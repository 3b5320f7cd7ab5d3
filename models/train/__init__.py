"""Metric-learning fine-tuning of the embedder (torch; never imported by the service)."""
