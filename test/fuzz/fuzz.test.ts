// Fuzzing every RPC of actionq.v1.ActionQueueService over the wire: random
// and malformed requests through Connect JSON (HTTP/1.1 and HTTP/2), gRPC
// binary (grpc-js) and raw HTTP/2 frames. Whatever comes in, the server
// answers with a proper status: never INTERNAL or UNKNOWN, never a crash,
// never a call left hanging. Afterwards it still serves and its database
// still holds every invariant.
//
// The RPCs come from the service descriptor, so a new RPC is fuzzed without
// touching this file. Inputs are fixed by a seed.
//
//   ACTIONQ_FUZZ_SEED        another seed (the default is fixed)
//   ACTIONQ_FUZZ_RUNS        runs per RPC and group (default 10)
//   ACTIONQ_FUZZ_VERBOSE=1   print what each group was answered with
//   ACTIONQ_FUZZ_AUTH=1      run with authentication on: an auth file with
//                            one admin principal, its token on every call
//   ACTIONQ_FUZZ_SERVER_ENV  extra server settings, as JSON, e.g.
//                            '{"ACTIONQ_AUTH_FILE":"/path/auth.yaml"}'
//   ACTIONQ_FUZZ_HEADERS     headers for every call, as JSON, e.g.
//                            '{"authorization":"Bearer <admin token>"}'
//   ACTIONQ_FUZZ_PRINCIPAL   with auth on: the token's principal, used for
//                            the identity fields of the seeding and checks
import type http2 from "node:http2";
import { gzipSync } from "node:zlib";
import type { DescMethod } from "@bufbuild/protobuf";
import { fromBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HealthCheckResponse_ServingStatus, HealthCheckResponseSchema } from "../../gen/grpc/health/v1/health_pb.js";
import { principal, removeAuthDirs, writeAuthFile } from "../support/auth.js";
import { type TestServer, startTestServer } from "../support/harness.js";
import { type ListActionsResponse, STATUS, type WireClaim, toStruct } from "../support/wire.js";
import {
  type BinaryCase,
  type ConnectCase,
  FRAMINGS,
  METHODS,
  PROBE,
  SERVICE,
  authorizationWithControlBytes,
  badEnums,
  badNumbers,
  badUtf8,
  binaryCase,
  connectionGarbage,
  deepStruct,
  encodeCase,
  framed,
  garbageAuthorization,
  garbledEnvelopes,
  getRequests,
  hasNoSideEffects,
  huge,
  isStreaming,
  notAnObject,
  notProtobuf,
  openingRequest,
  pathOf,
  protocolMisuse,
  wellTypedJson,
  wrongTypes,
} from "./cases.js";
import { type Pools, encodeTyped } from "./arbitraries.js";
import { FuzzClients, type HttpCall, type Outcome, PROPER, Tally, envelope } from "./clients.js";

function envJson(name: string): Record<string, string> {
  const text = process.env[name];
  return text ? (JSON.parse(text) as Record<string, string>) : {};
}

const SEED = Number(process.env.ACTIONQ_FUZZ_SEED ?? 20260611);
const RUNS = Number(process.env.ACTIONQ_FUZZ_RUNS ?? 10);
const AUTH = process.env.ACTIONQ_FUZZ_AUTH === "1";
const admin = AUTH ? principal("admin:fuzz", ["admin"]) : undefined;
const PRINCIPAL = admin?.name ?? process.env.ACTIONQ_FUZZ_PRINCIPAL;
/** The identity for a field: the authenticated principal when auth is on. */
const who = (name: string) => PRINCIPAL ?? name;

let t: TestServer;
let clients: FuzzClients;
let pools: Pools;
const tally = new Tally();
const interrupted: string[] = [];

