"""Protocol: gRPC server reflection, describing the services as clients know them.

Our v2 messages are declared under `servegate.v2` (defining `inference.*` beside
tritonclient's stubs in one process fails with "duplicate symbol"), and the service path
`/inference.GRPCInferenceService/...` is registered by hand. For grpcurl and other
reflection clients the gateway describes them in a descriptor pool of their own: the same
messages under the `inference` package, with the GRPCInferenceService declared over them,
beside grpc.health.v1 and the reflection service itself. The process's default pool is
never touched.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from gateway.protocol.pb import v2_pb2
from gateway.protocol.v2_service import METHODS, SERVICE

_OURS = "servegate.v2"
_THEIRS = "inference"


def _renamed(file: FileDescriptor) -> descriptor_pb2.FileDescriptorProto:
    """Our v2 file as `inference` declares it, with the GRPCInferenceService added."""
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    proto.name = "grpc_service.proto"
    proto.package = _THEIRS

    def fix(messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
        for message in messages:
            for f in message.field:
                if f.type_name.startswith(f".{_OURS}."):
                    f.type_name = f".{_THEIRS}." + f.type_name.removeprefix(f".{_OURS}.")
            fix(message.nested_type)

    fix(proto.message_type)
    service = proto.service.add(name=SERVICE.rpartition(".")[2])
    for name, (req, resp) in METHODS.items():
        service.method.add(
            name=name,
            input_type=f".{_THEIRS}.{req.DESCRIPTOR.name}",
            output_type=f".{_THEIRS}.{resp.DESCRIPTOR.name}",
        )
    service.method.add(
        name="ModelStreamInfer",
        input_type=f".{_THEIRS}.ModelInferRequest",
        output_type=f".{_THEIRS}.ModelStreamInferResponse",
        client_streaming=True,
        server_streaming=True,
    )
    return proto


def pool(extra: Iterable[FileDescriptor] = ()) -> descriptor_pool.DescriptorPool:
    """A descriptor pool with the v2 service as clients know it, grpc.health.v1, the
    reflection service and `extra` files (their dependencies first)."""
    out = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(file: FileDescriptor) -> None:
        if file.name in added:
            return
        for dep in file.dependencies:
            add(dep)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        out.Add(proto)
        added.add(file.name)

    for dep in v2_pb2.DESCRIPTOR.dependencies:
        add(dep)
    out.Add(_renamed(v2_pb2.DESCRIPTOR))
    for file in (health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR, *extra):
        add(file)
    return out
