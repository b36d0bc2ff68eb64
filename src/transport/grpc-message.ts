// connect-node percent-encodes the grpc-message header with
// encodeURIComponent, which also escapes ':' ',' ';' '/' and friends;
// grpc-js decodes it with decodeURI, which leaves those escapes in place, so
// grpc-js users would read "confidence%3A must be...". The gRPC spec only
// requires escaping bytes outside printable ASCII and '%'. This shim
// re-encodes the header that way on each response, before Node sends it.
// It also names the setting behind connect-node's own message-size refusal,
// which happens before any actionq code sees the request.
import type http2 from "node:http2";

type Headers = Record<string, unknown> | undefined;

/** Percent-encodes the UTF-8 bytes of `text` outside 0x20-0x7E, and '%'. */
export function encodeGrpcMessage(text: string): string {
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

function fix(headers: Headers): void {
  const value = headers?.["grpc-message"];
  if (typeof value !== "string") return;
  let text: string;
  try {
    text = decodeURIComponent(value);
  } catch {
    return;
  }
  headers!["grpc-message"] = encodeGrpcMessage(text.replace(/configured readMaxBytes (\d+)/, "ACTIONQ_MAX_MESSAGE_BYTES ($1 bytes)"));
}

export function withPlainGrpcMessages(res: http2.Http2ServerResponse): void {
  const addTrailers = res.addTrailers.bind(res);
  res.addTrailers = (headers) => {
    fix(headers as Headers);
    addTrailers(headers);
  };
  const writeHead = res.writeHead.bind(res) as (status: number, headers?: Headers) => http2.Http2ServerResponse;
  res.writeHead = ((status: number, headers?: Headers) => {
    fix(headers);
    return writeHead(status, headers);
  }) as typeof res.writeHead;
}