beforeAll(async () => {
  const auth: Record<string, string> = admin ? { ACTIONQ_AUTH_FILE: await writeAuthFile([admin]) } : {};
  t = await startTestServer({ ...auth, ...envJson("ACTIONQ_FUZZ_SERVER_ENV") });
  clients = new FuzzClients(t.address, { ...(admin ? { authorization: `Bearer ${admin.tokens[0]}` } : {}), ...envJson("ACTIONQ_FUZZ_HEADERS") });
  pools = await seedActions();
  tally.startedAt = Date.now();
});

afterAll(async () => {
  if (tally.cases > 0)
    console.log(
      tally.line(METHODS.length, SEED, `authentication=${PRINCIPAL ? "on" : "off"} ${interrupted.length ? `interrupted=${interrupted.join(",")} ` : ""}`),
    );
  if (process.env.ACTIONQ_FUZZ_VERBOSE) console.log([...tally.groupLines(), ...(clients?.sessionEvents ?? []).map((e) => `FUZZ http2 ${e}`)].join("\n"));
  clients?.close();
  await t?.close();
  await removeAuthDirs();
});

function call<T>(method: string, request: Record<string, unknown>): Promise<T> {
  return t.grpc.unary<T>(method, request, clients.metadata());
}

/** A few actions in every status, so that random ids and tokens hit. */
async function seedActions(): Promise<Pools> {
  let maxId = 0n;
  for (let i = 0; i < 8; i++) {
    const request = {
      actionType: "collect_diagnostics",
      createdBy: who("human:seed"),
      targetRef: `node-${i}`,
      rollbackRef: "rerun_healthcheck",
      payload: toStruct({ i }),
    };
    maxId = BigInt((await call<{ action: { id: string } }>("EnqueueAction", request)).action.id);
  }
  for (let i = 0; i < 3; i++) await call("EnqueueAction", { actionType: "redeploy_service", createdBy: who("agent:seed"), service: "api" });
  maxId += 3n;
  const claims: WireClaim[] = [];
  for (let i = 0; i < 5; i++) {
    const { claim } = await call<{ claim: WireClaim | null }>("ClaimAction", { worker: who("worker:fuzz"), leaseDuration: { seconds: 3600 } });
    if (claim) claims.push(claim);
  }
  await call("CompleteAction", { id: claims[0]!.action.id, claimToken: claims[0]!.claimToken, resultRef: "seeded" });
  await call("FailAction", { id: claims[1]!.action.id, claimToken: claims[1]!.claimToken, reason: "seeded" });
  const page = await call<ListActionsResponse>("ListActions", { pageSize: 2 });
  return { maxId, tokens: claims.map((claim) => claim.claimToken), pageTokens: [page.nextPageToken] };
}

// ------------------------------------------------------------ the runner

const LONG = 600_000;
/** RPCs fuzzed at once: calls that wait on the database overlap. */
const PARALLEL = 4;

/** FNV-1a, for a seed per group and RPC derived from the one seed. */
function seedFor(name: string): number {
  let hash = 0x811c9dc5 ^ SEED;
  for (const char of name) hash = Math.imul(hash ^ char.charCodeAt(0), 0x01000193);
  return hash | 0;
}

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
 * RPC with its shrunk counterexample and the seed to replay it.
 */
