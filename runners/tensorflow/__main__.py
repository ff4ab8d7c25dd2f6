"""`python -m runners.tensorflow --repository DIR --host H --port 0 --port-file F`.

The servegate tf runner: the PredictionService / ModelService gRPC API of TF Serving,
written with the official `tensorflow_serving.apis` stubs over real SavedModels, for
machines without a `tensorflow_model_server` binary. Same command line, port file and
grpc.health.v1 service as our other runners.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from gateway import eventloop
from runners.lifetime import die_with_parent

NAME = "servegate tf runner (TF Serving API; no tensorflow_model_server binary)"


async def serve(repository: Path, host: str, port: int, port_file: Path | None) -> None:
    t0 = time.perf_counter()
    # TensorFlow's C++ INFO lines would drown the runner's own log; set before importing it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    import grpc
    import tensorflow as tf
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    from runners.host import until_signalled, write_port_file
    from runners.tensorflow.servables import load_all
    from runners.tensorflow.service import add_services

    log = logging.getLogger("servegate.tf_runner")
    log.info("%s: tensorflow %s imported in %.2f s", NAME, tf.__version__, time.perf_counter() - t0)
    servables = load_all(repository)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", 256 * 1024 * 1024),
            ("grpc.max_send_message_length", 256 * 1024 * 1024),
            ("grpc.so_reuseport", 0),
        ]
    )
    executor = add_services(server, servables)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    device = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    log.info(
        "%s serving %d model version(s) [%s] on %s:%d (device: %s), ready %.2f s after start",
        NAME,
        len(servables),
        ", ".join(servables.names()),
        host,
        bound,
        device,
        time.perf_counter() - t0,
    )
    if port_file is not None:
        write_port_file(port_file, bound)
    await until_signalled()
    await health_servicer.enter_graceful_shutdown()
    await server.stop(1.0)
    executor.shutdown(wait=False, cancel_futures=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runners.tensorflow", description=NAME)
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path)
    args = parser.parse_args(argv)
    die_with_parent()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    eventloop.run(serve(args.repository, args.host, args.port, args.port_file))


if __name__ == "__main__":
    main()
