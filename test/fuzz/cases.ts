// The kinds of input the fuzz suite sends, one generator per group: each
// takes an RPC's descriptor (and what the server holds, for values that
// reach past validation) and gives a fast-check arbitrary of cases.
import type { DescMethod } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { ActionQueueService } from "../../gen/actionq/v1/action_queue_service_pb.js";
import {
  type FieldPath,
  Nest,
  type Pools,
  Raw,
  type Typed,
  type UnknownField,
  badUtf8Arb,
  encodeStruct,
  encodeTyped,
  fieldPaths,
  isEnumField,
  isIntegerField,
  isStringField,
  isStruct,
  isTimeField,
  jsonArb,
  jsonText,
  setPath,
  typedArb,
  unknownFieldArb,
} from "./arbitraries.js";
import { envelope } from "./clients.js";

/** Every RPC, from the descriptor: a new RPC is fuzzed as it lands. */
export const SERVICE = ActionQueueService.typeName;
export const METHODS: DescMethod[] = ActionQueueService.methods;
export const pathOf = (m: DescMethod) => `/${SERVICE}/${m.name}`;
export const isStreaming = (m: DescMethod) => m.methodKind === "server_streaming";
export const hasNoSideEffects = (m: DescMethod) => m.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS;
/** A cheap unary call that needs nothing: to check a connection still serves. */
export const PROBE = METHODS.find((m) => m.name === "GetQueueStats") ?? METHODS[0]!;

// ------------------------------------------------------- Connect JSON

export interface ConnectCase {
  body: string | Uint8Array;
  /** null: no content-type header at all. */
  contentType?: string | null;
  path?: string;
  method?: string;
  headers?: Record<string, string>;
  /** Streaming methods: the body is sent as is, not in an envelope. */
  raw?: boolean;
}

const junkJson: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.string({ unit: "binary", maxLength: 16 }),
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
  fc.constantFrom(new Raw("1e400"), new Raw("-0"), new Raw("1E-400"), new Raw("[]"), new Raw("{}")),
);

/** Sets a field of `paths` picked by index, or an unknown field when none. */
function place(object: Record<string, unknown>, paths: FieldPath[], index: number, value: unknown, key: "jsonName" | "name" = "jsonName") {
  if (paths.length === 0) return { ...object, fuzzUnknownField: value };
  return setPath(object, paths[index % paths.length]!, value, key);
}

/** The value, or a one-item list of it when the field is repeated. */
function asField(path: FieldPath | undefined, value: unknown): unknown {
  return path?.leaf.fieldKind === "list" ? [value] : value;
}

export function wellTypedJson(m: DescMethod, pools: Pools): fc.Arbitrary<ConnectCase> {
  return jsonArb(m.input, pools).map((object) => ({ body: jsonText(object) }));
}

/** Fields given values of the wrong JSON type (by either name), and
 * fields the message does not have. */
export function wrongTypes(m: DescMethod, pools: Pools): fc.Arbitrary<ConnectCase> {
  const paths = fieldPaths(m.input, () => true);
  const known = new Set(m.input.fields.flatMap((f) => [f.name, f.jsonName]));
  return fc
    .tuple(
      jsonArb(m.input, pools),
      fc.array(fc.tuple(fc.nat(), junkJson, fc.boolean()), { maxLength: 3 }),
      fc.array(fc.tuple(fc.string({ unit: "binary", maxLength: 12 }), junkJson), { maxLength: 2 }),
    )
    .map(([base, changes, unknown]) => {
      let object = base;
      for (const [index, value, snake] of changes) object = place(object, paths, index, value, snake ? "name" : "jsonName");
      for (const [key, value] of unknown) if (!known.has(key)) object = { ...object, [key]: value };
      return { body: jsonText(object) };
    });
}

const badEnum = fc.oneof(
  fc.string({ unit: "binary", maxLength: 20 }),
  fc.constantFrom(
    "",
    "UNSPECIFIED",
    "risk_level_safe",
    "RISK_LEVEL_DANGEROUSS",
    " RISK_LEVEL_SAFE",
    "ACTION_STATUS_PENDING ",
    "PAUSE_KIND_ALL\u0000",
    "1",
    "0x1",
  ),
  fc.integer(),
  fc.constantFrom(1.5, -1, 2 ** 31, 2 ** 53, 1e300, -(2 ** 31) - 1),
  fc.constantFrom(new Raw("1e400"), new Raw("-0"), new Raw("1.0"), true, null, [], {}),
);