async function fuzzEveryRpc<T>(
  group: string,
  category: string,
  arbitrary: (m: DescMethod, pools: Pools) => fc.Arbitrary<T>,
  send: (m: DescMethod, value: T) => Promise<Outcome[]>,
  options: { allow?: string[]; runs?: number; methods?: DescMethod[]; parallel?: number; shrink?: boolean } = {},
): Promise<void> {
  const allowed = new Set([...PROPER, ...(options.allow ?? [])]);
  const failures: string[] = [];
  const one = async (method: DescMethod) => {
    const seed = seedFor(`${group}/${method.name}`);
    const property = fc.asyncProperty(arbitrary(method, pools), async (value) => {
      const outcomes = await send(method, value);
      for (const outcome of outcomes) tally.add(category, group, outcome);
      const bad = outcomes.filter((outcome) => !allowed.has(outcome.code));
      if (bad.length > 0) throw new Error(bad.map((outcome) => `${outcome.code} (${outcome.detail})`).join("; "));
    });
    const details = await fc.check(property, { seed, numRuns: options.runs ?? RUNS, endOnFailure: options.shrink === false, interruptAfterTimeLimit: 60_000 });
    if (details.interrupted) interrupted.push(`${group}/${method.name}`);
    if (details.failed) {
      failures.push(
        `  ${method.name}: ${(details.errorInstance as Error | undefined)?.message ?? String(details.errorInstance)}\n` +
          `    input: ${describeInput(details.counterexample?.[0])}\n` +
          `    (seed ${seed}, path "${details.counterexamplePath}", ${details.numShrinks} shrinks)`,
      );
    }
  };
  const methods = options.methods ?? METHODS;
  const parallel = options.parallel ?? PARALLEL;
  for (let i = 0; i < methods.length; i += parallel) await Promise.all(methods.slice(i, i + parallel).map(one));
  if (failures.length > 0) {
    throw new Error(`${group}: ${failures.length} RPCs answered improperly (rerun with ACTIONQ_FUZZ_SEED=${SEED}):\n${failures.sort().join("\n")}`);
  }
}

// ------------------------------------------------------------ sending

/** One Connect case, over HTTP/1.1 and HTTP/2 at once. */
async function sendConnect(m: DescMethod, c: ConnectCase): Promise<Outcome[]> {
  const streaming = isStreaming(m);
  const body = typeof c.body === "string" ? Buffer.from(c.body, "utf8") : c.body;
  const headers: Record<string, string> = { ...c.headers };
  const contentType = c.contentType === undefined ? (streaming ? "application/connect+json" : "application/json") : c.contentType;
  if (contentType !== null) headers["content-type"] = contentType;
  const request: HttpCall = {
    method: c.method ?? "POST",
    path: c.path ?? pathOf(m),
    headers,
    body: streaming && !c.raw ? envelope(0, body) : body,
    stream: streaming,
  };
  const [h1, h2] = await Promise.all([clients.h1Call(request), clients.h2Call(request)]);
  return [
    { ...h1, detail: `HTTP/1.1: ${h1.detail}` },
    { ...h2, detail: `HTTP/2: ${h2.detail}` },
  ];
}

async function sendGrpc(m: DescMethod, c: BinaryCase): Promise<Outcome[]> {
  return [await clients.grpcCall(pathOf(m), encodeCase(m, c), isStreaming(m))];
}

async function sendRaw(m: DescMethod, body: Uint8Array[], headers: Record<string, string> = {}): Promise<Outcome[]> {
  return [await clients.rawGrpc({ path: pathOf(m), headers, body, ending: "end", streaming: isStreaming(m) })];
}

/** A unary call on the given connection, which must answer OK. */
async function nextCall(session?: http2.ClientHttp2Session): Promise<Outcome> {
  const next = await clients.rawGrpc({ session, path: pathOf(PROBE), headers: {}, body: [envelope(0, new Uint8Array())], ending: "end", streaming: false });
  return next.code === "ok" ? next : { code: `next_call_${next.code}`, detail: `the next call on that connection: ${next.detail}` };
}

// ------------------------------------------------------- the properties

