#!/usr/bin/python3
"""A long-lived actionq worker in Python.

It holds a StreamClaims stream, acknowledges each claim it receives, keeps
the lease alive while it works, then completes or fails the action. When the
stream breaks or the server sends Drain, it keeps working on the claims it
holds (their tokens outlive the stream) and reconnects with backoff. SIGTERM
or SIGINT stops it taking claims; it finishes what it holds and exits 0 (a
second signal exits at once, and the claims it held go back to the queue
when their leases run out).

It reads the bearer token and TLS settings from the same environment
variables as actionctl: ACTIONQ_TOKEN, ACTIONQ_TLS_CA, ACTIONQ_TLS_CLIENT_CERT
and ACTIONQ_TLS_CLIENT_KEY, with --server https://HOST:PORT for TLS. When the
server refuses the credential (UNAUTHENTICATED or PERMISSION_DENIED) it
stops with one line on stderr and exit status 3: retrying would not help.
Exit status 2 means wrong settings.

stdout carries one JSON line per finished action, for scripts and tests:
    {"outcome": "completed", "id": 7, "attempt": 1, "action_type": "...", "worker": "..."}
Logs go to stderr.

The work is simulated: it takes --work-time seconds, and an action whose
payload has a "fail" field fails with that text as its reason. Replace
perform() with real work.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TypeVar

import grpc
from google.protobuf import duration_pb2, json_format

import tracing
from actionq_client import REFUSED, Endpoint, RpcFailure, SetupError, action_pb2, api, connect, describe, refusal_hint

log = logging.getLogger("worker")
Response = TypeVar("Response")

# Failures worth trying again with the same token: the server is restarting
# or unreachable. Completing twice with the same token and result is safe.
TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
CALL_TIMEOUT_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 5.0
EXIT_REFUSED = 3


class ClaimLost(Exception):
    """The claim is no longer ours: the lease ran out, the action was
    cancelled, or the claim was released before we acknowledged it."""


class CredentialRefused(Exception):
    """The server refused our credential or roles; only a person can fix
    that, so the worker stops instead of reconnecting."""

    def __init__(self, failure: RpcFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure


class WorkFailed(Exception):
    """The work itself failed; the action is failed with this message."""


@dataclass(frozen=True)
class Options:
    server: Endpoint
    worker: str
    action_types: list[str]
    projects: list[str]
    max_in_flight: int
    lease_seconds: int
    work_seconds: float
    exit_after: int


def parse_options(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(description="An actionq worker: claims actions over StreamClaims and runs them.")
    parser.add_argument("--server", default=os.environ.get("ACTIONQ_ADDR", "").strip() or "127.0.0.1:50051", help="HOST:PORT, or https://HOST:PORT for TLS (default $ACTIONQ_ADDR or 127.0.0.1:50051)")
    parser.add_argument("--worker", help="worker name, kept as claimed_by (default python:<host>-<pid>; with ACTIONQ_TOKEN or a client certificate, the principal's name)")
    parser.add_argument("--type", dest="action_types", action="append", default=[], metavar="TYPE", help="take only this action type (repeatable; default any)")
    parser.add_argument("--project", dest="projects", action="append", default=[], metavar="PROJECT", help="take only this project (repeatable; default any)")
    parser.add_argument("--max-in-flight", type=int, default=4, help="most claims held at once (default 4)")
    parser.add_argument("--lease", dest="lease_seconds", type=int, default=60, help="lease of each claim in seconds, extended every third of it (default 60)")
    parser.add_argument("--work-time", dest="work_seconds", type=float, default=0.1, help="simulated work per action in seconds (default 0.1)")
    parser.add_argument("--exit-after", type=int, default=0, metavar="N", help="exit after finishing N actions (default 0: run until signalled)")
    args = parser.parse_args(argv)
    if args.max_in_flight < 1 or args.lease_seconds < 1 or args.work_seconds < 0 or args.exit_after < 0:
        parser.error("--max-in-flight and --lease must be at least 1; --work-time and --exit-after not negative")
    try:
        args.server = Endpoint.parse(args.server)
    except SetupError as error:
        parser.error(str(error))
    if args.worker is None:
        # With a credential the server names the worker; any other name
        # would be refused (IDENTITY_MISMATCH).
        args.worker = "" if args.server.has_credential else f"python:{socket.gethostname()}-{os.getpid()}"
    return Options(**vars(args))


class Slots:
    """Counts the claims in hand against --max-in-flight and --exit-after."""

    def __init__(self, capacity: int, budget: int) -> None:
        self._capacity = capacity
        self._budget = budget  # 0: unlimited
        self._in_flight = 0
        self._finished = 0
        self._changed = threading.Condition()

    def room(self) -> int:
        with self._changed:
            room = self._capacity - self._in_flight
            if self._budget:
                room = min(room, self._budget - self._finished - self._in_flight)
            return max(0, room)

    @property
    def done(self) -> bool:
        with self._changed:
            return self._budget > 0 and self._finished >= self._budget

    def take(self, timeout: float) -> bool:
        """Counts one more claim in hand, waiting up to `timeout` for room:
        the server frees a stream's slot when CompleteAction commits, so the
        next claim can arrive before the finishing thread gives its slot
        back."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.room() > 0 or self.done, timeout) or self.done:
                return False
            self._in_flight += 1
            return True

    def give_back(self, finished: bool) -> None:
        with self._changed:
            self._in_flight -= 1
            self._finished += int(finished)
            self._changed.notify_all()

    def wait_for_room(self, stopping: threading.Event) -> int:
        """Blocks until a claim would fit; 0 when stopping or done."""
        with self._changed:
            while not stopping.is_set() and not self.done:
                room = self.room()
                if room > 0:
                    return room
                self._changed.wait(0.5)
            return 0

    def wait_idle(self) -> None:
        with self._changed:
            while self._in_flight > 0:
                self._changed.wait(0.5)


