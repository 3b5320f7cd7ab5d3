"""Run-time model code, shared by the indexer and the service: sessions (ONNX Runtime, TensorRT), detector,
proposals, embedder, text encoder, cohort, model files and the loader.

Imports only `watchbuy` (settings) among the project's packages, and never torch: building and training
models is the `training` package's job.
"""
