// A direct path for the calls most clients make: gRPC in binary protobuf
// over HTTP/2, uncompressed, unary or server-streaming, with one well-formed
// request message. connect-es serves every protocol through one chain of
// async iterables per call (split, decompress, parse, invoke, serialize,
// compress, join), which on a small machine costs several times the HTTP/2
// exchange itself. Here the body is read whole and parsed, the same
// interceptors and implementation run through connect-es's own
// invokeUnaryImplementation / transformInvokeImplementation, and the
// messages and status trailers are written directly (the trailers with
// connect-es's own encoding). Responses are not compressed, which gRPC
// always allows.
//
// Anything else (a compressed request, several or malformed envelopes, a
// body over the limit, a message that does not parse) goes to connect-es
// unchanged, with the bytes already read put back in front of the rest of
// the body, so every refusal reads exactly as it did.
//
// Tied to connect-es 2.1.2 (@connectrpc/connect and connect-node, pinned
// exactly in package.json): it calls createHandlerContext, the
// invoke*Implementation helpers and setTrailerStatus, and must answer
// byte for byte as that version does. test/grpc-direct.test.ts is the
// differential test that holds it to that; run it before moving the pin.
import type http2 from "node:http2";
import { type DescMessage, type DescMethod, type Message, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues, type Interceptor, type MethodImplSpec, createHandlerContext } from "@connectrpc/connect";
import { invokeUnaryImplementation, transformInvokeImplementation } from "@connectrpc/connect/protocol";
import { parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { clientFault } from "./client-faults.js";

type DirectSpec = MethodImplSpec & { kind: "unary" | "server_streaming" };

export interface DirectPathOptions {
  interceptors: Interceptor[];
  readMaxBytes: number;
  writeMaxBytes: number;
  maxTimeoutMs: number;
  shutdownSignal?: AbortSignal;
}

/** What the direct path could not serve: connect-es takes the call, with
 * `body` as the request body (what was read, then the rest). */
export type Fallback = (body: AsyncIterable<Uint8Array>) => void;

// Reasons given to a call's signal. Made once: an AbortError made per call
// (the default reason) captures a stack trace every time.
const CANCELLED = new ConnectError("the client cancelled the call", Code.Canceled);
const FINISHED = new ConnectError("the call has finished", Code.Canceled);

/** Whether a request is one the direct path serves. */
export function isPlainGrpc(req: http2.Http2ServerRequest): boolean {
  const type = req.headers["content-type"];
  const encoding = req.headers["grpc-encoding"];
  return req.method === "POST" && (type === "application/grpc" || type === "application/grpc+proto") && (encoding === undefined || encoding === "identity");
}

/** The methods of the services a router was given that the direct path
 * serves, by request path. */
export function directSpecs(specs: Iterable<MethodImplSpec>): Map<string, DirectSpec> {
  const out = new Map<string, DirectSpec>();
  for (const spec of specs) {
    if (spec.kind === "unary" || spec.kind === "server_streaming") out.set(`/${(spec.method as DescMethod).parent.typeName}/${spec.method.name}`, spec);
  }
  return out;
}

/** Serves one plain gRPC call, or hands it to `fallback`. Rejects only when
 * writing the answer fails. */
export async function serveDirect(
  spec: DirectSpec,
  req: http2.Http2ServerRequest,
  res: http2.Http2ServerResponse,
  contextValues: ContextValues,
  options: DirectPathOptions,
  fallback: Fallback,
): Promise<void> {
  const input = await readInput(spec.method.input, req, options.readMaxBytes, fallback);
  if (input === undefined) return;
  const requestHeader = webHeaders(req.headers);
  const timeout = parseTimeout(requestHeader.get("grpc-timeout"), options.maxTimeoutMs);
  const context = createHandlerContext({
    ...spec,
    service: spec.method.parent,
    requestMethod: "POST",
    protocolName: "grpc",
    timeoutMs: timeout.timeoutMs,
    shutdownSignal: options.shutdownSignal,
    requestHeader,
    url: `http://${req.authority}${req.url}`,
    // As connect-es answers binary gRPC.
    responseHeader: { "content-type": "application/grpc+proto" },
    responseTrailer: { "grpc-status": "0" },
    contextValues,
  });
  // The client may cancel (RST_STREAM) while the call runs. (The
  // response's writableFinished cannot tell: a reset stream reports true.)
  const onClose = () => context.abort(CANCELLED);
  req.once("close", onClose);
  const output = new Output(res, context.responseHeader, options.writeMaxBytes);
  try {
    if (timeout.error) throw timeout.error;
    if (spec.kind === "unary") {
      const message = await invokeUnaryImplementation(spec, context, input, options.interceptors);
      output.add(spec.method.output, message);
    } else {
      const messages = transformInvokeImplementation(spec, context, options.interceptors)(once(input));
      for await (const message of messages) {
        if (!(await output.write(spec.method.output, message))) break;
      }
    }
  } catch (error) {
    context.abort(error);
    // Answered as connect-es would, client faults reclassified as the
    // adapter does for connect-es's own answers.
    const fault = clientFault(error, "call");
    const status = fault
      ? new ConnectError(fault.message, fault.code)
      : error instanceof ConnectError
        ? error
        : new ConnectError("internal error", Code.Internal, undefined, undefined, error);
    setTrailerStatus(context.responseTrailer, status);
  } finally {
    // Ends the call's signal, which also drops its deadline timer and its
    // listener on the shutdown signal.
    context.abort(FINISHED);
    req.off("close", onClose);
  }
  output.end(context.responseTrailer);
}

/** The request message, or undefined when the call was handed over. */
async function readInput(schema: DescMessage, req: http2.Http2ServerRequest, readMaxBytes: number, fallback: Fallback): Promise<Message | undefined> {
  const body = await readBody(req, 5 + readMaxBytes);
  if (!body.complete) {
    fallback(replay(body.chunks, req));
    return undefined;
  }
  const bytes = body.chunks.length === 1 ? body.chunks[0]! : Buffer.concat(body.chunks, body.size);
  if (bytes.length >= 5 && bytes[0] === 0 && bytes.readUInt32BE(1) === bytes.length - 5) {
    try {
      return fromBinary(schema, bytes.subarray(5));
    } catch {
      // connect-es words the refusal.
    }
  }
  fallback(replay([bytes], undefined));
  return undefined;
}

/** Encoded envelopes of messages that several streams send as the very
 * same object (an event to every watcher): encoded once. Such messages are
 * frozen by whoever shares them; no other message is kept here. */
const encoded = new WeakMap<object, Buffer>();

/** The answer on the wire: headers before the first message (so that the
 * implementation may still set them), then messages, then trailers. */
class Output {
  private headersSent = false;

  constructor(
    private readonly res: http2.Http2ServerResponse,
    private readonly header: Headers,
    private readonly writeMaxBytes: number,
  ) {}

  /** The envelope of one message; throws RESOURCE_EXHAUSTED over the limit. */
  private envelope(schema: DescMessage, message: object): Buffer {
    const shared = Object.isFrozen(message);
    let bytes = shared ? encoded.get(message) : undefined;
    if (!bytes) {
      const payload = toBinary(schema, message as never);
      if (payload.length > this.writeMaxBytes) {
        throw new ConnectError(`message size ${payload.length} is larger than configured writeMaxBytes ${this.writeMaxBytes}`, Code.ResourceExhausted);
      }
      bytes = Buffer.allocUnsafe(5 + payload.length);
      bytes[0] = 0;
      bytes.writeUInt32BE(payload.length, 1);
      bytes.set(payload, 5);
      if (shared) encoded.set(message, bytes);
    }
    return bytes;
  }

  private begin(): boolean {
    if (this.res.destroyed || this.res.writableEnded) return false;
    if (!this.headersSent) {
      this.headersSent = true;
      this.res.writeHead(200, nodeHeaders(this.header));
    }
    return true;
  }

  /** The one message of a unary answer, sent with the trailers. */
  private last: Buffer | undefined;
  add(schema: DescMessage, message: object): void {
    this.last = this.envelope(schema, message);
  }

  /** Writes a stream message; waits while the client is not reading.
   * False once the stream is gone. */
  async write(schema: DescMessage, message: object): Promise<boolean> {
    const bytes = this.envelope(schema, message);
    if (!this.begin()) return false;
    if (!this.res.write(bytes)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.res.off("drain", done);
          this.res.off("close", done);
          resolve();
        };
        this.res.on("drain", done);
        this.res.on("close", done);
      });
    }
    return !this.res.destroyed;
  }

  end(trailer: Headers): void {
    if (!this.begin()) return;
    this.res.addTrailers(nodeHeaders(trailer));
    if (this.last) this.res.end(this.last);
    else this.res.end();
  }
}

