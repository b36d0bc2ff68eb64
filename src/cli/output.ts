// What actionctl writes, in one of three modes: `json`, proto JSON on stdout
// (snake_case fields, enum names, int64 as strings); `jsonl`, the same
// compact, one record a line; `table`, aligned text for people. Errors are
// one JSON line on stderr carrying the server's google.rpc.ErrorInfo reason
// in the JSON modes, so that scripts can branch on it, and one sentence in
// table mode.
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

export const OUTPUT_MODES = ["table", "json", "jsonl"] as const;
export type OutputMode = (typeof OUTPUT_MODES)[number];

/** The mode asked for, else table on a terminal and json otherwise, so that
 * scripts get what they always got. */
export function outputMode(asked: OutputMode | undefined, stdoutIsTerminal = Boolean(process.stdout.isTTY)): OutputMode {
  return asked ?? (stdoutIsTerminal ? "table" : "json");
}

/** One answer in every mode: the JSON document, its records for jsonl (the
 * document itself on one line when it is not a list), and its text. */
export interface Rendering {
  json: JsonObject;
  records?: () => JsonObject[];
  table: () => string[];
}

export async function print(mode: OutputMode, rendering: Rendering): Promise<void> {
  if (mode === "json") return printDocument(rendering.json);
  if (mode === "table") return printText(rendering.table());
  for (const record of rendering.records?.() ?? [rendering.json]) await printLine(record);
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
 * snake_case and the ErrorInfo detail when the server sent one; `hint`, when
 * there is one, says what to do. */
export function errorDocument(error: unknown, hint?: string): JsonObject {
  const connectError = ConnectError.from(error);
  const info = connectError.findDetails(ErrorInfoSchema)[0];
  return {
    error: {
      code: codeToString(connectError.code),
      message: connectError.rawMessage,
      reason: info?.reason ?? "",
      metadata: { ...info?.metadata },
      ...(hint ? { hint } : {}),
    },
  };
}

/** An error as the mode wants it: one JSON line, or `actionctl: sentence`. */
export function printError(mode: OutputMode, document: JsonObject, sentence: string): Promise<void> {
  return write(process.stderr, mode === "table" ? `actionctl: ${sentence}\n` : `${JSON.stringify(document)}\n`);
}
