// The one place that decides a failure was the client's doing: a request
// connect-es could not read (it reports those as INTERNAL), a stream the
// client reset or closed, an answer that could not be written because of
// what the client sent. Such failures are answered as the client's fault
// (INVALID_ARGUMENT) or not at all (the client is gone), and never logged
// as internal errors. The interceptors, the Node adapter and the direct
// gRPC path all ask here.
import { Code } from "@connectrpc/connect";
import { Base64BodyError } from "./grpc-web-text.js";

/** Where the failure was seen. "call": thrown by the implementation or the
 * interceptor chain, or a status about to be sent. "answer": thrown while
 * the answer was being written, after the call itself finished. */
export type FaultStage = "call" | "answer";

/** A failure that is the client's: answered with `code` and `message`, or,
 * when `gone`, not answered at all (nobody is left to read it). */
export interface ClientFault {
  code: Code;
  message: string;
  gone: boolean;
}

/** What connect-es reports as INTERNAL but is a fault of the request: a
 * body that is not valid protobuf, a compressed frame it cannot
 * decompress. */
const UNREADABLE_REQUEST = /^(parse binary: |received compressed envelope|decompression failed)/;

/** Node's errors for writing to a stream the client already closed. */
const CLIENT_GONE = new Set(["ERR_STREAM_DESTROYED", "ERR_STREAM_WRITE_AFTER_END", "ERR_HTTP2_INVALID_STREAM", "ERR_HTTP2_STREAM_ERROR"]);

/** Whether `failure` is the client's fault, and how to answer it.
 * `failure` is what was thrown, or a status read back from the wire as
 * `{ code, rawMessage }` (a ConnectError has that shape too).
 * Undefined means the server's own fault (or a status already right). */
export function clientFault(failure: unknown, stage: FaultStage): ClientFault | undefined {
  const { code, rawMessage, name } = (failure ?? {}) as { code?: unknown; rawMessage?: unknown; name?: unknown };
  if (code === Code.Internal && typeof rawMessage === "string" && UNREADABLE_REQUEST.test(rawMessage)) {
    return { code: Code.InvalidArgument, message: rawMessage, gone: false };
  }
  if (typeof code === "string" && CLIENT_GONE.has(code)) return { code: Code.Canceled, message: "the client closed the stream", gone: true };
  if (stage === "call") return undefined;
  // Once the call has finished, a cancellation or abort can only be the
  // client's leaving (inside a call it may be the server's shutdown, which
  // the call reports as it is).
  if (name === "AbortError" || code === Code.Aborted || code === Code.Canceled) return { code: Code.Canceled, message: "the client went away", gone: true };
  if (failure instanceof Base64BodyError) return { code: Code.InvalidArgument, message: `application/grpc-web-text: ${failure.message}`, gone: false };
  // Writing an error message that quoted malformed client text.
  if (failure instanceof URIError) return { code: Code.InvalidArgument, message: "the request could not be decoded", gone: false };
  return undefined;
}