export function badEnums(m: DescMethod, pools: Pools): fc.Arbitrary<ConnectCase> {
  const paths = fieldPaths(m.input, isEnumField);
  return fc.tuple(jsonArb(m.input, pools), fc.nat(), badEnum, fc.boolean()).map(([base, index, value, list]) => {
    const path = paths[index % Math.max(1, paths.length)];
    return { body: jsonText(place(base, paths, index, list ? asField(path, value) : value)) };
  });
}

const badNumber = fc.oneof(
  fc.constantFrom("abc", "1.5", "1e3", "0x10", " 1", "1 ", "+1", "", "-", "--1", "NaN", "Infinity", "1n", "٣", "1_000"),
  fc.constantFrom("9223372036854775808", "-9223372036854775809", "18446744073709551616", `1${"0".repeat(400)}`, "4294967296", "2147483648"),
  fc.constantFrom(
    new Raw("1e400"),
    new Raw("123456789012345678901234567890"),
    new Raw("-0"),
    new Raw("1.0"),
    new Raw("1.5"),
    new Raw("9007199254740993"),
    new Raw("1e19"),
    new Raw("-1e19"),
  ),
  // Durations and timestamps.
  fc.constantFrom("1e99s", "-1s", "1.0000000001s", "s", "1", "315576000001s", "-315576000001s", "1h", "P1D", "0.5ms"),
  fc.constantFrom(
    "2020-13-45T00:00:00Z",
    "10000-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "2020-01-01T00:00:00+25:00",
    "2020-01-01",
    "2020-01-01T00:00:60Z",
    "1970-01-01T00:00:00.1234567891Z",
  ),
  fc.double().map((x) => (Number.isNaN(x) ? new Raw("NaN") : x)),
  fc.bigInt(-(2n ** 70n), 2n ** 70n).map(String),
);

/** Integers (int64 above all), timestamps and durations as garbage
 * strings, floats and numbers out of range. */
export function badNumbers(m: DescMethod, pools: Pools): fc.Arbitrary<ConnectCase> {
  const paths = fieldPaths(m.input, (f) => isIntegerField(f) || isTimeField(f));
  return fc.tuple(jsonArb(m.input, pools), fc.nat(), badNumber).map(([base, index, value]) => {
    const path = paths[index % Math.max(1, paths.length)];
    return { body: jsonText(place(base, paths, index, asField(path, value))) };
  });
}

const hugeArb = fc.oneof(
  fc.record({
    kind: fc.constant("string" as const),
    index: fc.nat(),
    length: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 4097, max: 300_000 }) }, { weight: 1, arbitrary: fc.constant(4_500_000) }),
    char: fc.constantFrom("x", "é", "💥", "\u0000"),
  }),
  fc.record({
    kind: fc.constant("deep" as const),
    index: fc.nat(),
    depth: fc.integer({ min: 10, max: 5000 }),
    shape: fc.constantFrom("object" as const, "list" as const),
  }),
  fc.record({ kind: fc.constant("payload" as const), index: fc.nat(), bytes: fc.integer({ min: 65_537, max: 200_000 }), keys: fc.boolean() }),
  fc.record({ kind: fc.constant("list" as const), index: fc.nat(), count: fc.integer({ min: 1001, max: 3000 }) }),
);

/** Huge strings, payloads over 64 KiB or nested 10 to 5000 deep, lists
 * longer than any limit. */
export function huge(m: DescMethod, pools: Pools): fc.Arbitrary<ConnectCase> {
  const strings = fieldPaths(m.input, isStringField);
  const structs = fieldPaths(m.input, isStruct);
  const lists = fieldPaths(m.input, (f) => f.fieldKind === "list");
  return fc.tuple(jsonArb(m.input, pools), hugeArb).map(([base, h]) => {
    switch (h.kind) {
      case "string":
        return { body: jsonText(place(base, strings, h.index, asField(strings[h.index % Math.max(1, strings.length)], h.char.repeat(h.length)))) };
      case "deep":
        return { body: jsonText(place(base, structs, h.index, h.shape === "list" ? { a: new Nest(h.depth, "list") } : new Nest(h.depth, "object"))) };
      case "payload": {
        const value = h.keys
          ? Object.fromEntries(Array.from({ length: Math.ceil(h.bytes / 16) }, (_, i) => [`k${i}`, "v".repeat(8)]))
          : { blob: "b".repeat(h.bytes) };
        return { body: jsonText(place(base, structs, h.index, value)) };
      }
      case "list": {
        const leaf = lists[h.index % Math.max(1, lists.length)]?.leaf;
        const item = leaf?.fieldKind === "list" && leaf.listKind === "message" ? {} : leaf && isStringField(leaf) ? "a" : 1;
        return {
          body: jsonText(
            place(
              base,
              lists,
              h.index,
              Array.from({ length: h.count }, () => item),
            ),
          ),
        };
      }
    }
    throw new Error(`unknown kind of huge case: ${JSON.stringify(h)}`);
  });
}

