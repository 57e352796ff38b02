"""modelserve: the ONNX Runtime serving image (KServe Open Inference Protocol v2, metrics).

The server itself lands with the serving-image issue; this package exists now so the project's
layout, packaging and type checks cover both halves from the start.
"""

__version__ = "0.1.0"
