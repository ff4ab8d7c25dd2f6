"""Load tests: the locustfile. Runs on its own against any KServe v2 endpoint.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000            # web UI
    locust -f loadtests/locustfile.py --headless -u 16 -r 16 -t 30s \\
        --host http://127.0.0.1:8000 --model digits --variant jax --protocol grpc

Every option below also reads an environment variable (LOCUST_MODEL, LOCUST_PROTOCOL,
...), and shows in the web UI. `--protocol` picks the user class (HttpJsonUser,
HttpBinaryUser or GrpcUser) unless classes are named on the command line. Straight to a
runner: `--target direct --grpc-address HOST:PORT --wire v2|torchserve|tfserving`.
`servegate bench` runs this file once per cell of its matrix.
"""
# ruff: noqa: E402  (gRPC must be switched to gevent before anything else imports it)

# gRPC must cooperate with gevent before any channel exists (Locust runs on gevent).
from grpc.experimental import gevent as grpc_gevent

grpc_gevent.init_gevent()

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gevent
from locust import events, stats
from locust.env import Environment

from gateway.backends.torchserve_keys import TorchServeKeys
from gateway.config import DEFAULT_REPOSITORY, load_repository
from loadtests import wire, workload
from loadtests.latency import Recorder
from loadtests.users import (  # noqa: F401  (Locust finds the user classes here)
    USER_CLASSES,
    GrpcUser,
    HttpBinaryUser,
    HttpJsonUser,
    Plan,
    make_plan,
)

log = logging.getLogger("servegate.locustfile")

# Locust keeps whole milliseconds below 100 ms; keep 3 significant digits instead, so its
# own statistics (web UI, medians) resolve sub-millisecond requests. (`bucket_response_time`
# is the module-level hook Locust documents for custom bucketing.)
_PLAIN_BUCKET = stats.bucket_response_time


def _three_digits(response_time: float) -> float:
    if response_time <= 0:
        return 0
    if response_time >= 1000:
        return _PLAIN_BUCKET(response_time)
    return round(response_time, 2 - math.floor(math.log10(response_time)))


stats.bucket_response_time = _three_digits
stats.CSV_STATS_INTERVAL_SEC = 0.25  # read by Locust's CSV writer on each turn


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("servegate", "what to send, where, and how to check it")

    def opt(flag: str, **kw: Any) -> None:
        env = "LOCUST_" + flag.lstrip("-").upper().replace("-", "_")
        group.add_argument(flag, env_var=env, **kw)

    opt("--model", default="digits", help="Model name.")
    opt("--variant", default="", help="Pin a variant (sent as MODEL@VARIANT); gateway only.")
    opt("--protocol", default="grpc", choices=wire.PROTOCOLS, help="Client protocol.")
    opt("--batch-size", type=int, default=1, help="Rows per request.")
    opt("--target", default="gateway", choices=("gateway", "direct"), help="Who answers.")
    opt("--wire", default="v2", choices=wire.WIRES, help="gRPC API of a direct runner.")
    opt("--grpc-address", default="", help="HOST:PORT for gRPC (default: --host's host:8001).")
    opt("--key-file", default="", help="TorchServe's key_file.json, for direct calls to it.")
    opt("--inputs", default="", help=".npz with `inputs` (and `labels`); default: samples.")
    opt("--input-name", default="", help="Input tensor name, for models not in --repository.")
    opt("--repository", default=str(DEFAULT_REPOSITORY), help="Model repository folder.")
    opt("--no-class-check", action="store_true", default=False, help="Check shapes only.")
    opt("--request-timeout", type=float, default=10.0, help="Seconds per request.")
    opt("--warmup-s", type=float, default=0.0, help="Seconds of traffic before stats count.")
    opt("--summary-file", default="", help="Write final counts and exact percentiles (JSON).")


def _grpc_address(opts: Any, host: str | None) -> str:
    if opts.grpc_address:
        return str(opts.grpc_address)
    parts = urlsplit(host or "http://127.0.0.1:8000")
    return f"{parts.hostname or '127.0.0.1'}:8001"