/** Bodies that are not one JSON object of the request. */
export function notAnObject(m: DescMethod, pools: Pools): fc.Arbitrary<ConnectCase> {
  const json = jsonArb(m.input, pools);
  const first = m.input.fields[0];
  return fc
    .oneof(
      fc.constantFrom(
        ...["", "{", "}", "{}}", "[]", "null", "1", '"x"', "true", "{'a':1}", '{"a":}', "{,}", '{"id":1,}', "\u0000", "{}\u0000", "\ufeff{}", "{}garbage"],
        ...['{"a":"\\ud800"}', '{"a" 1}', "NaN", "[".repeat(10_000), `${"[".repeat(50_000)}${"]".repeat(50_000)}`, " ".repeat(100_000)],
      ),
      fc.uint8Array({ maxLength: 200 }),
      fc.string({ unit: "binary", maxLength: 200 }),
      // Characters outside the BMP where the parser stops: its error
      // message quotes half a surrogate pair.
      fc.constantFrom("💥", "{💥", '{"a":💥}', "𝕏{}", '["💥"'),
      fc
        .jsonValue({ maxDepth: 3 })
        .filter((v) => v === null || typeof v !== "object" || Array.isArray(v))
        .map((v) => JSON.stringify(v)),
      fc.tuple(json, fc.nat()).map(([object, cut]) => {
        const text = jsonText(object);
        return text.slice(0, cut % Math.max(1, text.length));
      }),
      json.map((object) => Buffer.from(jsonText(object), "utf16le")),
      badUtf8Arb.map((bad) => Buffer.concat([Buffer.from('{"reason":"'), bad.bytes, Buffer.from('"}')])),
      // One field twice, once by each of its names.
      fc
        .tuple(json, json)
        .map(([a, b]) =>
          first
            ? `{${JSON.stringify(first.jsonName)}:${jsonText(a[first.jsonName] ?? 1)},${JSON.stringify(first.name)}:${jsonText(b[first.jsonName] ?? "x")}}`
            : "{}",
        ),
    )
    .map((body) => ({ body }));
}

const ENVELOPE_DAMAGE = [
  "truncated_prefix",
  "length_larger",
  "two_messages",
  "end_stream_flag",
  "flags_0x80",
  "empty_envelope",
  "trailing_garbage",
  "no_envelope",
] as const;

/** Connect streaming envelopes, garbled (and sent to unary RPCs too). */
export function garbledEnvelopes(m: DescMethod, pools: Pools): fc.Arbitrary<ConnectCase> {
  const contentType = "application/connect+json";
  return fc
    .tuple(
      jsonArb(m.input, pools).map((object) => Buffer.from(jsonText(object))),
      fc.constantFrom(...ENVELOPE_DAMAGE),
      fc.integer({ min: 1, max: 4 }),
    )
    .map(([json, how, n]): ConnectCase => {
      const whole = envelope(0, json);
      const body = {
        truncated_prefix: () => whole.subarray(0, n),
        length_larger: () => envelope(0, json, json.length + n * 1000),
        two_messages: () => Buffer.concat([whole, whole]),
        end_stream_flag: () => envelope(0x02, json),
        flags_0x80: () => envelope(0x80, json),
        empty_envelope: () => envelope(0, new Uint8Array()),
        trailing_garbage: () => Buffer.concat([whole, Buffer.from([1, 2, 3].slice(0, n))]),
        no_envelope: () => json,
      }[how]();
      return { body, contentType, raw: true };
    });
}

