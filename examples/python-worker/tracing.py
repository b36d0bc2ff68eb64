"""A worker's span, continuing the trace its claim carries, sent over
OTLP/HTTP JSON with the standard library alone.

Debian 12 packages no OpenTelemetry for Python, and this example installs
nothing else, so it speaks the protocol itself: one span per action, posted
to the same OTLP/HTTP receiver an SDK would use when it ends. With the
OpenTelemetry SDK (`pip install opentelemetry-sdk
opentelemetry-exporter-otlp-proto-http`) the same is a few lines: extract
the context with `TraceContextTextMapPropagator().extract({"traceparent":
..., "tracestate": ...})` and start the span with `context=` that.

Off (every function a no-op) unless OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
OTEL_EXPORTER_OTLP_ENDPOINT is set, as with an SDK. OTEL_SERVICE_NAME names
the worker (default actionq-python-worker).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
import urllib.request

log = logging.getLogger("tracing")

# version-traceid-parentid-flags (https://www.w3.org/TR/trace-context/).
TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
SPAN_KIND_CONSUMER = 5
STATUS_OK, STATUS_ERROR = 1, 2


def traces_endpoint() -> str | None:
    """Where spans go, by the OTLP exporter's rules; None turns tracing off."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if endpoint:
        return endpoint
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return base.rstrip("/") + "/v1/traces" if base else None


class Span:
    """One span: the child of `traceparent` when it is well formed, else the
    root of a new trace."""

    def __init__(self, name: str, traceparent: str, tracestate: str, attributes: dict[str, str | int]) -> None:
        match = TRACEPARENT.match(traceparent.strip())
        valid = match is not None and match.group(1) != "ff" and set(match.group(2)) != {"0"} and set(match.group(3)) != {"0"}
        self.trace_id = match.group(2) if valid else secrets.token_hex(16)
        self.parent_span_id = match.group(3) if valid else ""
        self.flags = match.group(4) if valid else "01"
        self.tracestate = tracestate if valid else ""
        self.span_id = secrets.token_hex(8)
        self.name = name
        self.attributes = attributes
        self.start_ns = time.time_ns()
        self.error: str | None = None

    @property
    def traceparent(self) -> str:
        """This span as the traceparent of the calls made inside it."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC metadata that makes the server's spans children of this one."""
        pairs = [("traceparent", self.traceparent)]
        if self.tracestate:
            pairs.append(("tracestate", self.tracestate))
        return tuple(pairs)

    def to_otlp(self, end_ns: int) -> dict:
        """The span in OTLP JSON: ids in hex, times as decimal strings of
        nanoseconds, attributes as key / typed value pairs."""
        span = {
            "traceId": self.trace_id,
            "spanId": self.span_id,
            "name": self.name,
            "kind": SPAN_KIND_CONSUMER,
            "startTimeUnixNano": str(self.start_ns),
            "endTimeUnixNano": str(end_ns),
            "attributes": [attribute(key, value) for key, value in self.attributes.items()],
            "status": {"code": STATUS_ERROR, "message": self.error} if self.error else {"code": STATUS_OK},
        }
        if self.parent_span_id:
            span["parentSpanId"] = self.parent_span_id
        if self.tracestate:
            span["traceState"] = self.tracestate
        return span

    def end(self) -> None:
        """Posts the span; a receiver that is down costs a log line, never
        the action."""
        endpoint = traces_endpoint()
        if endpoint is None or self.flags[-1] not in "13579bdf":  # not sampled
            return
        service = os.environ.get("OTEL_SERVICE_NAME", "").strip() or "actionq-python-worker"
        body = {
            "resourceSpans": [
                {
                    "resource": {"attributes": [attribute("service.name", service)]},
                    "scopeSpans": [{"scope": {"name": "actionq-python-worker"}, "spans": [self.to_otlp(time.time_ns())]}],
                }
            ]
        }
        request = urllib.request.Request(endpoint, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()
        except OSError as error:
            log.warning("could not export the span of %s: %s", self.name, error)


def attribute(key: str, value: str | int) -> dict:
    typed = {"intValue": str(value)} if isinstance(value, int) else {"stringValue": value}
    return {"key": key, "value": typed}


def start_span(name: str, traceparent: str, tracestate: str, attributes: dict[str, str | int]) -> Span | None:
    """A span when tracing is on, else None."""
    return Span(name, traceparent, tracestate, attributes) if traces_endpoint() else None
