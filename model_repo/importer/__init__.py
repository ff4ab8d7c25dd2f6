"""Model importer: one model file in any of four formats -> four parity-checked variants.

`python -m model_repo.importer import SOURCE --name NAME` (or `servegate models import`)
reads the signature from an ONNX file, a TorchScript file, a `torch.export` program
(.pt2), a TensorFlow SavedModel folder or a serialized `jax.export` artifact; produces every
other framework's artifact, through ONNX as the common form; runs the source on sample
inputs as the reference, holds each variant to it, and writes `model_repo/NAME/model.yaml`
with the variants that match. Runs in its own process: the converters (the `convert`
extra) never enter the gateway or the runners.
"""
