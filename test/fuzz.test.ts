// Fuzzing every RPC of actionq.v1.ActionQueueService over the wire: random
// and malformed requests through Connect JSON (HTTP/1.1 and HTTP/2), gRPC
// binary (grpc-js) and raw HTTP/2 frames. Whatever comes in, the server
// answers with a proper status: never INTERNAL or UNKNOWN, never a crash,
// never a call left hanging. Afterwards it still serves and its database
// still holds every invariant.
//
// The RPCs come from the service descriptor, so a new RPC is fuzzed without
// touching this file. Inputs are fixed by a seed: ACTIONQ_FUZZ_SEED changes
// it, ACTIONQ_FUZZ_RUNS sets the runs per RPC and group,
// ACTIONQ_FUZZ_VERBOSE=1 prints what each group was answered with. To fuzz a server
// with auth on: ACTIONQ_FUZZ_SERVER_ENV='{"ACTIONQ_AUTH_FILE":"..."}' and
// ACTIONQ_FUZZ_HEADERS='{"authorization":"Bearer ..."}' (sent on every call).
import type http2 from "node:http2";
import { gzipSync } from "node:zlib";
import { fromBinary } from "@bufbuild/protobuf";
import type { DescMethod } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ActionQueueService } from "../gen/actionq/v1/action_queue_service_pb.js";
import { HealthCheckResponse_ServingStatus, HealthCheckResponseSchema } from "../gen/grpc/health/v1/health_pb.js";
import { type TestServer, startTestServer } from "./harness.js";
import { type ListActionsResponse, STATUS, type WireClaim, toStruct } from "./helpers-wire.js";
import {
  type FieldPath,
  type Typed,
  type UnknownField,
  Nest,
  type Pools,
  Raw,
  auditDatabase,
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
} from "./fuzz-helpers.js";
import { FuzzClients, type HttpCall, type Outcome, PROPER, Tally, envelope } from "./fuzz-wire.js";

function envJson(name: string): Record<string, string> {
  const text = process.env[name];
  return text ? (JSON.parse(text) as Record<string, string>) : {};
}

const SEED = Number(process.env.ACTIONQ_FUZZ_SEED ?? 20260611);
const RUNS = Number(process.env.ACTIONQ_FUZZ_RUNS ?? 10);
const SERVER_ENV = envJson("ACTIONQ_FUZZ_SERVER_ENV");
const HEADERS = envJson("ACTIONQ_FUZZ_HEADERS");

const SERVICE = ActionQueueService.typeName;
const METHODS: DescMethod[] = ActionQueueService.methods;
const pathOf = (m: DescMethod) => `/${SERVICE}/${m.name}`;
const isStreaming = (m: DescMethod) => m.methodKind === "server_streaming";
const hasNoSideEffects = (m: DescMethod) => m.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS;

let t: TestServer;
let clients: FuzzClients;
let pools: Pools;
const tally = new Tally();
const interrupted: string[] = [];

beforeAll(async () => {
  t = await startTestServer(SERVER_ENV);
  clients = new FuzzClients(t.address, HEADERS);
  pools = await seedActions();
  tally.startedAt = Date.now();
});

afterAll(async () => {
  if (tally.cases > 0) console.log(tally.line(METHODS.length, SEED, interrupted.length ? `interrupted=${interrupted.join(",")} ` : ""));
  if (process.env.ACTIONQ_FUZZ_VERBOSE) console.log([...tally.groupLines(), ...clients.sessionEvents.map((e) => `FUZZ http2 ${e}`)].join("\n"));
  clients?.close();
  await t?.close();
});

/** A few actions in every status, so that random ids and tokens hit. */
async function seedActions(): Promise<Pools> {
  const call = <T>(method: string, request: Record<string, unknown>) => t.grpc.unary<T>(method, request, clients.metadata());
  let maxId = 0n;
  for (let i = 0; i < 8; i++) {
    const { action } = await call<{ action: { id: string } }>("EnqueueAction", {
      actionType: "collect_diagnostics",
      createdBy: "human:seed",
      targetRef: `node-${i}`,
      rollbackRef: "rerun_healthcheck",
      payload: toStruct({ i }),
    });
    maxId = BigInt(action.id);
  }
  for (let i = 0; i < 3; i++) await call("EnqueueAction", { actionType: "redeploy_service", createdBy: "agent:seed", service: "api" });
  maxId += 3n;
  const tokens: string[] = [];
  const claims: WireClaim[] = [];
  for (let i = 0; i < 5; i++) {
    const { claim } = await call<{ claim: WireClaim | null }>("ClaimAction", { worker: "worker:fuzz", leaseDuration: { seconds: 3600 } });
    if (claim) {
      claims.push(claim);
      tokens.push(claim.claimToken);
    }
  }
  await call("CompleteAction", { id: claims[0]!.action.id, claimToken: claims[0]!.claimToken, resultRef: "seeded" });
  await call("FailAction", { id: claims[1]!.action.id, claimToken: claims[1]!.claimToken, reason: "seeded" });
  const page = await call<ListActionsResponse>("ListActions", { pageSize: 2 });
  return { maxId, tokens, pageTokens: [page.nextPageToken] };
}

// ------------------------------------------------------------ the runner

/** FNV-1a, for a seed per group and RPC derived from the one seed. */
function seedFor(name: string): number {
  let hash = 0x811c9dc5 ^ SEED;
  for (const char of name) hash = Math.imul(hash ^ char.charCodeAt(0), 0x01000193);
  return hash | 0;
}

class Improper extends Error {}

/** A counterexample, readable: long runs of one character or byte
 * collapsed, the whole cut at 1000 characters. */
