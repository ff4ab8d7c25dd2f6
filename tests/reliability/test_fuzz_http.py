"""Hostile HTTP requests to a real gateway over the real ONNX runner: never a 5xx.

Property tests: valid digits requests mutated anywhere (any JSON in any field), binary
bodies with wrong sizes and header lengths, odd header values; each is followed by a good
request that must still be served. The one 5xx a bad request may earn is 504, when it
carries a `timeout` parameter short enough to expire (Triton's microseconds).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway.tensors import InferRequest, Tensor
from tests.live import RunningGateway
from tests.strategies import EXTREME_NUMBERS, binary_bodies, json_body, mutated

pytestmark = pytest.mark.reliability

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
INFER = "/v2/models/digits/infer"
# What an error body may never show: tracebacks, reprs, paths, socket files.
LEAKS = ("Traceback", "object at 0x", 'File "', "/tmp/", ".sock", "/work/")


@pytest.fixture(scope="module")
def http(onnx_gateway: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=onnx_gateway.http_url, timeout=30) as c:
        yield c


def _pixels(draw: st.DrawFn) -> list[float]:
    return draw(st.lists(st.floats(0, 16, width=32), min_size=64, max_size=64))


@st.composite
def digits_docs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid digits request, with the optional fields a client may set."""
    doc: dict[str, Any] = {
        "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": _pixels(draw)}]
    }
    if draw(st.booleans()):
        doc["id"] = draw(st.text(max_size=6))
    if draw(st.booleans()):
        doc["outputs"] = [{"name": "logits", "parameters": {"binary_data": draw(st.booleans())}}]
    if draw(st.booleans()):
        doc["parameters"] = {
            "timeout": draw(st.sampled_from([10_000_000, *EXTREME_NUMBERS])),
            "variant": "onnx",
            "binary_data_output": draw(st.booleans()),
            "priority": 0,
        }
    return doc


def _expired(doc: Any) -> bool:
    """Whether `doc` asks for a timeout short enough to earn a 504."""
    try:
        timeout = doc["parameters"]["timeout"]
    except (KeyError, TypeError, IndexError):
        return False
    return isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout < 1e6


@dataclass
class Reply:
    status_code: int
    content_type: str
    content: bytes


def check_answer(reply: httpx.Response | Reply, may_expire: bool) -> None:
    """A 2xx, or a 4xx (504 if `may_expire`) with a JSON error that leaks nothing. A request
    uvicorn's HTTP parser refuses gets its plain-text 400 before the gateway sees it."""
    status, content = reply.status_code, reply.content
    event(str(status))
    allowed_5xx = {504} if may_expire else set()
    assert status < 500 or status in allowed_5xx, (status, content[:300])
    if status >= 400:
        if content == b"Invalid HTTP request received.":
            assert status == 400
            return
        error = orjson.loads(content)["error"]
        assert isinstance(error, str) and error
        assert not any(leak in error for leak in LEAKS), error


def check_good_request_served(http: httpx.Client) -> None:
    doc = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [1.0] * 64}]}
    reply = http.post(INFER, content=json_body(doc))
    assert reply.status_code == 200, reply.text[:300]
    assert reply.json()["outputs"][0]["shape"] == [1, 10]


# Where a request may be sent: the model (with a variant alias) and version in the path.
paths = st.sampled_from([INFER] * 9 + [
    "/v2/models/digits/versions/1/infer", "/v2/models/digits/versions/9/infer",
    "/v2/models/digits/versions/%D9%A1/infer", "/v2/models/digits@onnx/infer",
    "/v2/models/digits@nope/infer", "/v2/models/nope/infer", "/v2/models/%C3%BC/infer",
    "/v2/models/digits%00/infer", "/v2/models/digits/versions/" + "9" * 30 + "/infer",
])  # fmt: skip


@FUZZ
@given(mutated(digits_docs()), st.booleans(), paths)
def test_any_json_request(http: httpx.Client, doc: Any, ascii_only: bool, path: str) -> None:
    reply = http.post(path, content=json_body(doc, ascii_only=ascii_only))
    check_answer(reply, _expired(doc))
    check_good_request_served(http)


digits_requests = st.builds(
    lambda x, rows: InferRequest("digits", (Tensor("pixels", "FP32", np.tile(x, (rows, 1))),)),
    st.lists(st.floats(0, 16, width=32), min_size=64, max_size=64).map(
        lambda v: np.asarray(v, np.float32)
    ),
    st.integers(1, 3),
)


@FUZZ
@given(binary_bodies(digits_requests))
def test_any_binary_request(http: httpx.Client, case: tuple[bytes, int | None]) -> None:
    body, length = case
    headers = {} if length is None else {"Inference-Header-Content-Length": str(length)}
    check_answer(http.post(INFER, content=body, headers=headers), may_expire=False)
    check_good_request_served(http)


def raw_post(gw: RunningGateway, headers: list[tuple[bytes, bytes]], body: bytes) -> Reply:
    """One POST over a plain socket, header bytes exactly as given (httpx, rightly, refuses
    to send some of them); the connection closes after the answer."""
    port = int(gw.http_url.rsplit(":", 1)[1])
    head = b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    head += b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(head + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    top, _, content = raw.partition(b"\r\n\r\n")
    lines = top.split(b"\r\n")
    fields = dict(line.split(b": ", 1) for line in lines[1:] if b": " in line)
    return Reply(int(lines[0].split()[1]), fields.get(b"content-type", b"").decode(), content)


# Header values: non-ASCII digits ('²' and Arabic-Indic digits pass str.isdigit), signs,
# spaces, control characters, huge numbers, nothing; as latin-1 or UTF-8 bytes.
header_values = st.one_of(
    st.sampled_from(
        [
            "²",
            "١٢",
            "۳",
            "12 ",
            " 7",
            "\t7",
            "+5",
            "-1",
            "0x10",
            "1e3",
            "",
            "9" * 30,
            "gzip",
            "deflate",
            "br",
            "onnx",
            "jax",
            "Bearer x",
        ]
    ),
    st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=6),
    st.integers(0, 2**70).map(str),
)


def _spellings(n: int) -> st.SearchStrategy[str]:
    """`n` as a Content-Length may be spelled by a careless or hostile client; only ones
    that say `n` or are not a number (a smaller number cuts the body, a larger one makes the
    server wait for bytes that never come)."""
    arabic = str(n).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    return st.sampled_from(
        [str(n), f"0{n}", f" {n}", f"{n} ", f"+{n}", arabic, f"{n}²", f"{n}, {n}", "", "abc"]
    )


@FUZZ
@given(
    st.sampled_from(["Inference-Header-Content-Length", "Content-Encoding", "servegate-variant",
                     "Content-Type", "Authorization"]),
    header_values,
    st.sampled_from(["latin-1", "utf-8"]),
    digits_docs(),
    st.data(),
)  # fmt: skip
def test_any_header_value(
    onnx_gateway: RunningGateway,
    http: httpx.Client,
    name: str,
    value: str,
    codec: str,
    doc: dict[str, Any],
    data: st.DataObject,
) -> None:
    body = json_body(doc)
    raw = value.encode(codec, errors="replace")
    length = data.draw(_spellings(len(body)), label="Content-Length")
    headers = [(name.encode(), raw), (b"Content-Length", length.encode("utf-8"))]
    check_answer(raw_post(onnx_gateway, headers, body), _expired(doc))
    check_good_request_served(http)
