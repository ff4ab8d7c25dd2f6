"""servegate: one KServe v2 gateway in front of TorchServe, TF Serving, ONNX Runtime and JAX."""

__version__ = "0.1.0"