function describeInput(value: unknown): string {
  const text = fc
    .stringify(value)
    .replace(/(.)\1{31,}/g, (run, char: string) => `${char}…(${run.length} times)`)
    .replace(/((?:\d+,){16})(?:\d+,){32,}/g, (run, head: string) => `${head}…(${run.split(",").length} bytes),`);
  return text.length > 1000 ? `${text.slice(0, 1000)}…` : text;
}

/**
 * Runs one property for every RPC: `send` turns a generated case into calls
 * and returns their outcomes; each must be a proper status (or one of
 * `allow`). All RPCs run even when one fails; the error lists each failing
 * RPC with its shrunk counterexample.
 */
async function fuzzEveryRpc<T>(
  group: string,
  category: string,
  arbitrary: (m: DescMethod) => fc.Arbitrary<T>,
  send: (m: DescMethod, value: T) => Promise<Outcome[]>,
  options: { allow?: string[]; runs?: number; methods?: DescMethod[] } = {},
): Promise<void> {
  const allowed = new Set([...PROPER, ...(options.allow ?? [])]);
  const failures: string[] = [];
  const one = async (method: DescMethod) => {
    const seed = seedFor(`${group}/${method.name}`);
    const property = fc.asyncProperty(arbitrary(method), async (value) => {
      const outcomes = await send(method, value);
      for (const outcome of outcomes) tally.add(category, group, outcome);
      const bad = outcomes.filter((outcome) => !allowed.has(outcome.code));
      if (bad.length > 0) throw new Improper(bad.map((outcome) => `${outcome.code} (${outcome.detail})`).join("; "));
    });
    const details = await fc.check(property, { seed, numRuns: options.runs ?? RUNS, interruptAfterTimeLimit: 120_000 });
    if (details.interrupted) interrupted.push(`${group}/${method.name}`);
    if (details.failed) {
      failures.push(
        `  ${method.name}: ${(details.errorInstance as Error | undefined)?.message ?? String(details.errorInstance)}\n` +
          `    input: ${describeInput(details.counterexample?.[0])}\n` +
          `    (seed ${seed}, path "${details.counterexamplePath}", ${details.numShrinks} shrinks)`,
      );
    }
  };
  // A few RPCs at a time: calls that wait on the database overlap.
  const methods = options.methods ?? METHODS;
  for (let i = 0; i < methods.length; i += PARALLEL) await Promise.all(methods.slice(i, i + PARALLEL).map(one));
  failures.sort();
  if (failures.length > 0) {
    throw new Error(`${group}: ${failures.length} RPCs answered improperly (rerun with ACTIONQ_FUZZ_SEED=${SEED}):\n${failures.join("\n")}`);
  }
}

const LONG = 600_000;
const PARALLEL = 4;

// ------------------------------------------------------- Connect JSON

interface ConnectCase {
  body: string | Uint8Array;
  /** null: no content-type header at all. */
  contentType?: string | null;
  path?: string;
  method?: string;
  headers?: Record<string, string>;
  /** Streaming methods: the body is sent as is, not in an envelope. */
  raw?: boolean;
}