class Backoff:
    """Exponential backoff with jitter, from 0.2 s up to MAX_BACKOFF_SECONDS."""

    def __init__(self) -> None:
        self._next = 0.2

    def reset(self) -> None:
        self._next = 0.2

    def wait(self, stopping: threading.Event) -> None:
        stopping.wait(self._next * random.uniform(0.5, 1.0))
        self._next = min(self._next * 2, MAX_BACKOFF_SECONDS)


def perform(action: action_pb2.Action, work_seconds: float, lost: threading.Event) -> str:
    """The simulated work. Returns the result_ref; raises WorkFailed."""
    payload = json_format.MessageToDict(action.payload)
    log.info("doing %s #%d (attempt %d)", action.action_type, action.id, action.attempt)
    if lost.wait(work_seconds):
        raise ClaimLost("the lease was lost while working")
    if "fail" in payload:
        raise WorkFailed(str(payload["fail"]))
    return f"python://{action.action_type}/{action.id}/attempt-{action.attempt}"


class ClaimRun:
    """One claim from acknowledgement to outcome, on its own thread."""

    def __init__(self, worker: Worker, claim: action_pb2.Claim) -> None:
        self.worker = worker
        self.action = claim.action
        self.token = claim.claim_token
        self.lease_seconds = worker.options.lease_seconds
        # Our own view of the lease, on our clock: past it, the token is
        # worthless and retrying makes no sense.
        self.deadline = time.monotonic() + self.lease_seconds
        self.lost = threading.Event()
        self.finished = threading.Event()
        # The work's span continues the producer's trace (Action.trace_context);
        # the calls below carry it, so the server's spans are its children.
        context = self.action.trace_context
        self.span = tracing.start_span(
            f"work {self.action.action_type}",
            context.traceparent,
            context.tracestate,
            {"actionq.action.id": str(self.action.id), "actionq.action.type": self.action.action_type, "actionq.action.attempt": self.action.attempt},
        )
        self.metadata = self.span.metadata() if self.span else ()

    def run(self) -> None:
        outcome = ""
        try:
            self.call(self.worker.stub.AckClaim, api.AckClaimRequest(id=self.action.id, claim_token=self.token))
            keeper = threading.Thread(target=self.keep_lease, name=f"lease-{self.action.id}", daemon=True)
            keeper.start()
            try:
                result_ref = perform(self.action, self.worker.options.work_seconds, self.lost)
            except WorkFailed as failure:
                self.call(self.worker.stub.FailAction, api.FailActionRequest(id=self.action.id, claim_token=self.token, reason=str(failure)))
                outcome = "failed"
            else:
                self.call(self.worker.stub.CompleteAction, api.CompleteActionRequest(id=self.action.id, claim_token=self.token, result_ref=result_ref))
                outcome = "completed"
            finally:
                self.finished.set()
                keeper.join()
        except ClaimLost as lost:
            log.warning("gave up action %d: %s", self.action.id, lost)
        except grpc.RpcError as error:
            failure = describe(error)
            if failure.code in REFUSED:
                self.worker.refuse(failure)
            else:
                log.error("action %d: %s", self.action.id, failure)
        except Exception:  # a bug here must not kill the worker silently
            log.exception("action %d: unexpected error", self.action.id)
        finally:
            if self.span:
                self.span.error = None if outcome == "completed" else (outcome or "gave up")
                self.span.end()
            self.worker.claim_ended(self.action, outcome)

    def call(self, method: Callable[..., Response], request: object) -> Response:
        """Calls with the claim token, retrying transient failures until the
        lease runs out. FAILED_PRECONDITION means the claim is gone."""
        backoff = Backoff()
        retries = 0
        while True:
            try:
                return method(request, timeout=CALL_TIMEOUT_SECONDS, wait_for_ready=True, metadata=self.metadata)
            except grpc.RpcError as error:
                failure = describe(error)
                if failure.code == grpc.StatusCode.FAILED_PRECONDITION:
                    raise ClaimLost(str(failure)) from None
                if failure.code not in TRANSIENT:
                    raise
                if time.monotonic() > self.deadline:
                    raise ClaimLost(f"the lease ran out while the server was unreachable ({failure})") from None
                log.log(logging.INFO if retries == 0 else logging.DEBUG, "action %d: %s; retrying", self.action.id, failure)
                retries += 1
                backoff.wait(self.worker.hard_stop)
                if self.worker.hard_stop.is_set():
                    raise

    def keep_lease(self) -> None:
        """Extends the lease every third of it until the work is done."""
        regular = self.lease_seconds / 3
        interval = regular
        while not self.finished.wait(interval):
            request = api.ExtendClaimRequest(id=self.action.id, claim_token=self.token, lease_duration=duration_pb2.Duration(seconds=self.lease_seconds))
            sent = time.monotonic()
            try:
                self.worker.stub.ExtendClaim(request, timeout=CALL_TIMEOUT_SECONDS, wait_for_ready=True)
                self.deadline = sent + self.lease_seconds
                interval = regular
            except grpc.RpcError as error:
                if self.finished.is_set():
                    return  # the outcome was reported while this call waited
                failure = describe(error)
                if failure.code == grpc.StatusCode.FAILED_PRECONDITION:
                    log.warning("action %d: lease lost: %s", self.action.id, failure)
                    self.lost.set()
                    return
                # Try again sooner; the lease still has two thirds to run.
                log.log(logging.INFO if interval == regular else logging.DEBUG, "action %d: could not extend the lease: %s", self.action.id, failure)
                interval = max(1.0, self.lease_seconds / 10)


