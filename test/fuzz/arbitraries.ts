// Random requests for any method of a service, built from its message
// descriptors: well-typed protobuf (encoded here, byte by byte, so that
// unknown enum numbers, NaN, empty Values and invalid UTF-8 can be sent) and
// proto3 JSON (with raw literals spliced in, for what JSON.stringify cannot
// write). Field names steer the values towards what the server will look at
// (ids of actions that exist, claim tokens it issued), so that random
// requests get past validation often enough to reach the database.
import type { DescField, DescMessage } from "@bufbuild/protobuf";
import { ScalarType } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import fc from "fast-check";
import { EVENT_TYPES } from "../../src/store/rows.js";

const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);

/** What the server already holds, for values that reach past validation. */
export interface Pools {
  maxId: bigint;
  tokens: string[];
  pageTokens: string[];
}

/** A JSON literal written as is: 1e400, -0, 123456789012345678901234567890. */
export class Raw {
  constructor(readonly text: string) {}
  [fc.toStringMethod](): string {
    return `Raw(${JSON.stringify(this.text.length > 60 ? `${this.text.slice(0, 60)}…(${this.text.length})` : this.text)})`;
  }
}

/** A value nested `depth` levels deep, built without recursion. */
export class Nest {
  constructor(
    readonly depth: number,
    readonly shape: "object" | "list",
  ) {}
  [fc.toStringMethod](): string {
    return `Nest(${this.depth}, ${this.shape})`;
  }
}

// ---------------------------------------------------------------- values

const NAMES = ["collect_diagnostics", "redeploy_service", "rerun_healthcheck", "fuzz_type", "payments", "api", ...EVENT_TYPES];
const PRINCIPALS = ["human:fuzz", "agent:fuzz", "script:fuzz", "worker:fuzz", "human:other", "policy:standard"];
const ODD_STRINGS = [
  "",
  " ",
  "\u0000",
  "a\u0000b",
  "\t",
  "\r\n",
  "\u001b[31m",
  "\u007f",
  "\u202eevil",
  "💥",
  "é",
  "\ud800",
  "' OR 1=1 --",
  "%00",
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a hostile string on purpose, not a template.
  "${x}",
  "null",
  "0",
  "-1",
];

const anyString: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: "binary", maxLength: 24 }) },
  { weight: 2, arbitrary: fc.string({ unit: "grapheme-ascii", maxLength: 24 }) },
  { weight: 2, arbitrary: fc.constantFrom(...ODD_STRINGS) },
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 5000 }).map((n) => "x".repeat(n)) },
);

function stringFor(field: DescField, pools: Pools): fc.Arbitrary<string> {
  const name = field.name;
  if (/claim_token$/.test(name)) {
    return fc.oneof(fc.constantFrom(...pools.tokens, "00000000-0000-4000-8000-000000000000"), fc.uuid(), anyString);
  }
  if (/page_token$/.test(name)) return fc.oneof(fc.constantFrom(...pools.pageTokens), fc.base64String({ maxLength: 40 }), anyString);
  if (/^(created_by|worker|actor|approver)$/.test(name))
    return fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...PRINCIPALS) }, { weight: 1, arbitrary: anyString });
  if (/^(action_types?|projects?|rollback_ref|event_types?|value)$/.test(name)) {
    return fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom(...NAMES) },
      { weight: 1, arbitrary: fc.stringMatching(/^[a-z][a-z0-9_.:/-]{0,12}$/) },
      { weight: 1, arbitrary: anyString },
    );
  }
  return anyString;
}

function int64For(field: DescField, pools: Pools): fc.Arbitrary<bigint> {
  const extremes = fc.constantFrom(0n, -1n, INT64_MAX, INT64_MIN, 2n ** 53n + 1n);
  if (/(^|_)id$/.test(field.name)) {
    return fc.oneof(
      { weight: 4, arbitrary: fc.bigInt(1n, pools.maxId + 5n) },
      { weight: 1, arbitrary: extremes },
      { weight: 1, arbitrary: fc.bigInt(INT64_MIN, INT64_MAX) },
    );
  }
  if (field.name === "seconds") {
    const now = BigInt(Math.floor(Date.now() / 1000));
    return fc.oneof(fc.bigInt(-5n, 200_000n), fc.bigInt(now - 40_000_000n, now + 40_000_000n), extremes, fc.bigInt(INT64_MIN, INT64_MAX));
  }
  return fc.oneof(fc.bigInt(-5n, 2000n), extremes, fc.bigInt(INT64_MIN, INT64_MAX));
}