/** Sends one case over HTTP/1.1 and HTTP/2 at once. */
async function sendConnect(m: DescMethod, c: ConnectCase): Promise<Outcome[]> {
  const streaming = isStreaming(m);
  const body = typeof c.body === "string" ? Buffer.from(c.body, "utf8") : c.body;
  const headers: Record<string, string> = { ...c.headers };
  const contentType = c.contentType === undefined ? (streaming ? "application/connect+json" : "application/json") : c.contentType;
  if (contentType !== null) headers["content-type"] = contentType;
  const call: HttpCall = {
    method: c.method ?? "POST",
    path: c.path ?? pathOf(m),
    headers,
    body: streaming && !c.raw ? envelope(0, body) : body,
    stream: streaming,
  };
  const [h1, h2] = await Promise.all([clients.h1Call(call), clients.h2Call(call)]);
  return [
    { ...h1, detail: `HTTP/1.1: ${h1.detail}` },
    { ...h2, detail: `HTTP/2: ${h2.detail}` },
  ];
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

/** A field of `paths` picked by index, or an unknown field when none. */
function place(object: Record<string, unknown>, paths: FieldPath[], index: number, value: unknown, key: "jsonName" | "name" = "jsonName") {
  if (paths.length === 0) return { ...object, fuzzUnknownField: value };
  return setPath(object, paths[index % paths.length]!, value, key);
}

/** The value, or a one-item list of it when the field is repeated. */
function asField(path: FieldPath | undefined, value: unknown): unknown {
  return path?.leaf.fieldKind === "list" ? [value] : value;
}

describe("Connect JSON over HTTP/1.1 and HTTP/2", () => {
  it("well-typed JSON requests get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "connect/well-typed",
      "connect_json",
      (m) => jsonArb(m.input, pools).map((object) => ({ body: jsonText(object) })),
      sendConnect,
    );
  });

  it("wrong JSON types, nulls, snake_case names and unknown fields get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "connect/wrong-types",
      "connect_json",
      (m) => {
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
      },
      sendConnect,
    );
  });

  it("bad enum names and numbers get a proper status", { timeout: LONG }, async () => {
    const badEnum = fc.oneof(
      fc.string({ unit: "binary", maxLength: 20 }),
      fc.constantFrom("", "UNSPECIFIED", "risk_level_safe", "RISK_LEVEL_DANGEROUSS", " RISK_LEVEL_SAFE", "ACTION_STATUS_PENDING ", "PAUSE_KIND_ALL\u0000", "1", "0x1"),
      fc.integer(),
      fc.constantFrom(1.5, -1, 2 ** 31, 2 ** 53, 1e300, -(2 ** 31) - 1),
      fc.constantFrom(new Raw("1e400"), new Raw("-0"), new Raw("1.0"), true, null, [], {}),
    );
    await fuzzEveryRpc(
      "connect/bad-enums",
      "connect_json",
      (m) => {
        const paths = fieldPaths(m.input, isEnumField);
        return fc.tuple(jsonArb(m.input, pools), fc.nat(), badEnum, fc.boolean()).map(([base, index, value, list]) => {
          const path = paths[index % Math.max(1, paths.length)];
          return { body: jsonText(place(base, paths, index, list ? asField(path, value) : value)) };
        });
      },
      sendConnect,
    );
  });

  it("integers, timestamps and durations as garbage strings, floats and huge numbers get a proper status", { timeout: LONG }, async () => {
    const badNumber = fc.oneof(
      fc.constantFrom("abc", "1.5", "1e3", "0x10", " 1", "1 ", "+1", "", "-", "--1", "NaN", "Infinity", "1n", "٣", "1_000"),
      fc.constantFrom("9223372036854775808", "-9223372036854775809", "18446744073709551616", `1${"0".repeat(400)}`, "4294967296", "2147483648"),
      fc.constantFrom(new Raw("1e400"), new Raw("123456789012345678901234567890"), new Raw("-0"), new Raw("1.0"), new Raw("1.5"), new Raw("9007199254740993"), new Raw("1e19"), new Raw("-1e19")),
      fc.constantFrom("1e99s", "-1s", "1.0000000001s", "s", "1", "315576000001s", "-315576000001s", "1h", "P1D", "0.5ms"),
      fc.constantFrom("2020-13-45T00:00:00Z", "10000-01-01T00:00:00Z", "0000-01-01T00:00:00Z", "2020-01-01T00:00:00+25:00", "2020-01-01", "2020-01-01T00:00:60Z", "1970-01-01T00:00:00.1234567891Z"),
      fc.double(),
      fc.bigInt(-(2n ** 70n), 2n ** 70n).map(String),
    );
    await fuzzEveryRpc(
      "connect/bad-numbers",
      "connect_json",
      (m) => {
        const paths = fieldPaths(m.input, (f) => isIntegerField(f) || isTimeField(f));
        return fc.tuple(jsonArb(m.input, pools), fc.nat(), badNumber).map(([base, index, value]) => {
          const path = paths[index % Math.max(1, paths.length)];
          return { body: jsonText(place(base, paths, index, asField(path, Number.isNaN(value) ? new Raw("NaN") : value))) };
        });
      },
      sendConnect,
    );
  });

  it("huge strings, payloads over 64 KiB, payloads nested 10 to 5000 deep and huge lists get a proper status", { timeout: LONG }, async () => {
    const huge = fc.oneof(
      fc.record({
        kind: fc.constant("string" as const),
        index: fc.nat(),
        length: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 4097, max: 300_000 }) }, { weight: 1, arbitrary: fc.constant(4_500_000) }),
        char: fc.constantFrom("x", "é", "💥", "\u0000"),
      }),
      fc.record({ kind: fc.constant("deep" as const), index: fc.nat(), depth: fc.integer({ min: 10, max: 5000 }), shape: fc.constantFrom("object" as const, "list" as const) }),
      fc.record({ kind: fc.constant("payload" as const), index: fc.nat(), bytes: fc.integer({ min: 65_537, max: 200_000 }), keys: fc.boolean() }),
      fc.record({ kind: fc.constant("list" as const), index: fc.nat(), count: fc.integer({ min: 1001, max: 3000 }) }),
    );
    await fuzzEveryRpc(
      "connect/huge",
      "connect_json",
      (m) => {
        const strings = fieldPaths(m.input, isStringField);
        const structs = fieldPaths(m.input, isStruct);
        const lists = fieldPaths(m.input, (f) => f.fieldKind === "list");
        return fc.tuple(jsonArb(m.input, pools), huge).map(([base, h]) => {
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
              const path = lists[h.index % Math.max(1, lists.length)];
              const item = !path || path.leaf.fieldKind !== "list" ? 1 : path.leaf.listKind === "message" ? {} : path.leaf.listKind === "enum" ? 1 : isStringField(path.leaf) ? "a" : 1;
              return { body: jsonText(place(base, lists, h.index, Array.from({ length: h.count }, () => item))) };
            }
          }
        });
      },
      sendConnect,
      { runs: Math.max(4, Math.ceil(RUNS / 2)) },
    );
  });

  it("bodies that are not one JSON object (not JSON, empty, truncated, scalars, arrays, bad UTF-8) get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "connect/not-an-object",
      "connect_json",
      (m) =>
        fc.oneof(
          fc.constantFrom(
            "",
            "{",
            "}",
            "{}}",
            "[]",
            "null",
            "1",
            '"x"',
            "true",
            "{'a':1}",
            '{"a":}',
            "{,}",
            '{"id":1,}',
            "\u0000",
            "{}\u0000",
            "\ufeff{}",
            "{}garbage",
            '{"a":"\\ud800"}',
            '{"a" 1}',
            "NaN",
            "[".repeat(10_000),
            `${"[".repeat(50_000)}${"]".repeat(50_000)}`,
            " ".repeat(100_000),
          ),
          fc.uint8Array({ maxLength: 200 }),
          fc.string({ unit: "binary", maxLength: 200 }),
          fc.jsonValue({ maxDepth: 3 }).filter((v) => v === null || typeof v !== "object" || Array.isArray(v)).map((v) => JSON.stringify(v)),
          fc.tuple(jsonArb(m.input, pools), fc.nat()).map(([object, cut]) => {
            const text = jsonText(object);
            return text.slice(0, cut % Math.max(1, text.length));
          }),
          jsonArb(m.input, pools).map((object) => Buffer.from(jsonText(object), "utf16le")),
          badUtf8Arb.map((bad) => Buffer.concat([Buffer.from('{"reason":"'), bad.bytes, Buffer.from('"}')])),
          fc.tuple(jsonArb(m.input, pools), jsonArb(m.input, pools)).map(([a, b]) => {
            // The same field twice (once by each name).
            const field = m.input.fields[0];
            if (!field) return "{}";
            return `{${JSON.stringify(field.jsonName)}:${jsonText(a[field.jsonName] ?? 1)},${JSON.stringify(field.name)}:${jsonText(b[field.jsonName] ?? "x")}}`;
          }),
        ).map((body) => ({ body })),
      sendConnect,
    );
  });

  it("garbled Connect envelopes on server streams, and envelopes sent to unary methods, get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "connect/envelopes",
      "connect_json",
      (m) =>
        fc
          .tuple(
            jsonArb(m.input, pools).map((object) => Buffer.from(jsonText(object))),
            fc.constantFrom("truncated_prefix", "length_larger", "two_messages", "end_stream_flag", "flags_0x80", "empty_envelope", "trailing_garbage", "no_envelope"),
            fc.integer({ min: 1, max: 4 }),
          )
          .map(([json, how, n]): ConnectCase => {
            const whole = envelope(0, json);
            const contentType = "application/connect+json";
            switch (how) {
              case "truncated_prefix":
                return { body: whole.subarray(0, n), contentType, raw: true };
              case "length_larger":
                return { body: envelope(0, json, json.length + n * 1000), contentType, raw: true };
              case "two_messages":
                return { body: Buffer.concat([whole, whole]), contentType, raw: true };
              case "end_stream_flag":
                return { body: envelope(0x02, json), contentType, raw: true };
              case "flags_0x80":
                return { body: envelope(0x80, json), contentType, raw: true };
              case "empty_envelope":
                return { body: envelope(0, new Uint8Array()), contentType, raw: true };
              case "trailing_garbage":
                return { body: Buffer.concat([whole, Buffer.from([1, 2, 3].slice(0, n))]), contentType, raw: true };
              default:
                return { body: json, contentType, raw: true };
            }
          }),
      sendConnect,
      { allow: ["http_415", "unimplemented"] },
    );
  });

  it("wrong content types, paths, HTTP methods, GET query strings and protocol headers get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "connect/protocol",
      "connect_json",
      (m) => {
        const base = pathOf(m);
        const json = jsonArb(m.input, pools).map((object) => jsonText(object));
        return fc.oneof(
          fc.record({
            body: json,
            contentType: fc.constantFrom(
              null,
              "",
              "text/plain",
              "application/xml",
              "application/JSON",
              "application/json; charset=latin1",
              "application/json; charset=utf-16",
              "application/json;charset=utf-8",
              "application/grpc-web+json",
              "application/grpc-web-text",
              isStreaming(m) ? "application/json" : "application/connect+json",
              "multipart/form-data; boundary=x",
              "application/x-www-form-urlencoded",
              "application/json, text/plain",
              "*/*",
            ),
          }),
          fc.record({
            body: json,
            path: fc.constantFrom(`${base}x`, base.toLowerCase(), `/${SERVICE}/`, `/${SERVICE}`, `/${m.name}`, `${base}/extra`, `${base}?x=1`, `/${base}`, `${base}%00`, base.replace(".v1.", ".v2.")),
          }),
          fc.record({ body: json, method: fc.constantFrom("PUT", "DELETE", "PATCH", "OPTIONS") }),
          fc.record({
            body: fc.constant(""),
            method: fc.constant("GET"),
            contentType: fc.constant(null),
            path: json.map((text) => `${base}?connect=v1&encoding=json&message=${encodeURIComponent(text)}`),
          }),
          fc.record({
            body: json,
            headers: fc.oneof(
              fc.constantFrom("abc", "-1", "0", "99999999999999", "1.5", "").map((v) => ({ "connect-timeout-ms": v })),
              fc.constantFrom("0", "2", "abc", "").map((v) => ({ "connect-protocol-version": v })),
              fc.constantFrom("gzip", "br", "identity", "x").map((v) => ({ "connect-accept-encoding": v, "accept-encoding": v })),
            ),
          }),
        );
      },
      (m, c) => sendConnect(m, c as ConnectCase),
      { allow: ["http_404", "http_405", "http_415", "unimplemented", "deadline_exceeded"] },
    );
  });

  it("GET requests of side-effect-free RPCs with bad query strings (invalid base64, unknown encodings) get a proper status", { timeout: LONG }, async () => {
    const garbage = fc.oneof(
      fc.constantFrom("!", "!!!", "%%%", "====", "a", "ab=c", "////", "-_-_", "%ZZ", "e30=", "e30===", "e 30", "%FF%FE"),
      fc.string({ maxLength: 20 }).map(encodeURIComponent),
    );
    await fuzzEveryRpc(
      "connect/get",
      "connect_json",
      (m) => {
        const base = pathOf(m);
        const json = jsonArb(m.input, pools).map((object) => jsonText(object));
        return fc
          .oneof(
            json.map((text) => `${base}?connect=v1&encoding=json&message=${encodeURIComponent(text)}`),
            json.map((text) => `${base}?connect=v1&encoding=json&base64=1&message=${Buffer.from(text).toString("base64url")}`),
            garbage.map((text) => `${base}?connect=v1&encoding=json&base64=1&message=${text}`),
            garbage.map((text) => `${base}?connect=v1&encoding=json&message=${text}`),
            fc.constantFrom(`${base}`, `${base}?encoding=json`, `${base}?message=%7B%7D`, `${base}?encoding=xml&message=x`, `${base}?connect=v2&encoding=json&message=%7B%7D`),
            fc.constantFrom(`${base}?encoding=json&compression=gzip&message=%7B%7D`, `${base}?encoding=json&compression=br&message=%7B%7D`, `${base}?encoding=json&message=%ZZ`),
          )
          .map((path): ConnectCase => ({ body: "", method: "GET", contentType: null, path }));
      },
      sendConnect,
      { methods: METHODS.filter(hasNoSideEffects), allow: ["http_415", "unimplemented"] },
    );
  });
});

