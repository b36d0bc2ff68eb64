// A minimal long-lived actionq worker with the generated Connect client:
// hold a StreamClaims stream, acknowledge each claim, keep its lease alive
// while working, report the outcome, and reconnect with backoff when the
// stream ends. A server that refuses its credential (UNAUTHENTICATED,
// PERMISSION_DENIED) stops it with one line on stderr and exit status 3.
//
// `npm run build` compiles it with the rest of the project, so it runs on
// plain Node with nothing else installed:
//
//   npm run build
//   ACTIONQ_ADDR=127.0.0.1:50051 node dist/examples/worker.js
//
// It reads the same environment as actionctl:
//   ACTIONQ_ADDR             host:port (cleartext), or http://... / https://...
//                            (default 127.0.0.1:50051)
//   ACTIONQ_TOKEN            bearer token; the server then names the worker
//   ACTIONQ_TLS_CA           PEM CA that signed the server's certificate
//   ACTIONQ_TLS_CLIENT_CERT  PEM client certificate and key, for mutual TLS
//   ACTIONQ_TLS_CLIENT_KEY
//   WORKER_NAME              the worker's name, kept as claimed_by (default
//                            worker:example-<pid>; with a credential, the
//                            principal's name)
//
// Exit status: 0 after SIGINT or SIGTERM, 2 when the settings are wrong,
// 3 when the server refuses the credential.
//
// Tracing: each action's work is a span, the child of the trace context
// the claim carries (Action.trace_context), so it continues the producer's
// trace; the calls made for it carry the span as `traceparent`. It uses
// only @opentelemetry/api, which does nothing (and costs nothing) unless
// the process sets up an OpenTelemetry SDK; examples/tracing.ts is one:
//   node --import ./dist/examples/tracing.js dist/examples/worker.js
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, type Interceptor, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context, propagation, trace } from "@opentelemetry/api";
import type { Claim } from "../gen/actionq/v1/action_pb.js";
import { ActionQueueService } from "../gen/actionq/v1/action_queue_service_pb.js";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";

const env = (name: string): string | undefined => process.env[name]?.trim() || undefined;

/** Stops the worker with one line on stderr. */
function exit(status: number, message: string): never {
  console.error(`worker: ${message}`);
  process.exit(status);
}

function readPem(variable: string): Buffer | undefined {
  const file = env(variable);
  if (!file) return undefined;
  try {
    return readFileSync(file);
  } catch (error) {
    exit(2, `${variable}=${file}: cannot read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

/** The transport, by the same rules as actionctl's (src/client-transport.ts). */
function transport() {
  const address = env("ACTIONQ_ADDR") ?? "127.0.0.1:50051";
  const baseUrl = /^https?:\/\//i.test(address) ? address : `http://${address}`;
  const token = env("ACTIONQ_TOKEN");
  const ca = readPem("ACTIONQ_TLS_CA");
  const cert = readPem("ACTIONQ_TLS_CLIENT_CERT");
  const key = readPem("ACTIONQ_TLS_CLIENT_KEY");
  if (Boolean(cert) !== Boolean(key)) exit(2, "ACTIONQ_TLS_CLIENT_CERT and ACTIONQ_TLS_CLIENT_KEY: set both or neither");
  const tls = /^https:/i.test(baseUrl);
  if (!tls && (ca || cert)) exit(2, `ACTIONQ_TLS_* is set but ACTIONQ_ADDR (${address}) is not an https:// URL`);
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  // The active span, if any, as traceparent / tracestate metadata.
  const traceparent: Interceptor = (next) => (req) => {
    propagation.inject(context.active(), req.header, { set: (header, key, value) => header.set(key, value) });
    return next(req);
  };
  return {
    baseUrl,
    credential: Boolean(token || cert),
    transport: createGrpcTransport({ baseUrl, interceptors: token ? [traceparent, bearer] : [traceparent], nodeOptions: tls ? { ca, cert, key } : undefined }),
  };
}

const connection = transport();
const client = createClient(ActionQueueService, connection.transport);
// With a credential the server fills in the worker's name; a different one
// would be refused (IDENTITY_MISMATCH).
const worker = env("WORKER_NAME") ?? (connection.credential ? "" : `worker:example-${process.pid}`);
const stop = new AbortController();
process.once("SIGINT", () => stop.abort());
process.once("SIGTERM", () => stop.abort());

/** The work itself. Replace with real handlers per action type. */
async function perform(claim: Claim): Promise<string> {
  const action = claim.action!;
  console.log(`doing ${action.actionType} #${action.id} for ${action.createdBy}`, action.payload);
  await sleep(100);
  return `example://${action.actionType}/${action.id}`;
}

/** Retrying will not help until someone changes the token or the roles. */
function refusesCredential(error: ConnectError): boolean {
  return error.code === Code.Unauthenticated || error.code === Code.PermissionDenied;
}

/** The gRPC status name and the ErrorInfo reason: "PERMISSION_DENIED ROLE_REQUIRED". */
function statusOf(error: ConnectError): string {
  const code = Code[error.code].replace(/(?<=[a-z])(?=[A-Z])/g, "_").toUpperCase();
  const reason = error.findDetails(ErrorInfoSchema)[0]?.reason;
  return reason ? `${code} ${reason}` : code;
}

/** Ends the worker on a refused credential, saying what to change. */
function exitIfRefused(error: ConnectError): void {
  if (!refusesCredential(error)) return;
  const hint =
    error.code === Code.Unauthenticated
      ? "set ACTIONQ_TOKEN (or a client certificate) to a credential the server's auth file lists"
      : "the principal lacks a role this needs (see the message), or names itself differently";
  exit(3, `${connection.baseUrl} refused the worker: ${statusOf(error)}: ${error.rawMessage}; ${hint}`);
}

/** The server was unreachable, or refused the call unprocessed while going
 * away (connect-node reports that HTTP/2 REFUSED_STREAM as INTERNAL). */
function retriable(error: ConnectError): boolean {
  return error.code === Code.Unavailable || error.message.includes("REFUSED_STREAM");
}

/** Retries a call while the server restarts: the token outlives the stream,
 * and repeating a call with it is safe. */
async function retrying<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (!retriable(ConnectError.from(error)) || attempt === 30) throw error;
      await sleep(2000);
    }
  }
}