describe("Connect JSON over HTTP/1.1 and HTTP/2", () => {
  it("well-typed JSON requests get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc("connect/well-typed", "connect_json", wellTypedJson, sendConnect);
  });

  it("wrong JSON types, nulls, snake_case names and unknown fields get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc("connect/wrong-types", "connect_json", wrongTypes, sendConnect);
  });

  it("bad enum names and numbers get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc("connect/bad-enums", "connect_json", badEnums, sendConnect);
  });

  it("integers, timestamps and durations as garbage strings, floats and huge numbers get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc("connect/bad-numbers", "connect_json", badNumbers, sendConnect);
  });

  it("huge strings, payloads over 64 KiB, payloads nested 10 to 5000 deep and huge lists get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc("connect/huge", "connect_json", huge, sendConnect, { runs: Math.max(4, Math.ceil(RUNS / 2)) });
  });

  it("bodies that are not one JSON object (not JSON, empty, truncated, scalars, arrays, bad UTF-8) get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc("connect/not-an-object", "connect_json", notAnObject, sendConnect);
  });

  it("garbled Connect envelopes on server streams, and envelopes sent to unary methods, get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc("connect/envelopes", "connect_json", garbledEnvelopes, sendConnect, {
      allow: ["http_415", "unimplemented", "client_refused", "reset_1"],
    });
  });

  it("wrong content types, paths, HTTP methods and protocol headers get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc("connect/protocol", "connect_json", protocolMisuse, sendConnect, {
      // 431: a message moved into a GET's query string can outgrow Node's
      // limit on a request's head, which is answered before any handler.
      allow: ["http_404", "http_405", "http_415", "http_431", "unimplemented", "deadline_exceeded"],
    });
  });

  it("GET requests of side-effect-free RPCs with bad query strings (invalid base64, unknown encodings) get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc("connect/get", "connect_json", getRequests, sendConnect, {
      methods: METHODS.filter(hasNoSideEffects),
      allow: ["http_415", "unimplemented", "client_refused", "reset_1"],
    });
  });
});

describe("gRPC binary through grpc-js", () => {
  it("random well-typed messages (control characters, unknown enum numbers, extreme int64, random Structs) get a proper status", {
    timeout: LONG,
  }, async () => {
    await fuzzEveryRpc("grpc/well-typed", "grpc", binaryCase, sendGrpc, { runs: RUNS * 2 });
  });

  it("Struct payloads nested 10 to 5000 deep get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc("grpc/deep-struct", "grpc", deepStruct, sendGrpc);
  });

  it("strings that are not UTF-8 get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc("grpc/bad-utf8", "grpc", badUtf8, sendGrpc);
  });
});

describe("gRPC and gRPC-Web with the JSON codec", () => {
  it("random and malformed JSON in application/grpc+json and application/grpc-web+json gets a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "grpc-json/bodies",
      "grpc",
      (m, p) => fc.tuple(fc.oneof(wellTypedJson(m, p), wrongTypes(m, p), { weight: 3, arbitrary: notAnObject(m, p) }), fc.constantFrom("grpc", "grpc-web")),
      async (m, [c, protocol]) => {
        const body = envelope(0, typeof c.body === "string" ? Buffer.from(c.body, "utf8") : c.body);
        if (protocol === "grpc") return sendRaw(m, [body], { "content-type": "application/grpc+json" });
        return sendConnect(m, { body, contentType: "application/grpc-web+json", raw: true });
      },
      // A call that hangs costs the whole deadline: no shrinking, and every
      // RPC at once.
      { parallel: METHODS.length, shrink: false },
    );
  });
});