async function* once<T>(value: T): AsyncIterable<T> {
  yield value;
}

/** The bytes read so far, then whatever the request still has. */
async function* replay(read: Buffer[], req: http2.Http2ServerRequest | undefined): AsyncIterable<Uint8Array> {
  for (const chunk of read) yield chunk;
  if (req) for await (const chunk of req) yield chunk as Buffer;
}

/** Reads the whole body, or stops once it holds more than `limit` bytes. */
function readBody(req: http2.Http2ServerRequest, limit: number): Promise<{ chunks: Buffer[]; size: number; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size > limit) {
        req.pause();
        stop();
        resolve({ chunks, size, complete: false });
      }
    };
    const onEnd = () => {
      stop();
      resolve({ chunks, size, complete: true });
    };
    const onError = (error: Error) => {
      stop();
      reject(error);
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
  });
}

function nodeHeaders(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  headers.forEach((value, key) => {
    out[key] = value;
  });
  return out;
}

function webHeaders(headers: http2.IncomingHttpHeaders): Headers {
  const out = new Headers();
  for (const [key, value] of Object.entries(headers)) {
    if (key.startsWith(":") || value === undefined) continue;
    if (Array.isArray(value)) for (const item of value) out.append(key, item);
    else out.append(key, value);
  }
  return out;
}
