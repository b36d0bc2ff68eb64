// The Node request handler for the router: connect-node's own adapter, plus
// the care a server facing hostile clients needs at the edge.
// - connect-es reports some faults of the request itself as INTERNAL: a body
//   that is not valid protobuf ("parse binary: ..."), a compressed frame
//   without a known encoding, data that does not decompress. They are the
//   client's fault and change nothing: INVALID_ARGUMENT, in every protocol
//   (client-faults.ts decides what is the client's fault).
// - A handler that fails while writing its answer (an error message holding
//   half a UTF-16 surrogate pair cannot be percent-encoded into grpc-message)
//   would leave the call hanging; it gets an answer instead.
// - A Connect GET whose message is not base64 (connect-es reports INTERNAL)
//   is refused as INVALID_ARGUMENT before it reaches the router.
// - A timeout header beyond what a Node timer holds (about 24.8 days) would
//   fire at once; it is clamped.
// - A request body the server never reads (the call was refused before it)
//   is not left to fill the HTTP/2 session's memory: the stream is closed.
// - Plain binary gRPC over HTTP/2 (what grpc-js sends) takes a direct path
//   that skips connect-es's per-call chain of iterables (grpc-direct.ts).
// - gRPC-Web's text mode, which connect-es does not serve, is translated to
//   and from its binary mode (grpc-web-text.ts).
import http2 from "node:http2";
import {
  Code,
  type ConnectRouter,
  type ConnectRouterOptions,
  type MethodImplSpec,
  createConnectRouter,
  createContextValues,
  createServiceImplSpec,
} from "@connectrpc/connect";
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { UniversalServerResponse } from "@connectrpc/connect/protocol";
import type { Logger } from "pino";
import { clientFault } from "./client-faults.js";
import { directSpecs, isPlainGrpc, serveDirect } from "./grpc-direct.js";
import { binaryResponseAsText, isGrpcWebText, textRequestAsBinary } from "./grpc-web-text.js";
import { type NodeRequest, kNodeRequest } from "./peer.js";

type NodeResponse = Parameters<typeof universalResponseToNodeResponse>[1];

/** Longest timeout a Node timer can hold, in milliseconds. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

function decodeGrpcMessage(value: string | null): string {
  if (value === null) return "";
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** Whether a status connect-es is about to send is INTERNAL for what is
 * really a fault of the request. */
function isClientFault(message: string): boolean {
  return clientFault({ code: Code.Internal, rawMessage: message }, "call") !== undefined;
}

