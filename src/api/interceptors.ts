// Cross-cutting work for every RPC: turning domain errors into gRPC statuses
// (in one place), and one log line per call with its method, code, duration
// and request id.
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { kCaller } from "../auth/access.js";
import { ActionqError, type ErrorKind } from "../errors.js";
import { clientFault } from "../transport/client-faults.js";

const CODES: Record<ErrorKind, Code> = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  failed_precondition: Code.FailedPrecondition,
  resource_exhausted: Code.ResourceExhausted,
  permission_denied: Code.PermissionDenied,
  unauthenticated: Code.Unauthenticated,
  unavailable: Code.Unavailable,
};

/** PostgreSQL error classes, Node socket errors and pg pool messages that
 * mean "the database is not reachable or is going away; try again", rather
 * than a bug. */
const TRANSIENT_SQLSTATE = /^(08|53|57P|40001|40P01|55P03)/;
const TRANSIENT_NODE = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND"]);
const TRANSIENT_MESSAGE =
  /^Connection terminated unexpectedly$|timeout exceeded when trying to connect|^Client has encountered a connection error and is not queryable$/;

function databaseUnavailable(error: unknown): boolean {
  const { code, message, syscall } = (error ?? {}) as { code?: unknown; message?: unknown; syscall?: unknown };
  if (typeof code === "string" && (TRANSIENT_SQLSTATE.test(code) || TRANSIENT_NODE.has(code))) return true;
  // Connecting to a Unix socket that is not there: PostgreSQL is down (it
  // removes its socket when it stops).
  if (code === "ENOENT" && syscall === "connect") return true;
  return typeof message === "string" && TRANSIENT_MESSAGE.test(message);
}

/** One refused item of a batch, as the single call would have refused it. */
export function itemError(error: ActionqError): { code: number; message: string; reason: string; metadata: Record<string, string> } {
  return { code: CODES[error.kind], message: error.message, reason: error.reason, metadata: error.metadata };
}

/** Maps any error to a ConnectError. Unexpected ones are logged with their
 * stack and reach the client only as INTERNAL. */
export function toConnectError(error: unknown, log: Logger, method: string): ConnectError {
  // A request connect-es could not read, or a stream the client already
  // closed (nobody is left to tell).
  const fault = clientFault(error, "call");
  if (fault) return new ConnectError(fault.message, fault.code);
  if (error instanceof ConnectError) return error;
  if (!(error instanceof ActionqError) && databaseUnavailable(error)) {
    log.warn({ method, err: (error as Error).message, code: (error as { code?: unknown }).code }, "database unavailable");
    error = new ActionqError("unavailable", "DATABASE_UNAVAILABLE", "the database is unavailable; retry");
  }
  if (error instanceof ActionqError) {
    const details: ConstructorParameters<typeof ConnectError>[3] = [
      { desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason: error.reason, domain: "actionq", metadata: error.metadata }) },
    ];
    if (error.retryAfterMs !== undefined)
      details.push({ desc: RetryInfoSchema, value: create(RetryInfoSchema, { retryDelay: durationFromMs(error.retryAfterMs) }) });
    return new ConnectError(error.message, CODES[error.kind], undefined, details);
  }
  log.error({ method, err: error }, "internal error");
  return new ConnectError("internal error", Code.Internal);
}

export function errorInterceptor(log: Logger): Interceptor {
  return (next) => async (req) => {
    const method = req.method.name;
    try {
      const res = await next(req);
      if (!res.stream) return res;
      const messages = res.message;
      return {
        ...res,
        message: (async function* () {
          try {
            yield* messages;
          } catch (error) {
            throw toConnectError(error, log, method);
          }
        })(),
      };
    } catch (error) {
      throw toConnectError(error, log, method);
    }
  };
}

/** A status code as metrics and logs name it: `ok`, `not_found`,
 * `invalid_argument`..., as the Connect protocol spells them. */
function codeLabel(error: unknown): string {
  if (!(error instanceof ConnectError)) return "unknown";
  return Code[error.code].replace(/[A-Z]/g, (letter, at: number) => (at === 0 ? "" : "_") + letter.toLowerCase());
}

/** A request id from the client is echoed in headers and logs: only plain
 * characters, so that it cannot forge log structure. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Logs each call when it ends: method, code, duration, request id and the
 * authenticated principal. The id comes from the x-request-id header when
 * the client sends a well-formed one, and is echoed back in the response
 * headers either way. */
export function loggingInterceptor(log: Logger, metrics?: { rpcDone(method: string, code: string, seconds: number): void }): Interceptor {
  return (next) => async (req) => {
    const started = performance.now();
    const given = req.header.get("x-request-id");
    const requestId = given && REQUEST_ID.test(given) ? given : randomUUID();
    const method = `${req.service.typeName}/${req.method.name}`;
    const done = (code: string, error?: unknown) => {
      const elapsed = performance.now() - started;
      metrics?.rpcDone(method, code, elapsed / 1000);
      const principal = req.contextValues.get(kCaller).principal?.name;
      const fields = { method, code, ms: Math.round(elapsed * 10) / 10, requestId, ...(principal ? { principal } : {}) };
      // One line per call is for debugging; a refused credential or role is
      // worth an operator's eye, and an internal fault always is.
      if (error instanceof ConnectError && error.code === Code.Internal) log.error({ ...fields, err: error.message }, "rpc");
      else if (error instanceof ConnectError && (error.code === Code.Unauthenticated || error.code === Code.PermissionDenied))
        log.info({ ...fields, err: error.rawMessage }, "rpc refused");
      else if (error) log.debug({ ...fields, err: (error as Error).message }, "rpc");
      else log.debug(fields, "rpc");
    };
    try {
      const res = await next(req);
      res.header.set("x-request-id", requestId);
      if (!res.stream) {
        done("ok");
        return res;
      }
      const messages = res.message;
      return {
        ...res,
        message: (async function* () {
          let outcome: [string, unknown?] = ["canceled"];
          try {
            for await (const message of messages) yield message;
            outcome = ["ok"];
          } catch (error) {
            outcome = [codeLabel(error), error];
            throw error;
          } finally {
            done(...outcome);
          }
        })(),
      };
    } catch (error) {
      done(codeLabel(error), error);
      throw error;
    }
  };
}
