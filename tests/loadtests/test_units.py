"""The bench's pure parts: latency summaries, Locust CSV parsing, verdicts, overhead,
compare, the matrix, workloads and wire bodies. No sockets, no subprocesses, no Locust."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.config import Repository
from gateway.protocol import torchserve_framing, v2_grpc, v2_http
from gateway.protocol.pb import torchserve_pb2
from gateway.tensors import InferResponse, Tensor
from loadtests import analysis, compare, latency, matrix, results, wire, workload
from loadtests.matrix import Cell

STATS_CSV = """\
Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,\
Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,\
80%,90%,95%,98%,99%,99.9%,99.99%,100%
gRPC,digits b=1,2208,8,0.79,0.83,0.64,4.74,73.0,1103.5,4.0,1,1,1,1,2,2,3,4,5,6,7
,Aggregated,2208,8,0.79,0.83,0.64,4.74,73.0,1103.5,4.0,1,1,1,1,2,2,3,4,5,6,7
"""
FAILURES_CSV = """\
Method,Name,Error,Occurrences
gRPC,digits b=1,"UNAVAILABLE: runner down",6
gRPC,digits b=1,"WrongAnswer('wrong class')",2
"""


def cell(variant: str, target: str = "gateway", protocol: str = "grpc", **kw: Any) -> dict:
    doc = {
        "model": "digits", "variant": variant, "target": target, "protocol": protocol,
        "wire": "v2", "concurrency": 1, "batch_size": 1, "requests": 1000, "failures": 0,
        "p50_ms": 1.0, "p90_ms": 1.5, "p99_ms": 3.0, "rps": 900.0, "infer_per_s": 900.0,
    }  # fmt: skip
    doc.update(kw)
    return doc


# latency


def test_summary_has_exact_percentiles_and_a_histogram_of_every_request() -> None:
    rng = np.random.default_rng(7)
    times = rng.lognormal(0.0, 0.5, size=5000)
    doc = latency.summarize(times, window_s=2.0, failures=3)
    assert doc["p50_ms"] == pytest.approx(np.percentile(times, 50))
    assert doc["p99.9_ms"] == pytest.approx(np.percentile(times, 99.9))
    assert doc["p50_ms"] <= doc["p90_ms"] <= doc["p99_ms"] <= doc["max_ms"]
    assert doc["ok_per_s"] == 2500.0 and doc["failures"] == 3
    hist = doc["histogram"]
    assert sum(hist["counts"]) == 5000
    edges = latency.bin_edges(hist)
    assert len(edges) == len(hist["counts"]) + 1
    assert edges[0] <= times.min() and edges[-1] >= times.max()


def test_summary_without_a_success_has_no_latency_but_valid_json() -> None:
    doc = latency.summarize(np.array([]), window_s=1.0, failures=10)
    assert doc["p50_ms"] is None and doc["ok"] == 0 and doc["histogram"]["counts"] == []
    json.dumps(doc, allow_nan=False)


def test_recorder_counts_failures_apart_and_restarts_after_warmup(tmp_path: Path) -> None:
    now = [0.0]
    rec = latency.Recorder(clock=lambda: now[0])
    rec.on_request(response_time=5.0)
    rec.reset()
    rec.on_request(response_time=1.0)
    rec.on_request(response_time=2.0, exception=RuntimeError("x"))
    now[0] = 2.0
    rec.save(tmp_path / "s.json", requests=2)
    doc = json.loads((tmp_path / "s.json").read_text())
    assert (doc["ok"], doc["failures"], doc["requests"], doc["ok_per_s"]) == (1, 1, 2, 0.5)
    assert doc["max_ms"] == 1.0


# Locust files -> a cell result


def test_stats_csv_aggregated_row_and_failures(tmp_path: Path) -> None:
    (tmp_path / "c_stats.csv").write_text(STATS_CSV)
    (tmp_path / "c_failures.csv").write_text(FAILURES_CSV)
    row = results.parse_stats_csv(tmp_path / "c_stats.csv")
    assert row is not None
    assert (row["requests"], row["failures"], row["p99_ms"]) == (2208, 8, 4.0)
    assert row["rps"] == pytest.approx(1099.5)
    assert results.parse_failures_csv(tmp_path / "c_failures.csv") == {
        "UNAVAILABLE: runner down": 6,
        "WrongAnswer('wrong class')": 2,
    }
    assert results.parse_stats_csv(tmp_path / "missing.csv") is None


def test_cell_result_prefers_the_summary_and_falls_back_to_the_csv(tmp_path: Path) -> None:
    c = Cell("digits", "onnx", "grpc", "direct", 4, 8)
    (tmp_path / "locust").mkdir()
    prefix = tmp_path / "locust" / c.id
    Path(f"{prefix}_stats.csv").write_text(STATS_CSV)
    resources = {"onnx": {"cpu_s": 1.0}, "_device": {"gpu_pct": 3.0}}
    doc = results.cell_result(c, prefix, resources=resources, exit_code=0, relative_to=tmp_path)
    assert doc["source"] == "locust-csv" and doc["requests"] == 2208
    assert doc["infer_per_s"] == pytest.approx(doc["rps"] * 8)
    assert doc["cpu_ms_per_request"] == {"onnx": pytest.approx(1000 / 2208, abs=1e-4)}
    assert doc["csv_prefix"] == f"locust/{c.id}"

    summary = latency.summarize(np.array([1.0, 2.0, 3.0]), 1.0, 0)
    summary.update(requests=3, locust_failures=0, errors={})
    Path(f"{prefix}_summary.json").write_text(json.dumps(summary))
    doc = results.cell_result(c, prefix, resources={}, exit_code=0, relative_to=tmp_path)
    assert (doc["source"], doc["requests"], doc["p50_ms"]) == ("summary", 3, 2.0)


def test_a_run_that_left_nothing_is_a_result_with_an_error(tmp_path: Path) -> None:
    c = Cell("digits", "onnx", "grpc", "gateway", 1, 1)
    (tmp_path / f"{c.id}.log").write_text("Traceback ...\nNameError: name 'x' is not defined\n")
    doc = results.cell_result(c, tmp_path / c.id, resources={}, exit_code=1, relative_to=tmp_path)
    assert doc["requests"] == 0 and doc["p50_ms"] is None
    assert "NameError: name 'x' is not defined" in next(iter(doc["errors"]))


# verdicts and overhead


def test_verdicts_pick_per_group_and_never_crown_a_failing_variant() -> None:
    cells = [
        cell("onnx", p50_ms=1.0, p99_ms=5.0, infer_per_s=800.0),
        cell("jax", p50_ms=1.2, p99_ms=2.0, infer_per_s=900.0),
        cell("tensorflow", p50_ms=0.1, p99_ms=0.2, infer_per_s=9e9, failures=3),
        cell("onnx", target="direct", p50_ms=0.5),
    ]
    rows = {r["protocol"]: r for r in analysis.verdicts(cells)}
    grpc = rows["grpc"]
    assert grpc["fastest_p50"] == {"variant": "onnx", "value": 1.0}
    assert grpc["fastest_p99"] == {"variant": "jax", "value": 2.0}
    assert grpc["highest_throughput"] == {"variant": "jax", "value": 900.0}
    assert grpc["failing"] == ["tensorflow"]
    assert rows["direct"]["fastest_p50"]["variant"] == "onnx"


def test_overhead_pairs_each_gateway_cell_with_its_direct_twin() -> None:
    cells = [
        cell("onnx", p50_ms=1.5, p99_ms=4.0, rps=600.0),
        cell("onnx", protocol="http-json", p50_ms=2.0, p99_ms=5.0, rps=500.0),
        cell("onnx", target="direct", p50_ms=1.0, p99_ms=2.0, rps=1000.0),
        cell("jax", p50_ms=1.0),  # no direct twin
        cell("onnx", concurrency=8, p50_ms=9.0),  # twin at another concurrency only
    ]
    rows = analysis.overhead(cells)
    assert [(r["protocol"], r["concurrency"]) for r in rows] == [("grpc", 1), ("http-json", 1)]
    grpc = rows[0]
    assert grpc["delta_p50_ms"] == pytest.approx(0.5) and grpc["ratio_p50"] == pytest.approx(1.5)
    assert grpc["delta_p99_ms"] == pytest.approx(2.0)
    assert grpc["throughput_ratio"] == pytest.approx(0.6)


def test_binary_speedup_over_json() -> None:
    cells = [
        cell("onnx", protocol="http-binary", p50_ms=2.0, rps=100.0),
        cell("onnx", protocol="http-json", p50_ms=10.0, rps=20.0),
    ]
    (row,) = analysis.protocol_speedup(cells, "http-binary", "http-json")
    assert row["speedup_p50"] == pytest.approx(5.0) and row["speedup_rps"] == pytest.approx(5.0)


# compare


def _doc(cells: list[dict], versions: dict[str, str]) -> dict:
    env = {"cpu_model": "x", "logical_cores": 2, "versions": versions}
    return {"schema": results.SCHEMA, "environment": env, "cells": cells}


def test_compare_judges_each_matched_cell_and_lists_the_rest() -> None:
    a = _doc(
        [cell("onnx"), cell("jax"), cell("tensorflow"), cell("pytorch")],
        {"onnxruntime": "1.31"},
    )
    b = _doc(
        [
            cell("onnx", p50_ms=1.5),  # 50 % slower
            cell("jax", infer_per_s=1200.0),  # 33 % more throughput
            cell("tensorflow", p50_ms=1.05),  # within the threshold
            cell("extra"),
        ],
        {"onnxruntime": "1.32"},
    )
    result = compare.compare(a, b, threshold=0.10)
    verdicts = {ch.key[1]: ch.verdict for ch in result["changes"]}
    assert verdicts == {"onnx": "worse", "jax": "better", "tensorflow": "same"}
    assert [k[1] for k in result["only_a"]] == ["pytorch"]
    assert [k[1] for k in result["only_b"]] == ["extra"]
    assert ("onnxruntime", "1.31", "1.32") in result["environment"]
    assert "1 worse, 1 better" in compare.markdown(result, "A", "B")


def test_a_cell_that_gained_failures_is_worse_however_fast() -> None:
    _, verdict = compare.judge(cell("onnx"), cell("onnx", failures=2, p50_ms=0.1), 0.1)
    assert verdict == "worse"


def test_compare_cli_writes_markdown_and_can_fail_ci(tmp_path: Path) -> None:
    for name, p50 in (("a", 1.0), ("b", 2.0)):
        (tmp_path / name).mkdir()
        doc = _doc([cell("onnx", p50_ms=p50)], {})
        (tmp_path / name / "results.json").write_text(json.dumps(doc))
    out = tmp_path / "cmp.md"
    argv = [str(tmp_path / "a"), str(tmp_path / "b"), "--markdown", str(out)]
    assert compare.main(argv) == 0
    assert "worse" in out.read_text()
    assert compare.main([*argv, "--fail-on-worse"]) == 1


# matrix, workload, wire


def test_matrix_runs_a_variants_gateway_cells_then_its_direct_twin(repository: Repository) -> None:
    preset = matrix.override(matrix.PRESETS["quick"], concurrency=(1, 4), batch_sizes=(2,))
    cells = matrix.cells(repository, preset, variants=["onnx", "nope"], protocols=["grpc"])
    assert [(c.target, c.concurrency, c.batch_size) for c in cells] == [
        ("gateway", 1, 2), ("direct", 1, 2), ("gateway", 4, 2), ("direct", 4, 2),
    ]  # fmt: skip
    declared = repository["digits"].variants
    every = matrix.cells(repository, matrix.PRESETS["quick"])
    for c in every:
        if c.target == "direct":
            assert c.wire == declared[c.variant].protocol
    assert len({c.id for c in every}) == len(every)
    with pytest.raises(ValueError, match="unknown protocols"):
        matrix.cells(repository, preset, protocols=["carrier-pigeon"])


def test_workload_cycles_samples_and_checks_shape_and_class(repository: Repository) -> None:
    load = workload.build("digits", 8, repository=repository)
    assert all(b.shape == (8, 64) for b in load.batches)
    assert 1 < len(load.batches) <= workload.MAX_DISTINCT_BATCHES
    expected = load.expected[0]
    assert expected is not None
    logits = np.eye(10, dtype=np.float32)[expected]
    assert load.check(0, {"logits": logits}) is None
    wrong = np.roll(logits, 1, axis=1)
    assert "wrong class" in (load.check(0, {"logits": wrong}) or "")
    assert "shape" in (load.check(0, {"logits": logits[:3]}) or "")
    assert "missing" in (load.check(0, {"other": logits}) or "")


def test_only_rows_the_reference_gets_right_are_kept() -> None:
    labels = np.array([0, 1, 2])
    logits = np.array([[9, 0, 0], [9, 0, 0], [0, 0, 9]], dtype=np.float32)
    classes, keep = workload.expected_classes(labels, logits)
    assert keep.tolist() == [True, False, True]
    assert classes is not None and classes[keep].tolist() == [0, 2]


def test_wire_bodies_decode_as_the_servers_read_them() -> None:
    batch = np.arange(128, dtype=np.float32).reshape(2, 64)
    body = wire.http_body("digits@onnx", "pixels", batch, binary=True)
    request = v2_http.decode_request(
        body.body,
        int(body.headers["Inference-Header-Content-Length"]),
        model_name="digits@onnx",
    )
    np.testing.assert_array_equal(request.inputs[0].data, batch)

    msg = torchserve_pb2.PredictionsRequest.FromString(wire.torchserve_body("d", "pixels", batch))
    datatype, shape, _ = torchserve_framing.unframe(msg.input["pixels"])
    assert (msg.model_name, datatype, shape) == ("d", "FP32", (2, 64))

    out = np.ones((2, 10), dtype=np.float32)
    reply = v2_grpc.response_to_pb(InferResponse("d", (Tensor.from_numpy("logits", out),)))
    np.testing.assert_array_equal(wire.decode_v2_grpc(reply.SerializeToString())["logits"], out)


# the written report


def _full_doc() -> dict:
    hist = latency.histogram(np.array([0.8, 1.0, 1.1, 2.5]))
    cells = []
    for variant in ("onnx", "jax"):
        for protocol in wire.PROTOCOLS:
            cells.append(
                cell(variant, protocol=protocol, histogram=hist, id=f"{variant}-{protocol}")
            )
        cells.append(cell(variant, target="direct", p50_ms=0.5, histogram=hist, id=variant))
    for c in cells:
        c.update(
            resources={"gateway": {"cpu_s": 0.3, "rss_mb": 90.0}, "onnx": {"rss_mb": 60.0}},
            cpu_ms_per_request={"gateway": 0.3, "onnx": 0.2, "locust": 0.4},
            errors={},
        )
    env = {
        "cpu_model": "Test CPU", "logical_cores": 2, "physical_cores": 2, "memory_gb": 8.0,
        "os": "Linux", "python": "3.11", "load_average_at_start": [0.1, 0.2, 0.3],
        "gpu": {"driver": "550.1", "gpus": [{"name": "Test GPU", "memory_mb": 1024}]},
        "java": "openjdk 17", "versions": {"servegate": "0.1.0", "onnxruntime": "1.32.0"},
    }  # fmt: skip
    return {
        "schema": results.SCHEMA,
        "created": "2026-11-25T10:00:00+00:00",
        "environment": env,
        "settings": {"preset": "quick", "duration_s": 2.0},
        "variant_runners": {"digits@onnx": "onnx", "digits@jax": "jax"},
        "cold_start": {
            "runners": {"onnx": {"ready_after_s": 0.4, "first_request_ms": {"digits@onnx": 3.0}}},
            "first_request_ms": {"digits@onnx": 5.0, "digits@jax": None},
        },
        "cells": cells,
    }


def test_report_markdown_and_page_hold_every_table_plot_and_the_environment() -> None:
    from loadtests import page, plots, report

    doc = _full_doc()
    md = report.markdown(doc)
    assert "## Verdicts" in md and "| " + " | ".join(report.VERDICT_HEADER) + " |" in md
    assert "## Gateway overhead" in md and "Test GPU" in md
    html = page.render(doc)
    for plot_id in plots.plot_ids(doc):
        assert f'id="{plot_id}"' in html, plot_id
    assert 'id="environment"' in html and "Test CPU" in html and "550.1" in html
    assert "<script src=" not in html and 'src="http' not in html  # self-contained
    assert "Plotly.newPlot" in html and len(html) > 3_000_000  # plotly.js itself inlined
    assert "fastest at p50" in html


# resource sampling


def test_sampler_measures_cpu_time_and_memory_of_live_processes() -> None:
    import psutil

    from loadtests.resources import Sampler

    me = psutil.Process()
    sampler = Sampler(lambda: {"me": [me]}, interval=0.05)
    sampler.start()
    until = time.process_time() + 0.3
    while time.process_time() < until:  # burn 0.3 s of CPU
        pass
    out = sampler.stop()
    assert out["me"]["cpu_s"] >= 0.2
    assert 0 < out["me"]["cpu_pct"] <= 100 * psutil.cpu_count()
    assert out["me"]["rss_mb"] > 10


class FakeNvml:
    """The part of pynvml the sampler calls, for one GPU with one process on it."""

    class Util:
        gpu = 40

    class Mem:
        total = 80 * 2**30

    class Proc:
        pid = 4242
        usedGpuMemory = 512 * 2**20

    class Sample:
        pid = 4242
        smUtil = 35

    def nvmlDeviceGetName(self, h: object) -> str:
        return "Fake H100"

    def nvmlDeviceGetMemoryInfo(self, h: object) -> Mem:
        return self.Mem()

    def nvmlSystemGetDriverVersion(self) -> bytes:
        return b"555.42"

    def nvmlDeviceGetUtilizationRates(self, h: object) -> Util:
        return self.Util()

    def nvmlDeviceGetComputeRunningProcesses(self, h: object) -> list[Proc]:
        return [self.Proc()]

    def nvmlDeviceGetProcessUtilization(self, h: object, since: int) -> list[Sample]:
        return [self.Sample()]


def test_gpu_use_is_attributed_to_the_process_that_holds_it() -> None:
    from loadtests.resources import Nvml

    nvml = Nvml(FakeNvml(), handles=[object()])
    assert nvml.describe() == {
        "driver": "555.42",
        "gpus": [{"name": "Fake H100", "memory_mb": 81920}],
    }
    util, mem, device = nvml.sample()
    assert (util, mem, device) == ({4242: 35.0}, {4242: 512.0}, 40.0)
