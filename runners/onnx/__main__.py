"""`python -m runners.onnx --repository DIR --port 0 --port-file F`."""

from runners.host import main
from runners.onnx.engine import OnnxEngine

main(OnnxEngine)