const WRONG_CONTENT_TYPES = [
  null,
  "",
  "text/plain",
  "application/xml",
  "application/JSON",
  "application/json; charset=latin1",
  "application/json; charset=utf-16",
  "application/grpc-web+json",
  "application/grpc-web-text",
  "multipart/form-data; boundary=x",
  "application/x-www-form-urlencoded",
  "application/json, text/plain",
  "*/*",
];

/** Wrong content types, paths and HTTP methods; odd protocol headers. */
export function protocolMisuse(m: DescMethod, pools: Pools): fc.Arbitrary<ConnectCase> {
  const base = pathOf(m);
  const json = jsonArb(m.input, pools).map((object) => jsonText(object));
  return fc.oneof(
    fc.record({ body: json, contentType: fc.constantFrom(...WRONG_CONTENT_TYPES, isStreaming(m) ? "application/json" : "application/connect+json") }),
    fc.record({
      body: json,
      path: fc.constantFrom(
        `${base}x`,
        base.toLowerCase(),
        `/${SERVICE}/`,
        `/${SERVICE}`,
        `/${m.name}`,
        `${base}/extra`,
        `${base}?x=1`,
        `/${base}`,
        `${base}%00`,
        base.replace(".v1.", ".v2."),
      ),
    }),
    fc.record({ body: json, method: fc.constantFrom("PUT", "DELETE", "PATCH", "OPTIONS") }),
    // GET of a method with side effects, or a well-formed one of a method without.
    json.map(
      (text): ConnectCase => ({ body: "", method: "GET", contentType: null, path: `${base}?connect=v1&encoding=json&message=${encodeURIComponent(text)}` }),
    ),
    fc.record({
      body: json,
      headers: fc.oneof(
        fc.constantFrom("abc", "-1", "0", "99999999999999", "1.5", "").map((v) => ({ "connect-timeout-ms": v })),
        fc.constantFrom("0", "2", "abc", "").map((v) => ({ "connect-protocol-version": v })),
        fc.constantFrom("gzip", "br", "identity", "x").map((v) => ({ "connect-accept-encoding": v, "accept-encoding": v })),
      ),
    }),
  );
}

const garbageQueryValue = fc.oneof(
  fc.constantFrom("!", "!!!", "%%%", "====", "a", "ab=c", "////", "-_-_", "%ZZ", "e30=", "e30===", "e 30", "%FF%FE"),
  fc.string({ maxLength: 20 }).map(encodeURIComponent),
);

/** Connect GET requests (side-effect-free RPCs): good ones, and query
 * strings with invalid base64, unknown encodings, missing parts. */
export function getRequests(m: DescMethod, pools: Pools): fc.Arbitrary<ConnectCase> {
  const base = pathOf(m);
  const json = jsonArb(m.input, pools).map((object) => jsonText(object));
  return fc
    .oneof(
      json.map((text) => `${base}?connect=v1&encoding=json&message=${encodeURIComponent(text)}`),
      json.map((text) => `${base}?connect=v1&encoding=json&base64=1&message=${Buffer.from(text).toString("base64url")}`),
      garbageQueryValue.map((text) => `${base}?connect=v1&encoding=json&base64=1&message=${text}`),
      garbageQueryValue.map((text) => `${base}?connect=v1&encoding=json&message=${text}`),
      fc.constantFrom(
        `${base}`,
        `${base}?encoding=json`,
        `${base}?message=%7B%7D`,
        `${base}?encoding=xml&message=x`,
        `${base}?connect=v2&encoding=json&message=%7B%7D`,
      ),
      fc.constantFrom(
        `${base}?encoding=json&compression=gzip&message=%7B%7D`,
        `${base}?encoding=json&compression=br&message=%7B%7D`,
        `${base}?encoding=json&message=%ZZ`,
      ),
    )
    .map((path): ConnectCase => ({ body: "", method: "GET", contentType: null, path }));
}

// ------------------------------------------------------- gRPC binary

/** A random well-typed request: its fields, unknown fields, and sometimes
 * a second message after it (which protobuf merges into the first). */
export interface BinaryCase {
  typed: Typed;
  unknown: UnknownField[];
  second: Typed | null;
}

export function binaryCase(m: DescMethod, pools: Pools): fc.Arbitrary<BinaryCase> {
  return fc.record({
    typed: typedArb(m.input, pools),
    unknown: fc.array(unknownFieldArb, { maxLength: 2 }),
    second: fc.option(typedArb(m.input, pools), { freq: 5 }),
  });
}

