"""Model code shared by the indexer and the service: runtimes, detector, proposals, embedder, artifacts.

Nothing here imports `service` or `indexer`; torch is only imported by `models.nets` and `models.export`.
"""