// ------------------------------------------------------- gRPC binary

/** A random well-typed request: its fields, unknown fields, and sometimes
 * a second message after it (which protobuf merges into the first). */
interface BinaryCase {
  typed: Typed;
  unknown: UnknownField[];
  second: Typed | null;
}

function binaryCase(m: DescMethod): fc.Arbitrary<BinaryCase> {
  return fc.record({ typed: typedArb(m.input, pools), unknown: fc.array(unknownFieldArb, { maxLength: 2 }), second: fc.option(typedArb(m.input, pools), { freq: 5 }) });
}

function encodeCase(m: DescMethod, c: BinaryCase): Uint8Array {
  const bytes = encodeTyped(m.input, c.typed, c.unknown);
  return c.second ? Buffer.concat([bytes, encodeTyped(m.input, c.second)]) : bytes;
}

function sendGrpc(m: DescMethod, c: BinaryCase): Promise<Outcome[]> {
  return clients.grpcCall(pathOf(m), encodeCase(m, c), isStreaming(m)).then((outcome) => [outcome]);
}

describe("gRPC binary through grpc-js", () => {
  it("random well-typed messages (control characters, unknown enum numbers, extreme int64, random Structs) get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc("grpc/well-typed", "grpc", binaryCase, sendGrpc, { runs: RUNS * 2 });
  });

  it("Struct payloads nested 10 to 5000 deep get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "grpc/deep-struct",
      "grpc",
      (m) => {
        const structs = fieldPaths(m.input, isStruct);
        return fc
          .tuple(typedArb(m.input, pools), fc.nat(), fc.integer({ min: 10, max: 5000 }), fc.constantFrom("object" as const, "list" as const))
          .map(([typed, index, depth, shape]): BinaryCase => {
            const nest = shape === "object" ? new Nest(depth, "object") : { a: new Nest(depth, "list") };
            // Without a Struct field, the nesting goes in an unknown field.
            if (structs.length === 0) return { typed, unknown: [{ no: 999, wire: "bytes", value: encodeStruct({ a: nest }) }], second: null };
            return { typed: setPath(typed, structs[index % structs.length]!, nest, "name"), unknown: [], second: null };
          });
      },
      sendGrpc,
    );
  });

  it("strings that are not UTF-8 get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "grpc/bad-utf8",
      "grpc",
      (m) => {
        const strings = fieldPaths(m.input, isStringField);
        return fc.tuple(typedArb(m.input, pools), fc.nat(), badUtf8Arb).map(([typed, index, bad]): BinaryCase => {
          if (strings.length === 0) return { typed, unknown: [{ no: 999, wire: "bytes", value: bad.bytes }], second: null };
          const path = strings[index % strings.length]!;
          return { typed: setPath(typed, path, asField(path, bad), "name"), unknown: [], second: null };
        });
      },
      sendGrpc,
    );
  });
});

