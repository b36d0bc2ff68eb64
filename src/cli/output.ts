// What actionctl writes: proto JSON on stdout (snake_case fields, enum names,
// int64 as strings), or text for people where asked (`history`), and errors as one JSON line on stderr carrying the
// server's google.rpc.ErrorInfo reason, so that scripts can branch on it.
import { type DescMessage, type JsonObject, type MessageShape, toJson } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";

const isClosedPipe = (error: unknown) => (error as NodeJS.ErrnoException | undefined)?.code === "EPIPE";

function write(stream: NodeJS.WriteStream, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(text, (error) => {
      if (isClosedPipe(error)) process.exit(0);
      if (error) reject(error);
      else resolve();
    });
  });
}

/** A reader that goes away (`actionctl events --follow | head`) ends the
 * command quietly instead of crashing it. */
export function exitQuietlyOnClosedPipe(): void {
  process.stdout.on("error", (error) => {
    if (isClosedPipe(error)) process.exit(0);
    throw error;
  });
}

/** The message as proto JSON. proto3 JSON leaves out fields at their
 * default value; `always` puts chosen top-level ones back (an empty list, an
 * empty token) so that consumers need not special-case them. */
export function messageJson<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>, always: JsonObject = {}): JsonObject {
  return { ...always, ...(toJson(schema, message, { useProtoFieldName: true }) as JsonObject) };
}

/** One JSON document on stdout, indented for people, parseable by machines. */
export function printDocument(document: JsonObject): Promise<void> {
  return write(process.stdout, `${JSON.stringify(document, null, 2)}\n`);
}

/** One JSON Lines record on stdout. */
export function printLine(document: JsonObject): Promise<void> {
  return write(process.stdout, `${JSON.stringify(document)}\n`);
}

/** Plain text for people, one line each, on stdout. */
export function printText(lines: string[]): Promise<void> {
  return write(process.stdout, lines.map((line) => `${line}\n`).join(""));
}

/** A short human note on stderr, for outcomes that are not errors. */
export function note(text: string): Promise<void> {
  return write(process.stderr, `actionctl: ${text}\n`);
}

/** {"error":{code, message, reason, metadata}}: the gRPC code in
 * snake_case and the ErrorInfo detail when the server sent one. */
export function errorDocument(error: unknown): JsonObject {
  const connectError = ConnectError.from(error);
  const info = connectError.findDetails(ErrorInfoSchema)[0];
  return {
    error: {
      code: codeToString(connectError.code),
      message: connectError.rawMessage,
      reason: info?.reason ?? "",
      metadata: { ...info?.metadata },
    },
  };
}

export function printError(error: unknown): Promise<void> {
  return write(process.stderr, `${JSON.stringify(errorDocument(error))}\n`);
}
