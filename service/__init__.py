"""The HTTP service: FastAPI app, request edge, /identify pipeline, metrics."""