// ------------------------------------------------- raw HTTP/2 frames

function rawGrpc(m: DescMethod, body: Uint8Array[], headers: Record<string, string> = {}): Promise<Outcome[]> {
  return clients.rawGrpc({ path: pathOf(m), headers, body, ending: "end", streaming: isStreaming(m) }).then((outcome) => [outcome]);
}

/** Bytes a protobuf parser must refuse. */
function notProtobuf(m: DescMethod): fc.Arbitrary<Uint8Array> {
  const field = m.input.fields[0];
  return fc.oneof(
    fc.uint8Array({ minLength: 1, maxLength: 200 }),
    fc.tuple(binaryCase(m), fc.nat()).map(([c, cut]) => {
      const bytes = encodeCase(m, c);
      return bytes.length > 1 ? bytes.subarray(0, 1 + (cut % (bytes.length - 1))) : Uint8Array.of(0x0a);
    }),
    fc.constantFrom(
      Uint8Array.of(0x00, 0x01),
      Uint8Array.of(0x0b),
      Uint8Array.of(0x0c),
      Uint8Array.of(0x0e, 0x01),
      Uint8Array.of(0x08, ...Array(11).fill(0xff)),
      Uint8Array.of(0x0a, 0x7f, 0x01),
      Uint8Array.of(0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f),
    ),
    // A known field with the wrong wire type.
    fc.constantFrom(0, 1, 2, 5).map((wire) => {
      const no = field?.number ?? 1;
      const tag = Uint8Array.of(((no << 3) | wire) & 0x7f | (no > 15 ? 0x80 : 0), ...(no > 15 ? [no >> 4] : []));
      const expected = field?.fieldKind === "scalar" && field.scalar !== 9 && field.scalar !== 12 ? 0 : 2;
      const value = wire === 0 ? [0x01] : wire === 1 ? Array(8).fill(1) : wire === 5 ? Array(4).fill(1) : [0x03, 0xff, 0xfe, 0xfd];
      return wire === expected ? Uint8Array.of(...tag, 0x05, 0x01) : Uint8Array.of(...tag, ...value);
    }),
  );
}

/** One message, framed wrongly in one of a few ways. */
function framed(msg: Uint8Array, how: string, n: number, big: number): Uint8Array[] {
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
    default:
      return [whole, Uint8Array.of(0, 0, 0).subarray(0, n)];
  }
}