function int32For(field: DescField): fc.Arbitrary<number> {
  if (field.name === "nanos") return fc.oneof(fc.integer({ min: 0, max: 999_999_999 }), fc.constantFrom(-1, 1_000_000_000, 2 ** 31 - 1, -(2 ** 31)));
  return fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: -3, max: 1100 }) },
    { weight: 1, arbitrary: fc.constantFrom(0, -1, 1, 1000, 1001, 2 ** 31 - 1, -(2 ** 31)) },
    { weight: 1, arbitrary: fc.integer() },
  );
}

function scalarFor(field: DescField, type: ScalarType, pools: Pools): fc.Arbitrary<unknown> {
  switch (type) {
    case ScalarType.STRING:
      return stringFor(field, pools);
    case ScalarType.BYTES:
      return fc.uint8Array({ maxLength: 32 });
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.DOUBLE:
      return field.name === "confidence" ? fc.oneof(fc.double({ min: 0, max: 1 }), fc.double()) : fc.double();
    case ScalarType.FLOAT:
      return fc.float();
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return int64For(field, pools);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return fc.oneof(fc.bigInt(0n, 2000n), fc.bigInt(0n, 2n ** 64n - 1n));
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return fc.oneof(fc.integer({ min: 0, max: 1100 }), fc.constantFrom(0, 2 ** 32 - 1));
    default:
      return int32For(field);
  }
}

function enumFor(values: number[]): fc.Arbitrary<number> {
  return fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...values) }, { weight: 1, arbitrary: fc.integer() });
}

/** JSON-like Struct content; with `specials`, also what only protobuf can
 * carry: NaN and infinities, and `undefined` for a Value with no kind. */
function structArb(specials: boolean, maxDepth = 4): fc.Arbitrary<Record<string, unknown>> {
  const leaves: fc.Arbitrary<unknown>[] = [
    fc.constant(null),
    specials ? fc.double() : fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.string({ unit: "binary", maxLength: 12 }),
    fc.boolean(),
  ];
  if (specials) leaves.push(fc.constant(undefined));
  const { object } = fc.letrec((tie) => ({
    value: fc.oneof({ maxDepth, depthIdentifier: "struct" }, ...leaves, fc.array(tie("value"), { maxLength: 3 }), tie("object")),
    object: fc.dictionary(fc.string({ unit: "binary", maxLength: 8 }), tie("value"), { maxKeys: 4, depthIdentifier: "struct" }),
  }));
  return object as fc.Arbitrary<Record<string, unknown>>;
}

// ------------------------------------------------------- typed messages

/** A message as field name -> value; nested messages alike, Structs as
 * JSON-like objects, Timestamp and Duration as ordinary messages. */
export type Typed = Record<string, unknown>;

const STRUCT = "google.protobuf.Struct";

/** Random well-typed messages of `desc` (every field optional). */
export function typedArb(desc: DescMessage, pools: Pools, depth = 3): fc.Arbitrary<Typed> {
  const model: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of desc.fields) {
    const one = (): fc.Arbitrary<unknown> | undefined => {
      switch (field.fieldKind) {
        case "scalar":
          return scalarFor(field, field.scalar, pools);
        case "enum":
          return enumFor(field.enum.values.map((v) => v.number));
        case "message":
          if (field.message.typeName === STRUCT) return structArb(true);
          return depth > 0 ? typedArb(field.message, pools, depth - 1) : undefined;
        case "list": {
          const item =
            field.listKind === "scalar"
              ? scalarFor(field, field.scalar, pools)
              : field.listKind === "enum"
                ? enumFor(field.enum.values.map((v) => v.number))
                : depth > 0
                  ? field.message.typeName === STRUCT
                    ? structArb(true)
                    : typedArb(field.message, pools, depth - 1)
                  : undefined;
          return item && fc.array(item, { maxLength: field.listKind === "message" ? 3 : 5 });
        }
        case "map":
          return fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 2 });
      }
    };
    const arb = one();
    if (arb) model[field.name] = arb;
  }
  return fc.record(model, { requiredKeys: [] });
}