export function encodeCase(m: DescMethod, c: BinaryCase): Uint8Array {
  const bytes = encodeTyped(m.input, c.typed, c.unknown);
  return c.second ? Buffer.concat([bytes, encodeTyped(m.input, c.second)]) : bytes;
}

/** A Struct nested 10 to 5000 deep in a payload (or, without a Struct
 * field, in an unknown field, which the server skips). */
export function deepStruct(m: DescMethod, pools: Pools): fc.Arbitrary<BinaryCase> {
  const structs = fieldPaths(m.input, isStruct);
  return fc
    .tuple(typedArb(m.input, pools), fc.nat(), fc.integer({ min: 10, max: 5000 }), fc.constantFrom("object" as const, "list" as const))
    .map(([typed, index, depth, shape]): BinaryCase => {
      const nest = shape === "object" ? new Nest(depth, "object") : { a: new Nest(depth, "list") };
      if (structs.length === 0) return { typed, unknown: [{ no: 999, wire: "bytes", value: encodeStruct({ a: nest }) }], second: null };
      return { typed: setPath(typed, structs[index % structs.length]!, nest, "name"), unknown: [], second: null };
    });
}

/** A string field whose bytes are not UTF-8. */
export function badUtf8(m: DescMethod, pools: Pools): fc.Arbitrary<BinaryCase> {
  const strings = fieldPaths(m.input, isStringField);
  return fc.tuple(typedArb(m.input, pools), fc.nat(), badUtf8Arb).map(([typed, index, bad]): BinaryCase => {
    if (strings.length === 0) return { typed, unknown: [{ no: 999, wire: "bytes", value: bad.bytes }], second: null };
    const path = strings[index % strings.length]!;
    return { typed: setPath(typed, path, asField(path, bad), "name"), unknown: [], second: null };
  });
}

// ------------------------------------------------- raw HTTP/2 frames

export const FRAMINGS = ["truncated_prefix", "length_larger", "several_messages", "no_message", "byte_by_byte", "flag_bits", "trailing_garbage"] as const;

/** One message, length-prefixed wrongly in one of a few ways. */
export function framed(msg: Uint8Array, how: (typeof FRAMINGS)[number], n: number, big: number): Uint8Array[] {
  const whole = envelope(0, msg);
  switch (how) {
    case "truncated_prefix":
      return [whole.subarray(0, n)];
    case "length_larger":
      return [envelope(0, msg, Math.min(2 ** 32 - 1, msg.length + big))];
    case "several_messages":
      return Array.from({ length: n + 1 }, () => whole);
    case "no_message":
      return [];
    case "byte_by_byte":
      return [...whole].map((byte) => Uint8Array.of(byte));
    case "flag_bits":
      return [envelope([0x02, 0x04, 0x80, 0xfe][n - 1]!, msg)];
    case "trailing_garbage":
      return [whole, Uint8Array.of(0, 0, 0).subarray(0, n)];
  }
}

/** Bytes a protobuf parser must refuse: random bytes, cut messages, bad
 * tags and wire types, overlong varints and lengths. */
export function notProtobuf(m: DescMethod, pools: Pools): fc.Arbitrary<Uint8Array> {
  const field = m.input.fields[0];
  const no = field?.number ?? 1;
  const tag = (wire: number) => Uint8Array.of((((no << 3) | wire) & 0x7f) | (no > 15 ? 0x80 : 0), ...(no > 15 ? [no >> 4] : []));
  const expected = field?.fieldKind === "scalar" && field.scalar !== 9 && field.scalar !== 12 ? 0 : 2;
  return fc.oneof(
    fc.uint8Array({ minLength: 1, maxLength: 200 }),
    fc.tuple(binaryCase(m, pools), fc.nat()).map(([c, cut]) => {
      const bytes = encodeCase(m, c);
      return bytes.length > 1 ? bytes.subarray(0, 1 + (cut % (bytes.length - 1))) : Uint8Array.of(0x0a);
    }),
    fc.constantFrom(
      Uint8Array.of(0x00, 0x01),
      Uint8Array.of(0x0b),
      Uint8Array.of(0x0c),
      Uint8Array.of(0x0e, 0x01),
      Uint8Array.of(0x08, ...Array<number>(11).fill(0xff)),
      Uint8Array.of(0x0a, 0x7f, 0x01),
      Uint8Array.of(0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f),
    ),
    // The first field with a wire type other than its own.
    fc.constantFrom(0, 1, 2, 5).map((wire) => {
      if (wire === expected) return Uint8Array.of(...tag(wire), 0x05, 0x01);
      const value = wire === 0 ? [0x01] : wire === 1 ? Array<number>(8).fill(1) : wire === 5 ? Array<number>(4).fill(1) : [0x03, 0xff, 0xfe, 0xfd];
      return Uint8Array.of(...tag(wire), ...value);
    }),
  );
}