/** A request that opens a server stream and claims nothing. */
function openingRequest(m: DescMethod): Uint8Array {
  const fields = new Set(m.input.fields.map((f) => f.name));
  // after_id far ahead: the stream opens without replaying the log.
  const request = Object.entries({ worker: "worker:fuzz-stream", action_types: ["fuzz_no_such_type"], after_id: 2n ** 40n }).filter(([name]) => fields.has(name));
  return envelope(0, encodeTyped(m.input, Object.fromEntries(request)));
}

/** A unary call on the given connection, which must answer OK. */
async function nextCall(session: http2.ClientHttp2Session, m: DescMethod): Promise<Outcome> {
  const stats = METHODS.find((method) => method.name === "GetQueueStats") ?? m;
  const next = await clients.rawGrpc({ session, path: pathOf(stats), headers: {}, body: [envelope(0, new Uint8Array())], ending: "end", streaming: false });
  return next.code === "ok" ? next : { code: `next_call_${next.code}`, detail: `the next call on that connection: ${next.detail}` };
}

describe("raw HTTP/2 gRPC frames", () => {
  it("truncated, oversized, repeated and missing length-prefixed messages get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "raw/framing",
      "raw_frames",
      (m) =>
        fc
          .tuple(
            binaryCase(m),
            fc.constantFrom("truncated_prefix", "length_larger", "several_messages", "no_message", "byte_by_byte", "flag_bits", "trailing_garbage"),
            fc.integer({ min: 1, max: 4 }),
            fc.integer({ min: 1, max: 2 ** 32 - 1 }),
          )
          .map(([c, how, n, big]) => ({ c, how, n, big })),
      (m, { c, how, n, big }) => rawGrpc(m, framed(encodeCase(m, c), how, n, big)),
      // connect-es answers a unary call with no message or with several
      // UNIMPLEMENTED ("protocol error: ... for unary method").
      { allow: ["unimplemented"] },
    );
  });

  it("the compressed flag without a grpc-encoding (or with identity) gets a proper status, over gRPC and Connect streams", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "raw/compressed-flag",
      "raw_frames",
      (m) => fc.tuple(binaryCase(m), fc.constantFrom("none", "identity", "connect")),
      async (m, [c, how]) => {
        const msg = encodeCase(m, c);
        if (how === "connect") {
          // A compressed envelope without connect-content-encoding.
          const json = Buffer.from("{}");
          return sendConnect(m, isStreaming(m) ? { body: envelope(1, json), raw: true } : { body: envelope(1, json), contentType: "application/connect+json", raw: true });
        }
        return rawGrpc(m, [envelope(1, msg)], how === "identity" ? { "grpc-encoding": "identity" } : {});
      },
      { allow: ["http_415", "unimplemented"] },
    );
  });

  it("unknown encodings and corrupt or oversized gzip get a proper status, over gRPC and Connect", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "raw/encodings",
      "raw_frames",
      (m) =>
        fc.tuple(
          binaryCase(m),
          fc.constantFrom("gzip_garbage", "gzip_truncated", "gzip_ok", "unknown_encoding", "unknown_encoding_no_flag", "gzip_large", "connect_unary"),
          fc.constantFrom("snappy", "br", "deflate", "x-garbage", "gzip, deflate"),
        ),
      async (m, [c, how, encoding]) => {
        const msg = encodeCase(m, c);
        const send = (flags: number, data: Uint8Array, headers: Record<string, string>) => rawGrpc(m, [envelope(flags, data)], headers);
        const gzip = { "grpc-encoding": "gzip" };
        switch (how) {
          case "gzip_garbage":
            return send(1, Buffer.concat([Buffer.from([0x1f, 0x8b]), msg]), gzip);
          case "gzip_truncated": {
            const zipped = gzipSync(msg);
            return send(1, zipped.subarray(0, zipped.length - 5), gzip);
          }
          case "gzip_ok":
            return send(1, gzipSync(msg), gzip);
          case "unknown_encoding":
            return send(1, msg, { "grpc-encoding": encoding });
          case "unknown_encoding_no_flag":
            return send(0, msg, { "grpc-encoding": encoding });
          case "gzip_large":
            // 5 MiB once decompressed, a few KiB on the wire.
            return send(1, gzipSync(encodeTyped(m.input, {}, [{ no: 999, wire: "bytes", value: new Uint8Array(5 * 1024 * 1024) }])), gzip);
          default: {
            // Connect unary: a content-encoding that is unknown, or gzip
            // that is not.
            if (isStreaming(m)) return sendConnect(m, { body: envelope(1, Buffer.from("{}")), raw: true, headers: { "connect-content-encoding": encoding } });
            return sendConnect(m, { body: Buffer.from("{}"), headers: { "content-encoding": encoding.startsWith("gzip") ? "gzip" : encoding } });
          }
        }
      },
      // The gRPC and Connect specs answer an encoding the server does not
      // support with UNIMPLEMENTED.
      { allow: ["unimplemented"] },
    );
  });

  it("a body that is not valid protobuf gets INVALID_ARGUMENT, over gRPC and Connect's binary encoding", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "raw/not-protobuf",
      "raw_frames",
      (m) => fc.tuple(notProtobuf(m), fc.constantFrom("grpc", "connect")),
      async (m, [bytes, protocol]) => {
        if (protocol === "grpc") return rawGrpc(m, [envelope(0, bytes)]);
        return sendConnect(m, isStreaming(m) ? { body: envelope(0, bytes), contentType: "application/connect+proto", raw: true } : { body: bytes, contentType: "application/proto" });
      },
    );
  });

  it("wrong content types, bad grpc-timeout and other odd headers get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "raw/headers",
      "raw_frames",
      (m) =>
        fc.tuple(
          binaryCase(m),
          fc.oneof(
            fc.constantFrom("application/grpc+proto", "application/grpc+json", "application/grpc+xml", "application/grpc; charset=utf-8", "application/grpcx", "text/plain", "").map((v) => ({ "content-type": v })),
            fc.constantFrom("abc", "1n", "0S", "-1S", "1H", "99999999S", "100000000H", "1", "S", "1.5S", "1m").map((v) => ({ "grpc-timeout": v })),
            fc.constantFrom<Record<string, string>>({ "grpc-accept-encoding": "\u00ff" }, { "user-agent": "x".repeat(8000) }, { "grpc-message-type": "x" }, { "grpc-encoding": "" }),
          ),
        ),
      (m, [c, headers]) => rawGrpc(m, [envelope(0, encodeCase(m, c))], headers),
      { allow: ["unimplemented", "http_415", "deadline_exceeded"] },
    );
  });

  it("a server stream with a grpc-timeout beyond 2^31 ms (valid in gRPC) stays open", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "raw/long-deadline",
      "raw_frames",
      () => fc.tuple(fc.integer({ min: 2_147_484, max: 99_999_999 }), fc.constantFrom("S", "M", "H")),
      async (m, [value, unit]) => [
        await clients.rawGrpc({ path: pathOf(m), headers: { "grpc-timeout": `${value}${unit}` }, body: [openingRequest(m)], ending: "end", streaming: true, holdMs: 300 }),
      ],
      { methods: METHODS.filter(isStreaming), runs: Math.max(2, Math.ceil(RUNS / 2)) },
    );
  });

  it("oversized request bodies that the server refuses leave the HTTP/2 connection serving", { timeout: LONG }, async () => {
    const stats = METHODS.find((m) => m.name === "GetQueueStats") ?? METHODS[0]!;
    await fuzzEveryRpc(
      "raw/oversized-bodies",
      "raw_frames",
      () => fc.record({ count: fc.integer({ min: 1, max: 3 }), megabytes: fc.integer({ min: 1, max: 12 }), refusal: fc.constantFrom("content_type", "unknown_method", "grpc_unknown_method") }),
      async (m, { count, megabytes, refusal }) => {
        // A connection of its own, so that the shared one stays usable.
        const session = clients.newSession();
        try {
          const body = Buffer.alloc(megabytes * 1024 * 1024, 0x20);
          const refused = await Promise.all(
            Array.from({ length: count }, () =>
              refusal === "grpc_unknown_method"
                ? clients.rawGrpc({ session, path: `/${SERVICE}/NoSuchMethod`, headers: {}, body: [envelope(0, body)], ending: "end", streaming: false })
                : clients.h2CallOn(session, {
                    path: refusal === "unknown_method" ? `/${SERVICE}/NoSuchMethod` : pathOf(m),
                    headers: { "content-type": refusal === "content_type" ? "text/plain" : "application/json" },
                    body,
                  }),
            ),
          );
          return [...refused, await nextCall(session, m)];
        } finally {
          session.close();
        }
      },
      // RST_STREAM ENHANCE_YOUR_CALM is how HTTP/2 says RESOURCE_EXHAUSTED.
      { methods: [stats], allow: ["http_415", "http_404", "unimplemented", "reset_11"] },
    );
  });

  it("a connection on which many server streams were cancelled keeps serving", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "raw/cancelled-streams",
      "raw_frames",
      // The server gave up on a connection after 1067 to 1100 of them.
      () => fc.constant(1500),
      async (m, count) => {
        const session = clients.newSession();
        try {
          const outcomes: Outcome[] = [];
          // Each stream is read to its first message, then cancelled, as
          // any client does with a stream it no longer needs.
          for (let i = 0; i < count && !session.closed && !session.destroyed; i++) {
            outcomes.push(await clients.rawGrpc({ session, path: pathOf(m), headers: {}, body: [openingRequest(m)], ending: "end", streaming: true }));
          }
          return [...outcomes, await nextCall(session, m)];
        } finally {
          session.close();
        }
      },
      { methods: METHODS.filter(isStreaming), runs: 1 },
    );
  });

  it("RST_STREAM in the middle of a request leaves the connection serving", { timeout: LONG }, async () => {
    const stats = METHODS.find((m) => m.name === "GetQueueStats") ?? METHODS[0]!;
    await fuzzEveryRpc(
      "raw/rst-stream",
      "raw_frames",
      (m) =>
        fc.tuple(
          binaryCase(m),
          fc.constantFrom("headers_only", "partial_prefix", "partial_body", "whole_body"),
          fc.constantFrom(0, 1, 2, 7, 8, 11),
        ),
      async (m, [c, at, rstCode]) => {
        const whole = envelope(0, encodeCase(m, c));
        const body = at === "headers_only" ? [] : at === "partial_prefix" ? [whole.subarray(0, 3)] : at === "partial_body" ? [whole.subarray(0, Math.max(5, whole.length - 1))] : [whole];
        const reset = await clients.rawGrpc({ path: pathOf(m), headers: {}, body, ending: "reset", rstCode, streaming: isStreaming(m) });
        // The same connection answers the next call.
        const next = await clients.rawGrpc({ path: pathOf(stats), headers: {}, body: [envelope(0, new Uint8Array())], ending: "end", streaming: false });
        return [reset, next];
      },
      { allow: ["client_reset"] },
    );
  });

  it("HTTP/2 garbage on a raw connection does not stop the server", { timeout: LONG }, async () => {
    const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    const frame = fc
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
    const stats = METHODS.find((m) => m.name === "GetQueueStats") ?? METHODS[0]!;
    await fuzzEveryRpc(
      "raw/connection-garbage",
      "raw_frames",
      () =>
        fc.oneof(
          fc.array(frame, { minLength: 1, maxLength: 5 }).map((frames) => Buffer.concat([preface, ...frames])),
          fc.uint8Array({ minLength: 1, maxLength: 100 }).map((bytes) => Buffer.concat([preface.subarray(0, bytes[0]! % preface.length), bytes])),
          fc.constantFrom(Buffer.from("GET / HTTP/1.1\r\n\r\n"), Buffer.from("POST / HTTP/9.9\r\nContent-Length: -1\r\n\r\n"), Buffer.from("\r\n\r\n\r\n")),
        ),
      async (_m, bytes) => {
        await clients.rawSocket(bytes, 20);
        return [await clients.grpcCall(pathOf(stats), new Uint8Array(), false)];
      },
      { methods: [stats], runs: RUNS * 4 },
    );
  });
});