/** A field the descriptor does not know: skipped by a conforming parser. */
export interface UnknownField {
  no: number;
  wire: "varint" | "fixed64" | "bytes" | "fixed32";
  value: bigint | Uint8Array;
}

export const unknownFieldArb: fc.Arbitrary<UnknownField> = fc.oneof(
  fc.record({ no: fc.integer({ min: 50, max: 536_870_911 }), wire: fc.constant("varint" as const), value: fc.bigInt(0n, 2n ** 64n - 1n) }),
  fc.record({ no: fc.integer({ min: 50, max: 536_870_911 }), wire: fc.constant("fixed64" as const), value: fc.bigInt(0n, 2n ** 64n - 1n) }),
  fc.record({ no: fc.integer({ min: 50, max: 536_870_911 }), wire: fc.constant("fixed32" as const), value: fc.bigInt(0n, 2n ** 32n - 1n) }),
  fc.record({ no: fc.integer({ min: 50, max: 536_870_911 }), wire: fc.constant("bytes" as const), value: fc.uint8Array({ maxLength: 64 }) }),
);

function writeScalar(w: BinaryWriter, type: ScalarType, no: number, v: unknown): void {
  switch (type) {
    case ScalarType.DOUBLE:
      w.tag(no, WireType.Bit64).double(v as number);
      break;
    case ScalarType.FLOAT:
      w.tag(no, WireType.Bit32).float(v as number);
      break;
    case ScalarType.INT64:
      w.tag(no, WireType.Varint).int64(v as bigint);
      break;
    case ScalarType.UINT64:
      w.tag(no, WireType.Varint).uint64(v as bigint);
      break;
    case ScalarType.SINT64:
      w.tag(no, WireType.Varint).sint64(v as bigint);
      break;
    case ScalarType.FIXED64:
      w.tag(no, WireType.Bit64).fixed64(v as bigint);
      break;
    case ScalarType.SFIXED64:
      w.tag(no, WireType.Bit64).sfixed64(v as bigint);
      break;
    case ScalarType.FIXED32:
      w.tag(no, WireType.Bit32).fixed32(v as number);
      break;
    case ScalarType.SFIXED32:
      w.tag(no, WireType.Bit32).sfixed32(v as number);
      break;
    case ScalarType.UINT32:
      w.tag(no, WireType.Varint).uint32(v as number);
      break;
    case ScalarType.SINT32:
      w.tag(no, WireType.Varint).sint32(v as number);
      break;
    case ScalarType.BOOL:
      w.tag(no, WireType.Varint).bool(v as boolean);
      break;
    case ScalarType.STRING:
      w.tag(no, WireType.LengthDelimited).string(v as string);
      break;
    case ScalarType.BYTES:
      w.tag(no, WireType.LengthDelimited).bytes(v as Uint8Array);
      break;
    default:
      w.tag(no, WireType.Varint).int32(v as number);
  }
}

/** google.protobuf.Value; `undefined` is a Value with no kind set. */
function encodeValue(v: unknown): Uint8Array {
  const w = new BinaryWriter();
  if (v instanceof Nest) return nestedValue(v);
  if (v === null) w.tag(1, WireType.Varint).int32(0);
  else if (typeof v === "number") w.tag(2, WireType.Bit64).double(v);
  else if (typeof v === "string") w.tag(3, WireType.LengthDelimited).string(v);
  else if (typeof v === "boolean") w.tag(4, WireType.Varint).bool(v);
  else if (Array.isArray(v)) w.tag(6, WireType.LengthDelimited).bytes(encodeList(v));
  else if (v !== undefined) w.tag(5, WireType.LengthDelimited).bytes(encodeStruct(v as Record<string, unknown>));
  return w.finish();
}