/** grpc-status 13 for a client fault, in headers or trailers, becomes 3. */
function fixGrpcStatus(headers: Headers | undefined): void {
  if (headers?.get("grpc-status") !== String(Code.Internal)) return;
  if (isClientFault(decodeGrpcMessage(headers.get("grpc-message")))) headers.set("grpc-status", String(Code.InvalidArgument));
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** A Connect JSON error with code internal for a client fault becomes
 * invalid_argument; anything else comes back as it was. */
function fixConnectJson(
  bytes: Uint8Array,
  wrap: (error: Record<string, unknown>) => unknown,
  unwrap: (json: unknown) => Record<string, unknown> | undefined,
): Uint8Array | undefined {
  let json: unknown;
  try {
    json = JSON.parse(decoder.decode(bytes));
  } catch {
    return undefined;
  }
  const error = unwrap(json);
  if (error?.code !== "internal" || typeof error.message !== "string" || !isClientFault(error.message)) return undefined;
  return encoder.encode(JSON.stringify(wrap({ ...error, code: "invalid_argument" })));
}

/** The last frames of gRPC-Web (trailers, flag 0x80) and Connect streams
 * (end of stream, flag 0x02) carry the status in the body. */
function fixFrame(chunk: Uint8Array): Uint8Array {
  if (chunk.length < 5) return chunk;
  const flags = chunk[0]!;
  const length = new DataView(chunk.buffer, chunk.byteOffset + 1, 4).getUint32(0);
  if (chunk.length !== 5 + length) return chunk;
  const payload = chunk.subarray(5);
  let fixed: Uint8Array | undefined;
  if (flags & 0x80) {
    const text = decoder.decode(payload);
    const status = /^grpc-status:\s*13\s*$/im.test(text);
    const message = /^grpc-message:\s*(.*?)\s*$/im.exec(text)?.[1] ?? null;
    if (status && isClientFault(decodeGrpcMessage(message))) fixed = encoder.encode(text.replace(/^(grpc-status:\s*)13/im, `$1${Code.InvalidArgument}`));
  } else if (flags & 0x02) {
    fixed = fixConnectJson(
      payload,
      (error) => ({ ...(JSON.parse(decoder.decode(payload)) as object), error }),
      (json) => (json as { error?: Record<string, unknown> })?.error,
    );
  }
  if (!fixed) return chunk;
  const out = new Uint8Array(5 + fixed.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, fixed.length);
  out.set(fixed, 5);
  return out;
}

/** The body as it goes out, with its status frame fixed. */
async function* fixFrames(body: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  for await (const chunk of body) yield fixFrame(chunk);
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

/** Reclassifies client faults that connect-es reports as INTERNAL. */
async function fixClientFaults(res: UniversalServerResponse): Promise<UniversalServerResponse> {
  fixGrpcStatus(res.header);
  fixGrpcStatus(res.trailer);
  if (!res.body) return res;
  const contentType = res.header?.get("content-type") ?? "";
  if (res.status === 500 && contentType.startsWith("application/json")) {
    // A Connect unary error: a small JSON document, read whole to decide
    // the HTTP status before anything is sent.
    const chunks: Uint8Array[] = [];
    for await (const chunk of res.body) chunks.push(chunk);
    const bytes = Buffer.concat(chunks);
    const fixed = fixConnectJson(
      bytes,
      (error) => error,
      (json) => json as Record<string, unknown>,
    );
    if (!fixed) return { ...res, body: once(bytes) };
    res.header?.set("content-length", String(fixed.length));
    return { ...res, status: 400, body: once(fixed) };
  }
  // Faults of the request come before any message, so gRPC's trailers are
  // already final here; gRPC-Web and Connect streams carry theirs in the
  // body.
  const framed = contentType.startsWith("application/grpc-web") || contentType.startsWith("application/connect+");
  return framed ? { ...res, body: fixFrames(res.body) } : res;
}

/** Clamps grpc-timeout and connect-timeout-ms to what a timer can hold. */
function clampTimeouts(req: NodeRequest): void {
  const grpc = req.headers["grpc-timeout"];
  if (typeof grpc === "string") {
    const match = /^(\d{1,8})([HMSmun])$/.exec(grpc);
    const unit = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 }[match?.[2] ?? "S"]!;
    // In whole seconds: the header holds at most 8 digits.
    if (match && Number(match[1]) * unit > MAX_TIMEOUT_MS) req.headers["grpc-timeout"] = `${Math.floor(MAX_TIMEOUT_MS / 1000)}S`;
  }
  const connect = req.headers["connect-timeout-ms"];
  if (typeof connect === "string" && /^\d+$/.test(connect) && Number(connect) > MAX_TIMEOUT_MS) req.headers["connect-timeout-ms"] = String(MAX_TIMEOUT_MS);
}

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** Whether a Connect GET's `message` parameter decodes as its `base64`
 * parameter says. */
function getMessageDecodes(url: string): boolean {
  const query = new URLSearchParams(url.split("?", 2)[1] ?? "");
  if (query.get("base64") !== "1") return true;
  const message = query.get("message") ?? "";
  return BASE64.test(message) && message.replace(/=+$/, "").length % 4 !== 1;
}

/** An answer for a call whose handler failed before it could answer. */
function answerFailure(req: NodeRequest, res: NodeResponse, code: Code, message: string): void {
  if (res.headersSent) {
    if ("stream" in req) req.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    else res.destroy();
    return;
  }
  const contentType = String(req.headers["content-type"] ?? "");
  if (contentType.startsWith("application/grpc")) {
    res.writeHead(200, { "content-type": contentType.split(";")[0]!, "grpc-status": String(code), "grpc-message": encodeURIComponent(message) });
    res.end();
  } else {
    const name = code === Code.InvalidArgument ? "invalid_argument" : "internal";
    res.writeHead(code === Code.InvalidArgument ? 400 : 500, { "content-type": "application/json" });
    res.end(JSON.stringify({ code: name, message }));
  }
}

export interface AdapterOptions extends ConnectRouterOptions {
  routes: (router: ConnectRouter) => void;
  log: Logger;
}

export function nodeAdapter(options: AdapterOptions): (req: NodeRequest, res: NodeResponse) => void {
  const { routes, log, ...routerOptions } = options;
  const router = createConnectRouter({ acceptCompression: [compressionGzip, compressionBrotli], ...routerOptions });
  // The services as given, for the direct gRPC path.
  const specs: MethodImplSpec[] = [];
  routes({
    ...router,
    service(service, implementation, serviceOptions) {
      // Options of its own (interceptors, limits) keep a service on
      // connect-es: the direct path applies the router's.
      if (serviceOptions === undefined) specs.push(...Object.values(createServiceImplSpec(service, implementation).methods));
      return router.service(service, implementation, serviceOptions);
    },
  });
  const paths = new Map(router.handlers.map((handler) => [handler.requestPath, handler]));
  const direct = directSpecs(specs);
  const directOptions = {
    interceptors: routerOptions.interceptors ?? [],
    readMaxBytes: routerOptions.readMaxBytes ?? 0xffffffff,
    writeMaxBytes: routerOptions.writeMaxBytes ?? 0xffffffff,
    maxTimeoutMs: routerOptions.maxTimeoutMs ?? Number.MAX_SAFE_INTEGER,
    shutdownSignal: routerOptions.shutdownSignal,
  };
  return (req, res) => {
    const handler = paths.get(req.url?.split("?", 2)[0] ?? "");
    if (!handler) {
      res.writeHead(404);
      res.end();
      return;
    }
    clampTimeouts(req);
    if (req.method === "GET" && !getMessageDecodes(req.url ?? "")) {
      res.writeHead(400, { "content-type": "application/json" });
      res.end(JSON.stringify({ code: "invalid_argument", message: "message: not valid base64 (base64=1)" }));
      return;
    }
    if ("stream" in req) {
      // Refused before its body was read: stop the client sending the rest.
      res.once("finish", () => {
        if (!req.readableEnded && !req.stream.closed) req.stream.close(http2.constants.NGHTTP2_NO_ERROR);
      });
    }
    // Who is calling is read from the request itself (peer.ts).
    const values = createContextValues().set(kNodeRequest, req);
    const textMode = isGrpcWebText(req.headers["content-type"]);
    const viaConnect = async (body?: AsyncIterable<Uint8Array>) => {
      let uReq = universalRequestFromNodeRequest(req, res, undefined, values);
      if (body) uReq = { ...uReq, body };
      if (textMode) uReq = await textRequestAsBinary(uReq, directOptions.readMaxBytes);
      const uRes = await fixClientFaults(await handler(uReq));
      await universalResponseToNodeResponse(textMode ? binaryResponseAsText(uRes) : uRes, res);
    };
    const spec = "stream" in req && isPlainGrpc(req) ? direct.get(handler.requestPath) : undefined;
    let call: Promise<void>;
    if (spec) {
      let handedOver: Promise<void> | undefined;
      call = serveDirect(spec, req as http2.Http2ServerRequest, res as http2.Http2ServerResponse, values, directOptions, (body) => {
        handedOver = viaConnect(body);
      }).then(() => handedOver);
    } else {
      call = viaConnect();
    }
    call.catch((reason: unknown) => {
      // The client went away, or the stream was cut: nobody to answer.
      const gone = res.destroyed || res.writableEnded || ("stream" in req && (req.stream.destroyed || req.stream.closed));
      if (gone) return;
      const fault = clientFault(reason, "answer");
      if (fault) {
        if (!fault.gone) answerFailure(req, res, fault.code, fault.message);
        return;
      }
      log.error({ method: handler.method.name, err: reason }, "handler failed while answering");
      answerFailure(req, res, Code.Internal, "internal error");
    });
  };
}
