"""Training and export: nets, fine-tuning, ONNX export, `make models`, the trained weights.

Never imported by the service.
"""