function encodeList(values: unknown[]): Uint8Array {
  const w = new BinaryWriter();
  for (const v of values) w.tag(1, WireType.LengthDelimited).bytes(encodeValue(v));
  return w.finish();
}

export function encodeStruct(object: Record<string, unknown>): Uint8Array {
  const w = new BinaryWriter();
  for (const [key, v] of Object.entries(object)) {
    const entry = new BinaryWriter().tag(1, WireType.LengthDelimited).string(key).tag(2, WireType.LengthDelimited).bytes(encodeValue(v)).finish();
    w.tag(1, WireType.LengthDelimited).bytes(entry);
  }
  return w.finish();
}

/** A Value nested `depth` Structs (or ListValues) deep. Every level only
 * adds a prefix (tags and lengths), so the lengths are worked out from the
 * inside out and the bytes written once: linear in the depth. */
function nestedValue(nest: Nest): Uint8Array {
  const leaf = new BinaryWriter().tag(2, WireType.Bit64).double(1).finish();
  const prefixes: Uint8Array[] = [];
  let size = leaf.length;
  for (let i = 0; i < nest.depth; i++) {
    // list: Value{list_value(6): ListValue{values(1): inner}}
    // object: Value{struct_value(5): Struct{fields(1): Entry{key(1): "a", value(2): inner}}}
    const parts = nest.shape === "list" ? [[0x32], [0x0a]] : [[0x2a], [0x0a], [0x0a, 0x01, 0x61, 0x12]];
    const prefix: number[] = [];
    let inner = size;
    const layers: number[][] = [];
    for (let j = parts.length - 1; j >= 0; j--) {
      const layer = [...parts[j]!, ...varint(inner)];
      layers.unshift(layer);
      inner += layer.length;
    }
    for (const layer of layers) prefix.push(...layer);
    prefixes.push(Uint8Array.from(prefix));
    size = inner;
  }
  return Buffer.concat([...prefixes.reverse(), leaf]);
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

function structOf(value: Uint8Array): Uint8Array {
  const entry = new BinaryWriter().tag(1, WireType.LengthDelimited).string("a").tag(2, WireType.LengthDelimited).bytes(value).finish();
  return new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(entry).finish();
}

function encodeNested(desc: DescMessage, v: unknown): Uint8Array {
  if (desc.typeName === STRUCT) return v instanceof Nest ? structOf(nestedValue(v)) : encodeStruct(v as Record<string, unknown>);
  return encodeTyped(desc, v as Typed);
}

/** Protobuf binary of a typed message; repeated fields unpacked (parsers
 * accept both), unknown fields last. */
export function encodeTyped(desc: DescMessage, value: Typed, unknown: UnknownField[] = []): Uint8Array {
  const w = new BinaryWriter();
  for (const field of desc.fields) {
    const v = value[field.name];
    if (v === undefined) continue;
    if (v instanceof Uint8Array && field.fieldKind !== "scalar") {
      // Raw bytes where a message goes: whatever they are.
      w.tag(field.number, WireType.LengthDelimited).bytes(v);
      continue;
    }
    switch (field.fieldKind) {
      case "scalar":
        if (v instanceof BadUtf8) w.tag(field.number, WireType.LengthDelimited).bytes(v.bytes);
        else writeScalar(w, field.scalar, field.number, v);
        break;
      case "enum":
        w.tag(field.number, WireType.Varint).int32(v as number);
        break;
      case "message":
        w.tag(field.number, WireType.LengthDelimited).bytes(encodeNested(field.message, v));
        break;
      case "list":
        for (const item of v as unknown[]) {
          if (item instanceof BadUtf8) w.tag(field.number, WireType.LengthDelimited).bytes(item.bytes);
          else if (field.listKind === "scalar") writeScalar(w, field.scalar, field.number, item);
          else if (field.listKind === "enum") w.tag(field.number, WireType.Varint).int32(item as number);
          else w.tag(field.number, WireType.LengthDelimited).bytes(encodeNested(field.message, item));
        }
        break;
      case "map":
        for (const [key, item] of Object.entries(v as Record<string, unknown>)) {
          const entry = new BinaryWriter().tag(1, WireType.LengthDelimited).string(key).tag(2, WireType.LengthDelimited).string(String(item)).finish();
          w.tag(field.number, WireType.LengthDelimited).bytes(entry);
        }
        break;
    }
  }
  for (const field of unknown) {
    if (field.wire === "varint") w.tag(field.no, WireType.Varint).uint64(field.value as bigint);
    else if (field.wire === "fixed64") w.tag(field.no, WireType.Bit64).fixed64(field.value as bigint);
    else if (field.wire === "fixed32") w.tag(field.no, WireType.Bit32).fixed32(Number(field.value));
    else w.tag(field.no, WireType.LengthDelimited).bytes(field.value as Uint8Array);
  }
  return w.finish();
}

/** Bytes for a string field that are not UTF-8. */
class BadUtf8 {
  constructor(readonly bytes: Uint8Array) {}
  [fc.toStringMethod](): string {
    return `BadUtf8(${Buffer.from(this.bytes).toString("hex")})`;
  }
}

export const badUtf8Arb: fc.Arbitrary<BadUtf8> = fc
  .tuple(
    fc.string({ unit: "grapheme-ascii", maxLength: 6 }),
    fc.constantFrom([0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf8, 0x88, 0x80, 0x80, 0x80], [0x80], [0xf4, 0x90, 0x80, 0x80]),
    fc.string({ unit: "grapheme-ascii", maxLength: 6 }),
  )
  .map(([before, bad, after]) => new BadUtf8(new Uint8Array([...Buffer.from(before), ...bad, ...Buffer.from(after)])));

// --------------------------------------------------------- proto3 JSON

function isInt64(type: ScalarType): boolean {
  return [ScalarType.INT64, ScalarType.UINT64, ScalarType.SINT64, ScalarType.FIXED64, ScalarType.SFIXED64].includes(type);
}

function jsonScalarFor(field: DescField, type: ScalarType, pools: Pools): fc.Arbitrary<unknown> {
  if (isInt64(type)) return scalarFor(field, type, pools).map((v) => String(v));
  if (type === ScalarType.BYTES) return fc.base64String({ maxLength: 40 });
  if (type === ScalarType.DOUBLE || type === ScalarType.FLOAT) {
    return fc.oneof(
      { weight: 4, arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true }) },
      { weight: 1, arbitrary: fc.constantFrom("NaN", "Infinity", "-Infinity") },
    );
  }
  return scalarFor(field, type, pools);
}