class Worker:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.channel, self.stub = connect(options.server)
        self.refused: RpcFailure | None = None
        self.slots = Slots(options.max_in_flight, options.exit_after)
        self.stopping = threading.Event()
        self.hard_stop = threading.Event()
        self._stream: grpc.Future | None = None
        # Re-entrant: the signal handler takes it on the main thread, which
        # may hold it already.
        self._stream_lock = threading.RLock()
        self._stdout_lock = threading.Lock()
        # wait_for_ready waits without a word while the channel cannot
        # connect; say so once per outage, with what usually causes it.
        self._unreachable = False
        self.channel.subscribe(self._on_connectivity)

    def _on_connectivity(self, state: grpc.ChannelConnectivity) -> None:
        server = self.options.server
        if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE and not self._unreachable:
            self._unreachable = True
            if server.tls:
                hint = "is it running there? If it is, its certificate may not be signed by a CA this worker trusts: set ACTIONQ_TLS_CA to that CA's PEM file"
            else:
                hint = "is it running there? If it speaks TLS, use ACTIONQ_ADDR=https://HOST:PORT"
            log.warning("cannot reach %s yet, still trying: %s", server.url, hint)
        elif state == grpc.ChannelConnectivity.READY and self._unreachable:
            self._unreachable = False
            log.info("connected to %s", server.url)

    def run(self) -> None:
        """Holds a claim stream until stopped, reconnecting as needed, then
        waits for the claims in hand. Raises CredentialRefused when the
        server refuses the credential."""
        backoff = Backoff()
        log.info("worker %s on %s", self.options.worker or "(named by the server)", self.options.server.url)
        while True:
            room = self.slots.wait_for_room(self.stopping)
            if room == 0:
                break
            healthy = self.hold_stream(room, backoff)
            if not healthy and not self.stopping.is_set():
                backoff.wait(self.stopping)
        if self.refused is None:
            self.slots.wait_idle()
        self.channel.close()
        if self.refused is not None:
            raise CredentialRefused(self.refused)
        log.info("worker %s stopped", self.options.worker or "(named by the server)")

    def refuse(self, failure: RpcFailure) -> None:
        """Stops everything at once: no call will succeed with this
        credential, so the claims in hand go back when their leases end."""
        with self._stream_lock:
            if self.refused is None:
                self.refused = failure
        self.stopping.set()
        self.hard_stop.set()
        self.cancel_stream()

    def hold_stream(self, room: int, backoff: Backoff) -> bool:
        """One StreamClaims stream asking for `room` claims at a time. True
        when it ended on our side, so reconnecting needs no backoff."""
        request = api.StreamClaimsRequest(
            worker=self.options.worker,
            action_types=self.options.action_types,
            projects=self.options.projects,
            max_in_flight=room,
            lease_duration=duration_pb2.Duration(seconds=self.options.lease_seconds),
        )
        # wait_for_ready: while the server is away, wait for it to come back
        # instead of failing at once.
        stream = self.stub.StreamClaims(request, wait_for_ready=True)
        with self._stream_lock:
            self._stream = stream
        if self.stopping.is_set():
            stream.cancel()
        try:
            for message in stream:
                backoff.reset()
                kind = message.WhichOneof("kind")
                if kind == "claim":
                    self.start_claim(message.claim)
                elif kind == "drain":
                    log.info("server draining (%s); reconnecting", message.drain.reason)
                    return False
                elif kind == "heartbeat" and self.slots.room() > room:
                    # Claims from an earlier stream have finished and this
                    # one asks for too little; being quiet, it has nothing
                    # in transit to lose. Open a wider one.
                    return True
                if self.slots.done:
                    return True
            log.info("claim stream ended; reconnecting")
            return False
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.CANCELLED and (self.stopping.is_set() or self.slots.done):
                return True
            failure = describe(error)
            if failure.code in REFUSED:
                self.refuse(failure)
                return True
            log.warning("claim stream broke: %s; reconnecting", failure)
            return False
        finally:
            stream.cancel()
            with self._stream_lock:
                self._stream = None

    def start_claim(self, claim: action_pb2.Claim) -> None:
        if not self.slots.take(timeout=2.0):
            # Past --exit-after: leave it unacknowledged; the server releases
            # it when this stream closes.
            log.info("not taking action %d", claim.action.id)
            return
        run = ClaimRun(self, claim)
        threading.Thread(target=run.run, name=f"claim-{claim.action.id}", daemon=True).start()

    def claim_ended(self, action: action_pb2.Action, outcome: str) -> None:
        """Reports a finished action on stdout and frees its slot; after the
        last of --exit-after, ends the stream so that the worker exits."""
        if outcome:
            line = json.dumps({"outcome": outcome, "id": action.id, "attempt": action.attempt, "action_type": action.action_type, "worker": action.claimed_by or self.options.worker})
            with self._stdout_lock:
                print(line, flush=True)
        self.slots.give_back(finished=bool(outcome))
        if self.slots.done:
            self.cancel_stream()

    def cancel_stream(self) -> None:
        with self._stream_lock:
            if self._stream is not None:
                self._stream.cancel()

    def stop(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping.is_set():
            log.warning("second %s: exiting now; held claims return to the queue when their leases run out", signal.Signals(signum).name)
            self.hard_stop.set()
            sys.exit(1)
        log.info("%s: finishing the claims in hand, taking no more", signal.Signals(signum).name)
        self.stopping.set()
        self.cancel_stream()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    worker = Worker(parse_options(argv))
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    try:
        worker.run()
    except CredentialRefused as refused:
        print(f"worker.py: {worker.options.server.url} refused the worker: {refused.failure}; {refusal_hint(refused.failure.code)}", file=sys.stderr, flush=True)
        return EXIT_REFUSED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
