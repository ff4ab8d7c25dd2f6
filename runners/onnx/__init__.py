"""ONNX Runtime runner: a v2 gRPC server over onnxruntime sessions."""
