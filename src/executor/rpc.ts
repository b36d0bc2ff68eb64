// How the executor talks to the server: the generated Connect client over
// gRPC, which failures are worth another try, and how long to wait between
// tries.
import { setTimeout as sleep } from "node:timers/promises";
import { type CallOptions, type Client, Code, ConnectError, type Interceptor, createClient } from "@connectrpc/connect";
import { context, propagation } from "@opentelemetry/api";
import { type ClientEnvironment, clientTransport } from "../client-transport.js";
import { ActionQueueService } from "../../gen/actionq/v1/action_queue_service_pb.js";
import type { Logger } from "../log.js";

export type QueueClient = Client<typeof ActionQueueService>;

/** `host:port` or a full `http://` or `https://` URL, with the token and
 * TLS files the environment names. */
export function connect(address: string, env: ClientEnvironment): QueueClient {
  // HTTP/2 pings notice a dead connection under a quiet claim stream, which
  // would otherwise wait forever for a message that cannot come.
  return createClient(ActionQueueService, clientTransport(address, env, { pingIntervalMs: 10_000, interceptors: [traceparent] }));
}

/** Sends the active span (a claim's, see claim-run.ts) as traceparent, so
 * that the server's spans of the call are its children. Nothing is sent
 * unless the OpenTelemetry SDK was started (src/tracing/process-sdk.ts). */
const traceparent: Interceptor = (next) => (req) => {
  propagation.inject(context.active(), req.header, { set: (header, key, value) => header.set(key, value) });
  return next(req);
};

/** One unary call that takes this long means the server is stuck; give up
 * on that try and make another. */
export const UNARY: CallOptions = { timeoutMs: 20_000 };

/** Answers that another try cannot change: the request is wrong, or the
 * claim is finished or no longer ours. Everything else (the server
 * restarting, a reset connection, a timeout) is worth retrying. */
const FINAL_CODES = new Set([
  Code.InvalidArgument,
  Code.NotFound,
  Code.AlreadyExists,
  Code.PermissionDenied,
  Code.FailedPrecondition,
  Code.OutOfRange,
  Code.Unimplemented,
  Code.Unauthenticated,
]);

export function isFinal(error: unknown): boolean {
  return error instanceof ConnectError && FINAL_CODES.has(error.code);
}

/** The server says the action is finished or the token is not the current
 * claim's: nothing this executor does with the claim can count any more. */
export function isClaimGone(error: unknown): boolean {
  return error instanceof ConnectError && error.code === Code.FailedPrecondition;
}

export function describeError(error: unknown): string {
  return error instanceof ConnectError ? `${Code[error.code]}: ${error.rawMessage}` : String(error);
}

/** Capped exponential backoff with jitter, so that many executors coming
 * back after an outage do not all knock at once. */
export class Backoff {
  private failures = 0;

  constructor(
    private readonly baseMs = 250,
    private readonly capMs = 30_000,
  ) {}

  next(): number {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** this.failures);
    this.failures = Math.min(this.failures + 1, 30);
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }

  reset(): void {
    this.failures = 0;
  }
}

/** Waits, or returns early (without throwing) when `signal` aborts. */
export async function pause(ms: number, signal?: AbortSignal): Promise<void> {
  await sleep(ms, undefined, { signal }).catch(() => {});
}

/** Makes a call until the server gives a final answer or `signal` aborts:
 * the outcome of a claim must reach the server even across its restarts. */
export async function persist<T>(what: string, call: () => Promise<T>, log: Logger, signal?: AbortSignal): Promise<T> {
  const backoff = new Backoff(250, 10_000);
  for (;;) {
    try {
      return await call();
    } catch (error) {
      if (isFinal(error) || signal?.aborted) throw error;
      const delayMs = backoff.next();
      log.warn({ err: describeError(error), retryInMs: delayMs }, `${what} failed; retrying`);
      await pause(delayMs, signal);
      if (signal?.aborted) throw error;
    }
  }
}
