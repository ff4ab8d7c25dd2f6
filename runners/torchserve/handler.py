"""TorchServe handler: runs inside TorchServe's Python worker, one TorchScript module per model.

TorchServe hands `handle` a batch: one dict per request, gRPC's `input` map (tensor name ->
frame, see gateway/protocol/torchserve_framing.py) or, from REST, a bundle as the body.
Every request of the batch is decoded, the rows are concatenated along dim 0, the module
runs once under `torch.inference_mode`, and each request gets its own rows back as one
bundle of output frames (application/octet-stream). Binary in and out, never JSON lists.

Which inputs the module takes (in forward-argument order), its output names and its thread
count come from the `handler:` section of the archive's model-config.yaml (archive.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

try:  # inside the .mar: shipped beside this file with --extra-files
    import torchserve_framing as framing  # type: ignore[import-not-found]
except ImportError:  # in our own tree (tests, tools)
    from gateway.protocol import torchserve_framing as framing

TORCH_DTYPES: Mapping[str, torch.dtype] = {
    "BOOL": torch.bool,
    "UINT8": torch.uint8,
    "UINT16": torch.uint16,
    "UINT32": torch.uint32,
    "UINT64": torch.uint64,
    "INT8": torch.int8,
    "INT16": torch.int16,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "FP16": torch.float16,
    "BF16": torch.bfloat16,
    "FP32": torch.float32,
    "FP64": torch.float64,
}
DATATYPE_OF: Mapping[torch.dtype, str] = {v: k for k, v in TORCH_DTYPES.items()}
REST_BODY_KEYS = ("body", "data")  # where TorchServe puts a REST request's raw body


class BadInput(ValueError):
    """A request the handler cannot decode; answered as a 400 for the whole batch."""


class Model:
    """The loaded module plus the names it is called and answered with."""

    def __init__(
        self,
        module: torch.jit.ScriptModule,
        inputs: Sequence[str],
        outputs: Sequence[str],
        device: torch.device,
    ) -> None:
        self.module = module
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.device = device  # a frozen module has no parameters to ask

    @classmethod
    def load(cls, context: Any) -> Model:
        props = context.system_properties
        cfg = (context.model_yaml_config or {}).get("handler", {})
        if cfg.get("threads"):
            torch.set_num_threads(int(cfg["threads"]))
        # Parity with the float32 reference: no TF32 shortcuts on GPUs.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        gpu = props.get("gpu_id")
        device = (
            torch.device(f"cuda:{gpu}")
            if gpu is not None and torch.cuda.is_available()
            else torch.device("cpu")
        )
        path = Path(props["model_dir"]) / context.manifest["model"]["serializedFile"]
        with warnings.catch_warnings():
            # torch 2.13 marks torch.jit deprecated (for torch.export); it still works, and
            # TorchScript is what TorchServe archives carry.
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location=device).eval()
        return cls(module, cfg["inputs"], cfg["outputs"], device)

    def decode(self, request: Mapping[str, Any]) -> list[torch.Tensor]:
        """One request's input tensors, in forward-argument order."""
        frames: Mapping[str, framing.Frame] | None = None
        for key in REST_BODY_KEYS:
            body = request.get(key)
            if isinstance(body, bytes | bytearray) and body[:4] == framing.BUNDLE_MAGIC:
                frames = framing.unbundle(body)
        if frames is None:
            frames = {k: framing.unframe(v) for k, v in request.items() if k in self.inputs}
        missing = [n for n in self.inputs if n not in frames]
        if missing:
            raise BadInput(f"request lacks inputs {missing} (has {sorted(frames)})")
        tensors = [to_torch(*frames[name]) for name in self.inputs]
        rows = {t.shape[0] if t.dim() else -1 for t in tensors}
        if len(rows) != 1 or -1 in rows:
            raise BadInput(
                f"inputs must share a leading batch dim, got {[t.shape for t in tensors]}"
            )
        return tensors

    def __call__(self, batch: Sequence[Mapping[str, Any]]) -> list[bytes]:
        """One response bundle per request of the batch."""
        try:
            decoded = [self.decode(request) for request in batch]
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        rows = [d[0].shape[0] for d in decoded]
        args = [torch.cat([d[i] for d in decoded]).to(self.device) for i in range(len(self.inputs))]
        with torch.inference_mode():
            result = self.module(*args)
        results = result if isinstance(result, tuple | list) else (result,)
        if len(results) != len(self.outputs):
            raise RuntimeError(f"module returned {len(results)} outputs, expected {self.outputs}")
        splits = [torch.split(r.detach().cpu(), rows) for r in results]
        pieces = dict(zip(self.outputs, splits, strict=True))
        return [
            framing.bundle({name: to_frame(split[i]) for name, split in pieces.items()})
            for i in range(len(batch))
        ]


def to_torch(datatype: str, shape: tuple[int, ...], raw: memoryview) -> torch.Tensor:
    """A frame's tensor, copied out of the request buffer."""
    dtype = TORCH_DTYPES.get(datatype)
    if dtype is None:
        raise BadInput(f"datatype {datatype} is not supported by the torch handler")
    count = 1
    for d in shape:
        count *= d
    if len(raw) != count * dtype.itemsize:
        raise BadInput(
            f"{datatype} {list(shape)} needs {count * dtype.itemsize} bytes, got {len(raw)}"
        )
    if count == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)


def to_frame(tensor: torch.Tensor) -> bytes:
    """A tensor as a frame: raw little-endian bytes, whatever its dtype."""
    flat = tensor.contiguous().reshape(-1)
    raw = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
    return framing.frame(DATATYPE_OF[tensor.dtype], tuple(tensor.shape), raw)


_model: Model | None = None


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[bytes] | None:
    """TorchServe's entry point; called once with `data=None` when the worker loads."""
    global _model
    if _model is None:
        _model = Model.load(context)
    if data is None:
        return None
    try:
        out = _model(data)
    except BadInput as exc:
        from ts.utils.util import PredictionException

        raise PredictionException(str(exc), 400) from None
    for i in range(len(out)):
        context.set_response_content_type(i, framing.CONTENT_TYPE)
    return out