describe("raw HTTP/2 gRPC frames", () => {
  it("truncated, oversized, repeated and missing length-prefixed messages get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "raw/framing",
      "raw_frames",
      (m, p) =>
        fc.record({ c: binaryCase(m, p), how: fc.constantFrom(...FRAMINGS), n: fc.integer({ min: 1, max: 4 }), big: fc.integer({ min: 1, max: 2 ** 32 - 1 }) }),
      (m, { c, how, n, big }) => sendRaw(m, framed(encodeCase(m, c), how, n, big)),
      // connect-es answers a unary call with no message or with several
      // UNIMPLEMENTED ("protocol error: ... for unary method").
      { allow: ["unimplemented"] },
    );
  });

  it("the compressed flag without a grpc-encoding (or with identity) gets a proper status, over gRPC and Connect streams", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "raw/compressed-flag",
      "raw_frames",
      (m, p) => fc.tuple(binaryCase(m, p), fc.constantFrom("none", "identity", "connect")),
      async (m, [c, how]) => {
        if (how === "connect") {
          // A compressed envelope without connect-content-encoding.
          return sendConnect(m, { body: envelope(1, Buffer.from("{}")), contentType: "application/connect+json", raw: true });
        }
        return sendRaw(m, [envelope(1, encodeCase(m, c))], how === "identity" ? { "grpc-encoding": "identity" } : {});
      },
      { allow: ["http_415", "unimplemented"] },
    );
  });

  it("unknown encodings and corrupt or oversized gzip get a proper status, over gRPC and Connect", { timeout: LONG }, async () => {
    const kinds = ["gzip_garbage", "gzip_truncated", "gzip_ok", "unknown_encoding", "unknown_encoding_no_flag", "gzip_large", "connect"] as const;
    await fuzzEveryRpc(
      "raw/encodings",
      "raw_frames",
      (m, p) => fc.tuple(binaryCase(m, p), fc.constantFrom(...kinds), fc.constantFrom("snappy", "br", "deflate", "x-garbage", "gzip, deflate")),
      async (m, [c, how, encoding]) => {
        const msg = encodeCase(m, c);
        const gzip = { "grpc-encoding": "gzip" };
        switch (how) {
          case "gzip_garbage":
            return sendRaw(m, [envelope(1, Buffer.concat([Buffer.from([0x1f, 0x8b]), msg]))], gzip);
          case "gzip_truncated": {
            const zipped = gzipSync(msg);
            return sendRaw(m, [envelope(1, zipped.subarray(0, zipped.length - 5))], gzip);
          }
          case "gzip_ok":
            return sendRaw(m, [envelope(1, gzipSync(msg))], gzip);
          case "unknown_encoding":
            return sendRaw(m, [envelope(1, msg)], { "grpc-encoding": encoding });
          case "unknown_encoding_no_flag":
            return sendRaw(m, [envelope(0, msg)], { "grpc-encoding": encoding });
          case "gzip_large":
            // 5 MiB once decompressed, a few KiB on the wire.
            return sendRaw(m, [envelope(1, gzipSync(encodeTyped(m.input, {}, [{ no: 999, wire: "bytes", value: new Uint8Array(5 * 1024 * 1024) }])))], gzip);
          case "connect":
            // An unknown encoding, or gzip that is not.
            if (isStreaming(m)) return sendConnect(m, { body: envelope(1, Buffer.from("{}")), raw: true, headers: { "connect-content-encoding": encoding } });
            return sendConnect(m, { body: "{}", headers: { "content-encoding": encoding.startsWith("gzip") ? "gzip" : encoding } });
        }
      },
      // The gRPC and Connect specs answer an encoding the server does not
      // support with UNIMPLEMENTED.
      { allow: ["unimplemented"] },
    );
  });

  it("a body that is not valid protobuf gets a proper status, over gRPC and Connect's binary encoding", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "raw/not-protobuf",
      "raw_frames",
      (m, p) => fc.tuple(notProtobuf(m, p), fc.constantFrom("grpc", "connect")),
      async (m, [bytes, protocol]) => {
        if (protocol === "grpc") return sendRaw(m, [envelope(0, bytes)]);
        if (isStreaming(m)) return sendConnect(m, { body: envelope(0, bytes), contentType: "application/connect+proto", raw: true });
        return sendConnect(m, { body: bytes, contentType: "application/proto" });
      },
    );
  });

  it("wrong content types, bad grpc-timeout and other odd headers get a proper status", { timeout: LONG }, async () => {
    const headers = fc.oneof(
      fc
        .constantFrom("application/grpc+proto", "application/grpc+xml", "application/grpc; charset=utf-8", "application/grpcx", "text/plain", "")
        .map((v) => ({ "content-type": v })),
      fc.constantFrom("abc", "1n", "0S", "-1S", "1H", "99999999S", "100000000H", "1", "S", "1.5S", "1m").map((v) => ({ "grpc-timeout": v })),
      fc.constantFrom<Record<string, string>>(
        { "grpc-accept-encoding": "\u00ff" },
        { "user-agent": "x".repeat(8000) },
        { "grpc-message-type": "x" },
        { "grpc-encoding": "" },
      ),
    );
    await fuzzEveryRpc(
      "raw/headers",
      "raw_frames",
      (m, p) => fc.tuple(binaryCase(m, p), headers),
      (m, [c, h]) => sendRaw(m, [envelope(0, encodeCase(m, c))], h),
      { allow: ["unimplemented", "http_415", "deadline_exceeded"] },
    );
  });

  it("a server stream with a grpc-timeout beyond 2^31 ms (valid in gRPC) stays open", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "raw/long-deadline",
      "raw_frames",
      () => fc.tuple(fc.integer({ min: 2_147_484, max: 99_999_999 }), fc.constantFrom("S", "M", "H")),
      async (m, [value, unit]) => [
        await clients.rawGrpc({
          path: pathOf(m),
          headers: { "grpc-timeout": `${value}${unit}` },
          body: [openingRequest(m)],
          ending: "end",
          streaming: true,
          holdMs: 300,
        }),
      ],
      { methods: METHODS.filter(isStreaming), runs: Math.max(2, Math.ceil(RUNS / 2)) },
    );
  });

  it("oversized request bodies that the server refuses leave the HTTP/2 connection serving", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "raw/oversized-bodies",
      "raw_frames",
      () =>
        fc.record({
          count: fc.integer({ min: 1, max: 3 }),
          megabytes: fc.integer({ min: 1, max: 12 }),
          refusal: fc.constantFrom("content_type", "unknown_method", "grpc_unknown_method"),
        }),
      async (m, { count, megabytes, refusal }) => {
        // A connection of its own, so that the shared one stays usable.
        const session = clients.newSession();
        try {
          const body = Buffer.alloc(megabytes * 1024 * 1024, 0x20);
          const unknown = `/${SERVICE}/NoSuchMethod`;
          const refuse = () =>
            refusal === "grpc_unknown_method"
              ? clients.rawGrpc({ session, path: unknown, headers: {}, body: [envelope(0, body)], ending: "end", streaming: false })
              : clients.h2CallOn(session, {
                  path: refusal === "unknown_method" ? unknown : pathOf(m),
                  headers: { "content-type": refusal === "content_type" ? "text/plain" : "application/json" },
                  body,
                });
          const refused = await Promise.all(Array.from({ length: count }, refuse));
          return [...refused, await nextCall(session)];
        } finally {
          session.close();
        }
      },
      // RST_STREAM ENHANCE_YOUR_CALM is how HTTP/2 says RESOURCE_EXHAUSTED.
      { methods: [PROBE], allow: ["http_415", "http_404", "unimplemented", "reset_11"] },
    );
  });

  it("1500 server streams opened and cancelled in a burst on one connection: the server keeps serving", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "raw/cancelled-streams",
      "raw_frames",
      // Node's HTTP/2 server closes a connection that resets streams in a
      // burst of about a thousand (its guard against "rapid reset" floods,
      // CVE-2023-44487): that connection may end with RST_STREAM/GOAWAY
      // INTERNAL_ERROR. Every other connection, and the server, go on.
      () => fc.constant(1500),
      async (m, count) => {
        const session = clients.newSession();
        const fresh = clients.newSession();
        try {
          const outcomes: Outcome[] = [];
          // Each stream is read to its first message, then cancelled.
          for (let i = 0; i < count && !session.closed && !session.destroyed; i++) {
            outcomes.push(await clients.rawGrpc({ session, path: pathOf(m), headers: {}, body: [openingRequest(m)], ending: "end", streaming: true }));
          }
          const flooded = await nextCall(session);
          const other = await nextCall(fresh);
          // The other connection must be served properly, whatever became
          // of the flooded one.
          return [...outcomes, flooded.code.startsWith("next_call_") ? { ...flooded, code: "flooded_connection_closed" } : flooded, other];
        } finally {
          session.close();
          fresh.close();
        }
      },
      { methods: METHODS.filter(isStreaming), runs: 1, allow: ["reset_2", "flooded_connection_closed"] },
    );
  });

  it("RST_STREAM in the middle of a request leaves the connection serving", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "raw/rst-stream",
      "raw_frames",
      (m, p) => fc.tuple(binaryCase(m, p), fc.constantFrom("headers_only", "partial_prefix", "partial_body", "whole_body"), fc.constantFrom(0, 1, 2, 7, 8, 11)),
      async (m, [c, at, rstCode]) => {
        const whole = envelope(0, encodeCase(m, c));
        const body = {
          headers_only: [],
          partial_prefix: [whole.subarray(0, 3)],
          partial_body: [whole.subarray(0, Math.max(5, whole.length - 1))],
          whole_body: [whole],
        }[at];
        const reset = await clients.rawGrpc({ path: pathOf(m), headers: {}, body, ending: "reset", rstCode, streaming: isStreaming(m) });
        return [reset, await nextCall()];
      },
      { allow: ["client_reset"] },
    );
  });

  it("HTTP/2 garbage on a raw connection does not stop the server", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "raw/connection-garbage",
      "raw_frames",
      () => connectionGarbage,
      async (_m, bytes) => {
        await clients.rawSocket(bytes, 20);
        return [await clients.grpcCall(pathOf(PROBE), new Uint8Array(), false)];
      },
      { methods: [PROBE], runs: RUNS * 4 },
    );
  });
});