function jsonEnumFor(values: { name: string; number: number }[]): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...values.map((v) => v.name)) },
    { weight: 1, arbitrary: fc.constantFrom(...values.map((v) => v.number)) },
  );
}

function jsonMessageFor(desc: DescMessage, pools: Pools, depth: number): fc.Arbitrary<unknown> | undefined {
  switch (desc.typeName) {
    case STRUCT:
      return structArb(false);
    case "google.protobuf.Timestamp":
      return fc
        .oneof(
          fc.date({ min: new Date(Date.now() - 86_400_000), max: new Date(Date.now() + 400 * 86_400_000), noInvalidDate: true }),
          fc.date({ min: new Date("0001-01-01T00:00:00Z"), max: new Date("9999-12-31T23:59:59Z"), noInvalidDate: true }),
        )
        .map((d) => d.toISOString());
    case "google.protobuf.Duration":
      return fc.oneof(
        fc.integer({ min: -5, max: 200_000 }).map((n) => `${n}s`),
        fc.double({ min: 0, max: 100_000, noNaN: true }).map((x) => `${x.toFixed(3)}s`),
      );
  }
  return depth > 0 ? jsonArb(desc, pools, depth - 1) : undefined;
}

/** Random proto3 JSON objects of `desc`: lowerCamel names, int64 as
 * strings, enum names, RFC 3339 timestamps, "1.5s" durations. */
