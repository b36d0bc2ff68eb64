"""What every Python client of actionq needs: the generated stubs, a channel,
and the google.rpc.ErrorInfo that the server puts on every error.

The stubs come from generate.sh. They are looked up on PYTHONPATH first,
then in the gen/ folder next to this file.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))
try:
    from actionq.v1 import action_pb2  # noqa: E402
    from actionq.v1 import action_queue_service_pb2 as api  # noqa: E402
    from actionq.v1 import action_queue_service_pb2_grpc as api_grpc  # noqa: E402
    from google.rpc import error_details_pb2  # noqa: E402
except ImportError as missing:
    sys.exit(f"actionq stubs not found ({missing}): run examples/python-worker/generate.sh, or put its output on PYTHONPATH")

__all__ = ["action_pb2", "api", "api_grpc", "connect", "RpcFailure", "describe"]

# The gRPC status is sent again, with its details, in this binary trailer.
STATUS_DETAILS_KEY = "grpc-status-details-bin"
ERROR_INFO_TYPE = "google.rpc.ErrorInfo"


def connect(address: str) -> tuple[grpc.Channel, api_grpc.ActionQueueServiceStub]:
    """A plaintext channel to `HOST:PORT` and the service stub on it.

    Long-lived clients should call with `wait_for_ready=True` (and a
    timeout): grpc-python makes progress on a reconnection only while some
    call is waiting for it, and calls that fail fast while the channel is
    in TRANSIENT_FAILURE can keep failing long after the server is back.
    """
    channel = grpc.insecure_channel(
        address,
        options=[
            # Reconnect soon after a server restart; gRPC's default backoff
            # grows to two minutes.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ],
    )
    return channel, api_grpc.ActionQueueServiceStub(channel)


def _status_message_class() -> type[Message]:
    """google.rpc.Status, wire-compatible, built at run time.

    proto/ has only error_details.proto, and the Status envelope is three
    fields, so describing it here beats vendoring status.proto. The Any in
    `details` becomes a plain (type_url, value) message in a private pool,
    which avoids clashing with a google.rpc.Status some other package may
    have registered.
    """
    file = descriptor_pb2.FileDescriptorProto(name="actionq_client/status.proto", package="actionq_client", syntax="proto3")
    optional = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    repeated = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    kinds = descriptor_pb2.FieldDescriptorProto
    detail = file.message_type.add(name="Detail")
    detail.field.add(name="type_url", number=1, type=kinds.TYPE_STRING, label=optional)
    detail.field.add(name="value", number=2, type=kinds.TYPE_BYTES, label=optional)
    status = file.message_type.add(name="Status")
    status.field.add(name="code", number=1, type=kinds.TYPE_INT32, label=optional)
    status.field.add(name="message", number=2, type=kinds.TYPE_STRING, label=optional)
    status.field.add(name="details", number=3, type=kinds.TYPE_MESSAGE, label=repeated, type_name=".actionq_client.Detail")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    descriptor = pool.FindMessageTypeByName("actionq_client.Status")
    get_class = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.22
    if get_class is not None:
        return get_class(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


_Status = _status_message_class()


@dataclass
class RpcFailure:
    """A failed call as a worker cares about it: the gRPC code, the message,
    and the ErrorInfo reason and metadata when the server sent them."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"code": self.code.name, "message": self.message, "reason": self.reason, "metadata": self.metadata}

    def __str__(self) -> str:
        reason = f" {self.reason}" if self.reason else ""
        return f"{self.code.name}{reason}: {self.message}"


def describe(error: grpc.RpcError) -> RpcFailure:
    """Reads the code, message and ErrorInfo out of a failed call."""
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    message = error.details() if isinstance(error, grpc.Call) else str(error)
    failure = RpcFailure(code=code, message=message or "")
    trailers = error.trailing_metadata() if isinstance(error, grpc.Call) else None
    for key, value in trailers or ():
        if key != STATUS_DETAILS_KEY:
            continue
        for detail in _Status.FromString(value).details:
            if detail.type_url.rsplit("/", 1)[-1] == ERROR_INFO_TYPE:
                info = error_details_pb2.ErrorInfo.FromString(detail.value)
                failure.reason = info.reason
                failure.metadata = dict(info.metadata)
    return failure