// ------------------------------------------ authorization headers

/** Header values node's clients will send: tab, printable ASCII and
 * bytes 0x80-0xff (as latin1). */
function headerSafe(bytes: Uint8Array): string {
  return Buffer.from([...bytes].filter((b) => b === 9 || (b >= 0x20 && b !== 0x7f))).toString("latin1");
}

describe("garbage authorization headers", () => {
  it("empty, malformed, huge and non-ASCII authorization headers get a proper status", { timeout: LONG }, async () => {
    const value = fc.oneof(
      fc.constantFrom("", "Bearer", "Bearer ", "bearer x", "Basic Zm9vOmJhcg==", "Bearer Bearer x", "Token x", "Bearer \t x", "Bearer =", "Bearer ../../etc/passwd"),
      fc.uint8Array({ minLength: 1, maxLength: 64 }).map((bytes) => `Bearer ${headerSafe(bytes)}`),
      fc.string({ unit: "binary", maxLength: 30 }).map((s) => `Bearer ${headerSafe(Buffer.from(s, "utf8"))}`),
      fc.integer({ min: 1000, max: 12_000 }).map((n) => `Bearer ${"A".repeat(n)}`),
    );
    await fuzzEveryRpc(
      "auth/garbage",
      "auth",
      (m) => fc.tuple(value, fc.constantFrom("connect", "grpc", "raw_h1"), fc.uint8Array({ minLength: 1, maxLength: 16 })),
      async (m, [authorization, protocol, control]) => {
        const headers = { authorization };
        if (protocol === "grpc") return rawGrpc(m, [envelope(0, new Uint8Array())], headers);
        if (protocol === "connect") return sendConnect(m, { body: "{}", headers });
        // Bytes no client library sends: control characters in the value.
        const body = isStreaming(m) ? envelope(0, Buffer.from("{}")) : Buffer.from("{}");
        const head =
          `POST ${pathOf(m)} HTTP/1.1\r\nHost: fuzz\r\nContent-Type: ${isStreaming(m) ? "application/connect+json" : "application/json"}\r\n` +
          `Content-Length: ${body.length}\r\nConnection: close\r\n`;
        const request = Buffer.concat([Buffer.from(head, "latin1"), Buffer.from("Authorization: Bearer "), Buffer.from(control), Buffer.from("\r\n\r\n"), body]);
        return [await clients.rawH1(request)];
      },
      // Node's HTTP/1.1 parser refuses a header with control characters
      // (400) or larger than its limit (431) before any handler runs.
      { allow: ["http_400", "http_431"] },
    );
  });
});