def _plan(opts: Any, host: str | None) -> Plan:
    repo_path = Path(opts.repository)
    repository = load_repository(repo_path) if repo_path.is_dir() else None
    load = workload.build(
        opts.model,
        opts.batch_size,
        repository=repository,
        samples=Path(opts.inputs) if opts.inputs else None,
        input_name=opts.input_name or None,
        check_classes=not opts.no_class_check,
    )
    direct = opts.target == "direct"
    model_ref = opts.model if direct or not opts.variant else f"{opts.model}@{opts.variant}"
    plan = make_plan(
        protocol=opts.protocol,
        wire_name=opts.wire if direct else "v2",
        model_ref=model_ref,
        workload=load,
        grpc_address=_grpc_address(opts, host),
        timeout_s=opts.request_timeout,
    )
    if direct and opts.key_file:  # TorchServe with token authorization on
        metadata = TorchServeKeys(Path(opts.key_file)).metadata("inference")
        plan = dataclasses.replace(plan, grpc_metadata=metadata)
    return plan


_OPTION_NAMES = (
    "model", "variant", "protocol", "batch_size", "target", "wire", "grpc_address", "inputs",
    "input_name", "repository", "no_class_check", "request_timeout", "key_file",
)  # fmt: skip


def _install(environment: Environment) -> None:
    """Builds the plan from the current options and hands it to every user class.

    Rebuilt only when an option changed (the web UI can change them between runs).
    """
    opts = environment.parsed_options
    key = (environment.host, *(getattr(opts, name) for name in _OPTION_NAMES))
    current = getattr(GrpcUser, "plan", None)
    if current is not None and getattr(GrpcUser, "plan_key", None) == key:
        return
    plan = _plan(opts, environment.host)
    GrpcUser.plan_key = key  # type: ignore[attr-defined]
    for cls in USER_CLASSES.values():
        cls.plan = plan  # type: ignore[attr-defined]
        cls.network_timeout = cls.connection_timeout = plan.timeout_s  # type: ignore[attr-defined]
    if not opts.user_classes and environment.available_user_classes is not None:
        environment.user_classes[:] = [USER_CLASSES[plan.protocol]]


@events.init.add_listener
def _init(environment: Environment, **_: Any) -> None:
    opts = environment.parsed_options
    if opts is None:  # used as a library: the caller sets plans itself
        return
    try:
        _install(environment)
    except (ValueError, OSError) as exc:
        log.error("servegate locustfile: %s", exc)
        raise SystemExit(2) from None
    recorder = Recorder()
    environment.events.request.add_listener(recorder.on_request)

    @environment.events.test_start.add_listener
    def _start(environment: Environment, **_: Any) -> None:
        _install(environment)  # the web UI may have changed the options
        recorder.reset()
        if opts.warmup_s > 0:
            gevent.spawn_later(opts.warmup_s, _end_warmup, environment, recorder, opts)
        else:
            _mark_measuring(opts)

    @environment.events.test_stop.add_listener
    def _stop(environment: Environment, **_: Any) -> None:
        if opts.summary_file:
            total = environment.stats.total
            errors = {str(e.error): e.occurrences for e in environment.stats.errors.values()}
            recorder.save(
                Path(opts.summary_file),
                requests=total.num_requests,
                locust_failures=total.num_failures,
                locust_rps=total.total_rps,
                errors=errors,
            )

    @environment.events.quitting.add_listener
    def _quitting(environment: Environment, **_: Any) -> None:
        # Locust rewrites its CSVs every CSV_STATS_INTERVAL_SEC and not at exit: give its
        # writer one more turn so the CSVs hold the final figures.
        gevent.sleep(2 * stats.CSV_STATS_INTERVAL_SEC)


def _end_warmup(environment: Environment, recorder: Recorder, opts: Any) -> None:
    """Warm-up traffic counts nowhere: Locust's statistics and ours restart here."""
    environment.stats.reset_all()
    recorder.reset()
    _mark_measuring(opts)


def _mark_measuring(opts: Any) -> None:
    """`<summary file>.measuring` tells the bench the measured window starts now (it samples
    CPU and memory over exactly that window)."""
    if opts.summary_file:
        Path(opts.summary_file + ".measuring").touch()
