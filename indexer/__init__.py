"""Indexer: catalogue readers, index building and the versioned per-stream index store."""