const tracer = trace.getTracer("actionq-example-worker");

/** Does the claim inside a span that continues the action's trace. */
function handleTraced(claim: Claim): Promise<void> {
  const action = claim.action!;
  const carrier = { traceparent: action.traceContext?.traceparent ?? "", tracestate: action.traceContext?.tracestate ?? "" };
  const parent = propagation.extract(ROOT_CONTEXT, carrier);
  const attributes = { "actionq.action.id": String(action.id), "actionq.action.type": action.actionType, "actionq.action.attempt": action.attempt };
  return tracer.startActiveSpan(`work ${action.actionType}`, { kind: SpanKind.CONSUMER, attributes }, parent, async (span) => {
    try {
      const outcome = await handle(claim);
      if (outcome !== "completed") span.setStatus({ code: SpanStatusCode.ERROR, message: outcome });
    } finally {
      span.end();
    }
  });
}

async function handle(claim: Claim): Promise<"completed" | "failed" | "gave up"> {
  const id = claim.action!.id;
  const token = claim.claimToken;
  // Extend the lease every 20 s while the work runs.
  const heartbeat = setInterval(() => {
    client.extendClaim({ id, claimToken: token, leaseDuration: { seconds: 60n } }).catch(() => {});
  }, 20_000);
  try {
    await retrying(() => client.ackClaim({ id, claimToken: token }));
    let resultRef: string;
    try {
      resultRef = await perform(claim);
    } catch (error) {
      await retrying(() => client.failAction({ id, claimToken: token, reason: String(error) }));
      console.log(`failed action #${id}`);
      return "failed";
    }
    await retrying(() => client.completeAction({ id, claimToken: token, resultRef }));
    console.log(`completed action #${id}: ${resultRef}`);
    return "completed";
  } catch (error) {
    const failure = ConnectError.from(error);
    exitIfRefused(failure);
    // FAILED_PRECONDITION: the claim is gone (lease lost, action cancelled).
    // Otherwise the lease runs out and the action is claimed again.
    console.warn(`gave up action #${id}: ${failure.message}`);
    return "gave up";
  } finally {
    clearInterval(heartbeat);
  }
}

/** What usually causes a TLS failure, worth saying while retrying it. */
function tlsHint(message: string): string {
  if (/self[- ]signed certificate|unable to (get local issuer|verify the first) certificate|certificate has expired/i.test(message)) {
    return " (the server's certificate is not signed by a CA this worker trusts: set ACTIONQ_TLS_CA to that CA's PEM file)";
  }
  if (/wrong version number|packet length too long/i.test(message)) return " (the server does not speak TLS: use ACTIONQ_ADDR=HOST:PORT without https://)";
  return "";
}

// Waits between reconnections: from 0.2 s, doubling up to 5 s, with jitter;
// back to the start once a stream delivers something.
const MIN_BACKOFF_MS = 200;
const MAX_BACKOFF_MS = 5000;
let backoffMs = MIN_BACKOFF_MS;

console.log(`worker ${worker || "(named by the server)"} on ${connection.baseUrl}`);
while (!stop.signal.aborted) {
  let ended = "the server ended the stream";
  try {
    const stream = client.streamClaims({ worker, maxInFlight: 4, leaseDuration: { seconds: 60n } }, { signal: stop.signal });
    for await (const message of stream) {
      backoffMs = MIN_BACKOFF_MS;
      if (message.kind.case === "claim") void handleTraced(message.kind.value);
      if (message.kind.case === "drain") console.log(`server draining: ${message.kind.value.reason}`);
    }
  } catch (error) {
    if (stop.signal.aborted) break;
    const failure = ConnectError.from(error);
    exitIfRefused(failure);
    ended = failure.message + tlsHint(failure.message);
  }
  if (stop.signal.aborted) break;
  const delayMs = Math.round(backoffMs * (0.5 + Math.random() / 2));
  console.warn(`stream ended: ${ended}; reconnecting in ${delayMs} ms`);
  await sleep(delayMs, undefined, { signal: stop.signal }).catch(() => {});
  backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
}