// ------------------------------------------------------- afterwards

describe("after the fuzzing", () => {
  it("the server still answers health checks and runs an enqueue, claim and complete round trip", async () => {
    const health = await new Promise<Uint8Array>((resolve, reject) => {
      clients.grpc.makeUnaryRequest(
        "/grpc.health.v1.Health/Check",
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.alloc(0),
        clients.metadata(),
        { deadline: Date.now() + 5000 },
        (error, response) => (error ? reject(error) : resolve(response!)),
      );
    });
    expect(fromBinary(HealthCheckResponseSchema, health).status).toBe(HealthCheckResponse_ServingStatus.SERVING);

    const call = <T>(method: string, request: Record<string, unknown>) => t.grpc.unary<T>(method, request, clients.metadata());
    // Undo whatever pauses the fuzzing put in force.
    const stats = await call<{ pauses: { scope: unknown }[] }>("GetQueueStats", {});
    for (const pause of stats.pauses) await call("ResumeClaims", { scope: pause.scope, actor: "human:fuzz-check", reason: "after fuzzing" });

    const actionType = `fuzz_roundtrip_${Date.now()}`;
    const { action } = await call<{ action: { id: string; status: string } }>("EnqueueAction", { actionType, createdBy: "human:fuzz-check", payload: toStruct({ ok: true }) });
    expect(action.status).toBe(STATUS.approved);
    const { claim } = await call<{ claim: WireClaim | null }>("ClaimAction", { worker: "worker:fuzz-check", actionTypes: [actionType] });
    expect(claim?.action.id).toBe(action.id);
    const done = await call<{ action: { status: string } }>("CompleteAction", { id: action.id, claimToken: claim!.claimToken, resultRef: "round trip" });
    expect(done.action.status).toBe(STATUS.completed);

    // And over Connect JSON on HTTP/1.1.
    const [got] = await sendConnect(METHODS.find((m) => m.name === "GetAction")!, { body: JSON.stringify({ id: action.id }) });
    expect(got?.code).toBe("ok");
  });

  it("the database holds its invariants", async () => {
    expect(await auditDatabase(t.db)).toEqual([]);
  });
});
