"""Plain-torch network definitions, used for ONNX export and training only (never by the service)."""
