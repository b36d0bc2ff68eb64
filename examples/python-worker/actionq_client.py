"""What every Python client of actionq needs: the generated stubs, a channel
with the bearer token and TLS settings of the environment (the same
variables as actionctl's), and the google.rpc.ErrorInfo that the server puts
on every error.

The stubs come from generate.sh. They are looked up on PYTHONPATH first,
then in the gen/ folder next to this file.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
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

__all__ = ["action_pb2", "api", "api_grpc", "connect", "describe", "Endpoint", "REFUSED", "refusal_hint", "RpcFailure", "SetupError"]

# The gRPC status is sent again, with its details, in this binary trailer.
STATUS_DETAILS_KEY = "grpc-status-details-bin"
ERROR_INFO_TYPE = "google.rpc.ErrorInfo"


class SetupError(Exception):
    """The client's settings are wrong (an unreadable TLS file, TLS files for
    a cleartext address); the message says which."""


# Retrying will not help until someone changes the token or the roles.
REFUSED = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


def refusal_hint(code: grpc.StatusCode) -> str:
    """What to change when the server refuses the credential."""
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return "set ACTIONQ_TOKEN (or a client certificate) to a credential the server's auth file lists"
    return "the principal lacks a role this needs (see the message), or names itself differently"


def _read_pem(variable: str, environ: Mapping[str, str]) -> bytes | None:
    path = environ.get(variable, "").strip()
    if not path:
        return None
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise SetupError(f"{variable}={path}: cannot read: {error.strerror or error}") from None


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach the server, from the same environment
    variables as actionctl: ACTIONQ_TOKEN, ACTIONQ_TLS_CA,
    ACTIONQ_TLS_CLIENT_CERT and ACTIONQ_TLS_CLIENT_KEY."""

    url: str  # as given, with its scheme: for messages
    target: str  # HOST:PORT, for grpc
    tls: bool
    token: str
    ca: bytes | None
    cert: bytes | None
    key: bytes | None

    @property
    def has_credential(self) -> bool:
        """The server then names the caller; identity fields stay empty."""
        return bool(self.token or self.cert)

    @classmethod
    def parse(cls, address: str, environ: Mapping[str, str] = os.environ) -> Endpoint:
        """`HOST:PORT` or `http://HOST:PORT` (cleartext), `https://HOST:PORT` (TLS)."""
        address = address.strip()
        scheme, _, rest = address.partition("://")
        if not rest:
            scheme, rest = "http", address
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise SetupError(f"{address}: use HOST:PORT, http://HOST:PORT or https://HOST:PORT")
        ca = _read_pem("ACTIONQ_TLS_CA", environ)
        cert = _read_pem("ACTIONQ_TLS_CLIENT_CERT", environ)
        key = _read_pem("ACTIONQ_TLS_CLIENT_KEY", environ)
        if bool(cert) != bool(key):
            raise SetupError("ACTIONQ_TLS_CLIENT_CERT and ACTIONQ_TLS_CLIENT_KEY: set both or neither")
        tls = scheme == "https"
        if not tls and (ca or cert):
            raise SetupError(f"ACTIONQ_TLS_* is set but the server address ({address}) is not an https:// URL")
        url = address if "://" in address else f"http://{address}"
        return cls(url=url, target=rest.rstrip("/"), tls=tls, token=environ.get("ACTIONQ_TOKEN", "").strip(), ca=ca, cert=cert, key=key)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, details: grpc.ClientCallDetails, metadata: list[tuple[str, str]]) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = details.wait_for_ready
        self.compression = details.compression


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call. An interceptor
    rather than call credentials, which grpc allows only over TLS: the
    server may take a token over cleartext on loopback."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _with_token(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _CallDetails(details, [*(details.metadata or ()), self._header])

    def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return continuation(self._with_token(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return continuation(self._with_token(client_call_details), request)


def connect(endpoint: Endpoint) -> tuple[grpc.Channel, api_grpc.ActionQueueServiceStub]:
    """A channel to the endpoint, with its TLS settings and bearer token,
    and the service stub on it.

    Long-lived clients should call with `wait_for_ready=True` (and a
    timeout): grpc-python makes progress on a reconnection only while some
    call is waiting for it, and calls that fail fast while the channel is
    in TRANSIENT_FAILURE can keep failing long after the server is back.
    """
    options = [
        # Reconnect soon after a server restart; gRPC's default backoff
        # grows to two minutes.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]
    if endpoint.tls:
        credentials = grpc.ssl_channel_credentials(root_certificates=endpoint.ca, private_key=endpoint.key, certificate_chain=endpoint.cert)
        channel = grpc.secure_channel(endpoint.target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(endpoint.target, options=options)
    if endpoint.token:
        channel = grpc.intercept_channel(channel, _Bearer(endpoint.token))
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