describe("garbage authorization headers", () => {
  it("empty, malformed, huge, non-ASCII and control-character authorization headers get a proper status", { timeout: LONG }, async () => {
    await fuzzEveryRpc(
      "auth/garbage",
      "auth",
      () => fc.tuple(garbageAuthorization, fc.constantFrom("connect", "grpc", "raw_h1"), fc.uint8Array({ minLength: 1, maxLength: 16 })),
      async (m, [authorization, protocol, control]) => {
        if (protocol === "grpc") return sendRaw(m, [envelope(0, new Uint8Array())], { authorization });
        if (protocol === "connect") return sendConnect(m, { body: "{}", headers: { authorization } });
        return [await clients.rawH1(authorizationWithControlBytes(m, control))];
      },
      // Node's HTTP/1.1 parser refuses a header with control characters
      // (400) or larger than its limit (431) before any handler runs.
      { allow: ["http_400", "http_431"] },
    );
  });
});

// ------------------------------------------------------- afterwards

/** Every invariant the database must hold whatever the requests were; the
 * problems found, none when all hold. Columns and constraints are those of
 * migrations/*.sql. */
async function auditDatabase(db: pg.Pool): Promise<string[]> {
  const checks: [string, string][] = [
    [
      "an action in an impossible state",
      `SELECT id, status FROM actions WHERE
         (status = 'claimed' AND (claim_token IS NULL OR claimed_by IS NULL OR claim_deadline IS NULL OR finished_at IS NOT NULL))
      OR (status IN ('completed', 'failed', 'rejected', 'cancelled')
          AND (finished_at IS NULL OR claim_deadline IS NOT NULL OR ack_deadline IS NOT NULL OR claim_session IS NOT NULL))
      OR (status IN ('pending', 'approved')
          AND (claim_token IS NOT NULL OR claimed_by IS NOT NULL OR claim_deadline IS NOT NULL OR finished_at IS NOT NULL))
      OR status NOT IN ('pending', 'approved', 'claimed', 'completed', 'failed', 'rejected', 'cancelled')`,
    ],
    [
      "an action without exactly one action_enqueued event",
      `SELECT a.id, count(e.id) AS enqueued FROM (SELECT id FROM actions UNION ALL SELECT id FROM actions_archive) a
       LEFT JOIN events e ON e.action_id = a.id AND e.event_type = 'action_enqueued'
       GROUP BY a.id HAVING count(e.id) <> 1`,
    ],
    [
      "an event about an action that does not exist",
      `SELECT e.id, e.action_id, e.event_type FROM events e
       WHERE e.action_id IS NOT NULL
         AND NOT EXISTS (SELECT 1 FROM actions a WHERE a.id = e.action_id)
         AND NOT EXISTS (SELECT 1 FROM actions_archive a WHERE a.id = e.action_id)`,
    ],
    [
      "an event without an action that is not a coordinator event",
      `SELECT id, event_type FROM events
       WHERE action_id IS NULL AND event_type NOT IN ('coordinator_cycle', 'coordinator_paused', 'coordinator_resumed', 'policy_reloaded')`,
    ],
    [
      "an action whose attempt is not its number of action_claimed events",
      `SELECT a.id, a.attempt, count(e.id) AS claimed FROM actions a
       LEFT JOIN events e ON e.action_id = a.id AND e.event_type = 'action_claimed'
       GROUP BY a.id, a.attempt HAVING count(e.id) <> a.attempt`,
    ],
    [
      "an action whose action_completed events do not match its status",
      `SELECT a.id, a.status, count(e.id) AS completions FROM actions a
       LEFT JOIN events e ON e.action_id = a.id AND e.event_type = 'action_completed'
       GROUP BY a.id, a.status HAVING count(e.id) <> (CASE WHEN a.status = 'completed' THEN 1 ELSE 0 END)`,
    ],
  ];
  const problems: string[] = [];
  for (const [what, sql] of checks) {
    const { rows } = await db.query(sql);
    for (const row of rows.slice(0, 5)) problems.push(`${what}: ${JSON.stringify(row)}`);
    if (rows.length > 5) problems.push(`${what}: ... and ${rows.length - 5} more`);
  }
  return problems;
}