/** A request that opens a server stream and claims nothing. */
export function openingRequest(m: DescMethod): Uint8Array {
  const fields = new Set(m.input.fields.map((f) => f.name));
  // after_id far ahead: the stream opens without replaying the log.
  const request = Object.entries({ worker: "worker:fuzz-stream", action_types: ["fuzz_no_such_type"], after_id: 2n ** 40n }).filter(([name]) =>
    fields.has(name),
  );
  return envelope(0, encodeTyped(m.input, Object.fromEntries(request)));
}

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

const randomFrame = fc
  .tuple(
    fc.integer({ min: 0, max: 2 ** 24 - 1 }),
    fc.boolean(),
    fc.integer({ min: 0, max: 12 }),
    fc.integer({ min: 0, max: 255 }),
    fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    fc.uint8Array({ maxLength: 40 }),
  )
  .map(([length, honest, type, flags, stream, payload]) => {
    const head = Buffer.alloc(9);
    // The declared length: the payload's, or anything.
    head.writeUIntBE(honest ? payload.length : length, 0, 3);
    head[3] = type;
    head[4] = flags;
    head.writeUInt32BE(stream, 5);
    return Buffer.concat([head, payload]);
  });

/** What a broken HTTP/2 (or HTTP/1.1) client might write on a connection. */
export const connectionGarbage: fc.Arbitrary<Buffer> = fc.oneof(
  fc.array(randomFrame, { minLength: 1, maxLength: 5 }).map((frames) => Buffer.concat([PREFACE, ...frames])),
  fc.uint8Array({ minLength: 1, maxLength: 100 }).map((bytes) => Buffer.concat([PREFACE.subarray(0, bytes[0]! % PREFACE.length), bytes])),
  fc.constantFrom(Buffer.from("GET / HTTP/1.1\r\n\r\n"), Buffer.from("POST / HTTP/9.9\r\nContent-Length: -1\r\n\r\n"), Buffer.from("\r\n\r\n\r\n")),
);

// ------------------------------------------ authorization headers

/** Header values node's clients will send: tab, printable ASCII and
 * bytes 0x80-0xff (as latin1). */
function headerSafe(bytes: Uint8Array): string {
  return Buffer.from([...bytes].filter((b) => b === 9 || (b >= 0x20 && b !== 0x7f))).toString("latin1");
}

export const garbageAuthorization: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    "",
    "Bearer",
    "Bearer ",
    "bearer x",
    "Basic Zm9vOmJhcg==",
    "Bearer Bearer x",
    "Token x",
    "Bearer \t x",
    "Bearer =",
    "Bearer ../../etc/passwd",
  ),
  fc.uint8Array({ minLength: 1, maxLength: 64 }).map((bytes) => `Bearer ${headerSafe(bytes)}`),
  fc.string({ unit: "binary", maxLength: 30 }).map((s) => `Bearer ${headerSafe(Buffer.from(s, "utf8"))}`),
  fc.integer({ min: 1000, max: 12_000 }).map((n) => `Bearer ${"A".repeat(n)}`),
);

/** A Connect request over HTTP/1.1, byte for byte, whose authorization
 * header carries bytes no client library sends (control characters). */
export function authorizationWithControlBytes(m: DescMethod, control: Uint8Array): Buffer {
  const body = isStreaming(m) ? envelope(0, Buffer.from("{}")) : Buffer.from("{}");
  const head =
    `POST ${pathOf(m)} HTTP/1.1\r\nHost: fuzz\r\nContent-Type: ${isStreaming(m) ? "application/connect+json" : "application/json"}\r\n` +
    `Content-Length: ${body.length}\r\nConnection: close\r\nAuthorization: Bearer `;
  return Buffer.concat([Buffer.from(head, "latin1"), control, Buffer.from("\r\n\r\n"), body]);
}
