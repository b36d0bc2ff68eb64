// gRPC-Web's text mode (`application/grpc-web-text`), the default of
// Google's grpc-web browser client: the same frames as binary gRPC-Web,
// base64-encoded both ways. connect-es serves only the binary mode, so a
// text call is translated at the edge: its body is decoded and handed on as
// `application/grpc-web+proto`, and each chunk of the answer is encoded on
// the way out. Each chunk is padded on its own, which the mode allows: a
// reader decodes four characters at a time.
import type { UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";

const TEXT_CONTENT_TYPE = /^application\/grpc-web-text(\+proto)?\s*(;.*)?$/i;
const QUANTUM = /^[A-Za-z0-9+/]{2}[A-Za-z0-9+/=]{2}$/;

export function isGrpcWebText(contentType: string | null | undefined): boolean {
  return typeof contentType === "string" && TEXT_CONTENT_TYPE.test(contentType);
}

export class Base64BodyError extends Error {}

/** Decodes base64 that may be several padded runs one after another. */
export function decodeBase64Runs(text: string): Uint8Array {
  const compact = text.replace(/[\r\n\t ]/g, "");
  if (compact.length % 4 !== 0) throw new Base64BodyError("the body is not base64: its length is not a multiple of 4");
  const parts: Buffer[] = [];
  let start = 0;
  for (let at = 0; at < compact.length; at += 4) {
    const quantum = compact.slice(at, at + 4);
    if (!QUANTUM.test(quantum) || (quantum[2] === "=" && quantum[3] !== "=")) throw new Base64BodyError(`the body is not base64 at character ${at}`);
    if (quantum.endsWith("=")) {
      parts.push(Buffer.from(compact.slice(start, at + 4), "base64"));
      start = at + 4;
    }
  }
  if (start < compact.length) parts.push(Buffer.from(compact.slice(start), "base64"));
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

async function* encodedBody(body: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  for await (const chunk of body) yield Buffer.from(Buffer.from(chunk).toString("base64"), "latin1");
}

/** The request as the binary mode: the body read whole (a text-mode call
 * carries one request message) and decoded, with the binary content type.
 * A body that is not base64, or too large, is a Base64BodyError. */
export async function textRequestAsBinary(req: UniversalServerRequest, maxBytes: number): Promise<UniversalServerRequest> {
  // Base64 is a third larger than what it carries.
  const limit = Math.ceil((maxBytes * 4) / 3) + 8;
  let text = "";
  for await (const chunk of req.body as AsyncIterable<Uint8Array>) {
    text += Buffer.from(chunk).toString("latin1");
    if (text.length > limit) throw new Base64BodyError(`the body is larger than the ${maxBytes} bytes a message may have`);
  }
  const header = new Headers(req.header);
  header.set("content-type", "application/grpc-web+proto");
  return { ...req, header, body: once(decodeBase64Runs(text)) };
}

/** The binary answer in text mode. */
export function binaryResponseAsText(res: UniversalServerResponse): UniversalServerResponse {
  const header = new Headers(res.header);
  const contentType = header.get("content-type");
  if (contentType?.startsWith("application/grpc-web")) header.set("content-type", "application/grpc-web-text+proto");
  header.delete("content-length");
  return { ...res, header, body: res.body ? encodedBody(res.body as AsyncIterable<Uint8Array>) : res.body };
}