export function jsonArb(desc: DescMessage, pools: Pools, depth = 3): fc.Arbitrary<Record<string, unknown>> {
  const model: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of desc.fields) {
    let arb: fc.Arbitrary<unknown> | undefined;
    switch (field.fieldKind) {
      case "scalar":
        arb = jsonScalarFor(field, field.scalar, pools);
        break;
      case "enum":
        arb = jsonEnumFor(field.enum.values);
        break;
      case "message":
        arb = jsonMessageFor(field.message, pools, depth);
        break;
      case "list": {
        const item =
          field.listKind === "scalar"
            ? jsonScalarFor(field, field.scalar, pools)
            : field.listKind === "enum"
              ? jsonEnumFor(field.enum.values)
              : jsonMessageFor(field.message, pools, depth);
        arb = item && fc.array(item, { maxLength: field.listKind === "message" ? 3 : 5 });
        break;
      }
      case "map":
        arb = fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 2 });
        break;
    }
    if (arb) model[field.jsonName] = arb;
  }
  return fc.record(model, { requiredKeys: [] });
}

/** JSON text; Raw literals spliced in, Nest built iteratively. */
export function jsonText(v: unknown): string {
  if (v instanceof Raw) return v.text;
  if (v instanceof Nest) {
    const [open, close] = v.shape === "list" ? ["[", "]"] : ['{"a":', "}"];
    return `${open.repeat(v.depth)}1${close.repeat(v.depth)}`;
  }
  if (Array.isArray(v)) return `[${v.map(jsonText).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const entries = Object.entries(v).filter(([, x]) => x !== undefined);
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${jsonText(x)}`).join(",")}}`;
  }
  return JSON.stringify(v) ?? "null";
}

// ---------------------------------------------------------- field paths

/** A field reachable from a message through singular message fields. */
export interface FieldPath {
  fields: DescField[];
  leaf: DescField;
}

/** Fields reachable from `desc` (through message fields, repeated ones by
 * their first item, up to `depth` levels) that satisfy `want`. */
export function fieldPaths(desc: DescMessage, want: (field: DescField) => boolean, depth = 2, prefix: DescField[] = []): FieldPath[] {
  const out: FieldPath[] = [];
  for (const field of desc.fields) {
    if (want(field)) out.push({ fields: [...prefix, field], leaf: field });
    const nested = field.fieldKind === "message" || (field.fieldKind === "list" && field.listKind === "message") ? field.message : undefined;
    if (nested && nested.typeName !== STRUCT && depth > 0) out.push(...fieldPaths(nested, want, depth - 1, [...prefix, field]));
  }
  return out;
}

/** Sets `value` at a path of an object, by JSON or proto field names. */
export function setPath(object: Record<string, unknown>, path: FieldPath, value: unknown, key: "jsonName" | "name"): Record<string, unknown> {
  const root = { ...object };
  let node = root;
  path.fields.forEach((field, index) => {
    const name = field[key];
    if (index === path.fields.length - 1) {
      node[name] = value;
      return;
    }
    const plain = (v: unknown) =>
      v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Uint8Array) ? { ...(v as Record<string, unknown>) } : {};
    const next = node[name];
    if (field.fieldKind === "list") {
      // Into the first item of a repeated message field.
      const items = Array.isArray(next) ? next : [];
      const first = plain(items[0]);
      node[name] = [first, ...items.slice(1)];
      node = first;
    } else {
      const copy = plain(next);
      node[name] = copy;
      node = copy;
    }
  });
  return root;
}

export function isStruct(field: DescField): boolean {
  return field.fieldKind === "message" && field.message.typeName === STRUCT;
}

export function isStringField(field: DescField): boolean {
  return (field.fieldKind === "scalar" || (field.fieldKind === "list" && field.listKind === "scalar")) && field.scalar === ScalarType.STRING;
}

export function isIntegerField(field: DescField): boolean {
  const type = field.fieldKind === "scalar" || (field.fieldKind === "list" && field.listKind === "scalar") ? field.scalar : undefined;
  return type !== undefined && ![ScalarType.STRING, ScalarType.BYTES, ScalarType.BOOL, ScalarType.DOUBLE, ScalarType.FLOAT].includes(type);
}

export function isTimeField(field: DescField): boolean {
  return field.fieldKind === "message" && ["google.protobuf.Timestamp", "google.protobuf.Duration"].includes(field.message.typeName);
}

export function isEnumField(field: DescField): boolean {
  return field.fieldKind === "enum" || (field.fieldKind === "list" && field.listKind === "enum");
}
