"""`make bench`: benchmarks of the bare pipeline, the HTTP service, FAISS and the index build (docs/PERFORMANCE.md)."""