describe("after the fuzzing", () => {
  it("the server still answers health checks and runs an enqueue, claim and complete round trip", async () => {
    const health = await new Promise<Uint8Array>((resolve, reject) => {
      const identity = (b: Buffer) => b;
      clients.grpc.makeUnaryRequest(
        "/grpc.health.v1.Health/Check",
        identity,
        identity,
        Buffer.alloc(0),
        clients.metadata(),
        { deadline: Date.now() + 5000 },
        (error, response) => (error ? reject(error) : resolve(response!)),
      );
    });
    expect(fromBinary(HealthCheckResponseSchema, health).status).toBe(HealthCheckResponse_ServingStatus.SERVING);

    // Undo whatever pauses the fuzzing put in force.
    const stats = await call<{ pauses: { scope: unknown }[] }>("GetQueueStats", {});
    for (const pause of stats.pauses) await call("ResumeClaims", { scope: pause.scope, actor: who("human:fuzz-check"), reason: "after fuzzing" });

    const actionType = `fuzz_roundtrip_${Date.now()}`;
    const { action } = await call<{ action: { id: string; status: string } }>("EnqueueAction", {
      actionType,
      createdBy: who("human:fuzz-check"),
      payload: toStruct({ ok: true }),
    });
    expect(action.status).toBe(STATUS.approved);
    const { claim } = await call<{ claim: WireClaim | null }>("ClaimAction", { worker: who("worker:fuzz-check"), actionTypes: [actionType] });
    expect(claim?.action.id).toBe(action.id);
    const done = await call<{ action: { status: string } }>("CompleteAction", { id: action.id, claimToken: claim!.claimToken, resultRef: "round trip" });
    expect(done.action.status).toBe(STATUS.completed);

    // And over Connect JSON, on HTTP/1.1 and HTTP/2.
    const got = await sendConnect(METHODS.find((m) => m.name === "GetAction")!, { body: JSON.stringify({ id: action.id }) });
    expect(got.map((outcome) => outcome.code)).toEqual(["ok", "ok"]);
  });

  it("the database holds its invariants", async () => {
    expect(await auditDatabase(t.db)).toEqual([]);
  });
});
