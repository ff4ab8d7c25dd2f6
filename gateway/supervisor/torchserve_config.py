"""Supervisor: the files a local TorchServe 0.12 starts from (pure: text in, text out).

config.properties puts all five listeners on the given host (loopback by default), keeps
token authorization on with keys that outlive the run (TorchServe's default expires the
inference key after 60 minutes), turns config snapshots and system metrics off and bounds
the JVM heap; log4j2.xml keeps TorchServe's own files and levels but sends only WARN and
up to the console (our torchserve.log).
"""

from __future__ import annotations

from pathlib import Path

HEAP = "512m"
MAX_MESSAGE_BYTES = 128 * 1024 * 1024  # TorchServe's default (6.5 MB) is below one ResNet batch
TOKEN_EXPIRATION_MIN = 60 * 24 * 365  # keys are regenerated at every start anyway


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _rolling(name: str, folder: str, layout: str) -> str:
    return (
        f'<RollingFile name="{name}" fileName="${{env:{folder}}}/{name}.log"'
        f' filePattern="${{env:{folder}}}/{name}.%i.log.gz">'
        f'<PatternLayout pattern="{layout}"/>'
        '<Policies><SizeBasedTriggeringPolicy size="100 MB"/></Policies>'
        '<DefaultRolloverStrategy max="5"/></RollingFile>'
    )


_FULL = "%d{ISO8601} [%-5p] %t %c - %m%n"
_SHORT = "%d{ISO8601} - %m%n"
# TorchServe 0.12's own log4j2.xml (same files, loggers and levels), except that the console,
# which is our torchserve.log, gets WARN and up only: TorchServe writes several lines per
# request at INFO/DEBUG, which stay in its rolling files under LOG_LOCATION/METRICS_LOCATION.
LOG4J2 = f"""<?xml version="1.0" encoding="UTF-8"?>
<Configuration>
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <ThresholdFilter level="WARN"/><PatternLayout pattern="{_FULL}"/>
    </Console>
    {_rolling("access_log", "LOG_LOCATION", _SHORT)}
    {_rolling("model_log", "LOG_LOCATION", _FULL)}
    {_rolling("ts_log", "LOG_LOCATION", _FULL)}
    {_rolling("model_metrics", "METRICS_LOCATION", _SHORT)}
    {_rolling("ts_metrics", "METRICS_LOCATION", _SHORT)}
  </Appenders>
  <Loggers>
    <Logger name="ACCESS_LOG" level="info"><AppenderRef ref="access_log"/></Logger>
    <Logger name="io.netty" level="error"/>
    <Logger name="MODEL_LOG" level="all"><AppenderRef ref="model_log"/></Logger>
    <Logger name="MODEL_METRICS" level="all"><AppenderRef ref="model_metrics"/></Logger>
    <Logger name="org.apache" level="off"/>
    <Logger name="org.pytorch.serve" level="debug"><AppenderRef ref="ts_log"/></Logger>
    <Logger name="TS_METRICS" level="all"><AppenderRef ref="ts_metrics"/></Logger>
    <Root level="info"><AppenderRef ref="STDOUT"/><AppenderRef ref="ts_log"/></Root>
  </Loggers>
</Configuration>
"""


def config_properties(host: str, ports: range, store: Path) -> str:
    """config.properties for five consecutive `ports`: REST inference, management,
    metrics, gRPC inference, gRPC management."""
    rest, mgmt, metrics, grpc_inf, grpc_mgmt = ports
    lines = [
        f"inference_address={url(host, rest)}",
        f"management_address={url(host, mgmt)}",
        f"metrics_address={url(host, metrics)}",
        f"grpc_inference_address={host}",
        f"grpc_inference_port={grpc_inf}",
        f"grpc_management_address={host}",
        f"grpc_management_port={grpc_mgmt}",
        f"token_expiration_min={TOKEN_EXPIRATION_MIN}",
        "enable_model_api=false",
        "disable_system_metrics=true",
        "default_workers_per_model=1",
        "install_py_dep_per_model=false",
        f"max_request_size={MAX_MESSAGE_BYTES}",
        f"max_response_size={MAX_MESSAGE_BYTES}",
        f"model_store={store}",
        f"vmargs=-Xmx{HEAP} -XX:+ExitOnOutOfMemoryError",
    ]
    return "\n".join(lines) + "\n"
