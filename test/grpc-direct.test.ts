// The direct path for plain gRPC calls (src/transport/grpc-direct.ts, called
// from node-adapter.ts) against connect-es's own, over the wire: a real
// server, real PostgreSQL, raw HTTP/2 requests whose bytes are built here.
// The same request answered by the direct path and by connect-es (sent
// there by compression, or by a content type that connect-es matches and
// the direct path does not) must get the same status, message and details;
// a body that the direct path hands back to connect-es must be refused
// exactly as connect-es alone refuses it, with nothing written; and under
// load nothing is lost or written twice.
//
// Which path answered shows on the wire: every raw call here sends
// `grpc-accept-encoding: gzip`, which connect-es honours (its answer names
// `grpc-encoding: gzip`) and the direct path, by design, does not (it never
// compresses, which gRPC always allows). A call eligible for the direct
// path (exact content type, no grpc-encoding) answered with
// `grpc-encoding: gzip` was handed over to connect-es.
import http2 from "node:http2";
import { gunzipSync, gzipSync } from "node:zlib";
import * as grpc from "@grpc/grpc-js";
import { type MessageInitShape, create, fromBinary, toBinary, toJson } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ActionSchema } from "../gen/actionq/v1/action_pb.js";
import {
  EnqueueActionRequestSchema,
  EnqueueActionResponseSchema,
  StreamClaimsRequestSchema,
  StreamClaimsResponseSchema,
  WatchEventsRequestSchema,
  WatchEventsResponseSchema,
} from "../gen/actionq/v1/action_queue_service_pb.js";
import { type TestServer, snapshot, startTestServer } from "./support/harness.js";
import { type EnqueueResponse, errorInfoOf } from "./support/wire.js";
import { envelope } from "./fuzz/clients.js";
import { eventually, sleep } from "./support/wait.js";

/** Only how long a raw call may take before the test gives up on it:
 * ample for a loaded machine. */
const CALL_TIMEOUT_MS = 20_000;
const ENQUEUE = "/actionq.v1.ActionQueueService/EnqueueAction";
const { OK, INVALID_ARGUMENT, UNIMPLEMENTED, RESOURCE_EXHAUSTED, INTERNAL, UNKNOWN } = grpc.status;
/** connect-es takes content types in any case; the direct path only the
 * exact lower-case ones. With this one a call goes to connect-es alone. */
const CONNECT_ONLY = { "content-type": "application/GRPC" };
/** The events of a SAFE action, approved as it is enqueued. */
const APPROVED_ON_ENQUEUE = ["action_enqueued", "action_approved"];

interface Answer {
  /** HTTP status. */
  status: number;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  /** grpc-status, from the trailers (or the headers of a trailers-only answer). */
  code: number | undefined;
  /** grpc-message, percent-decoded. */
  message: string;
  /** grpc-status-details-bin as sent (base64). */
  details: string | undefined;
  /** The response messages, decompressed. */
  messages: Buffer[];
}

interface Request {
  headers: Record<string, string>;
  /** Written one at a time, `gapMs` apart (awaited), then the stream ends. */
  chunks: Buffer[];
  gapMs?: number;
}

/** Which path answered: the direct path never names a response encoding. */
function servedBy(answer: Answer): "direct" | "connect-es" {
  return answer.headers["grpc-encoding"] === undefined ? "direct" : "connect-es";
}

/** The messages of a gRPC response body; a compressed one is gunzipped. */
function messagesOf(body: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < body.length; ) {
    if (body.length - at < 5) throw new Error(`${body.length - at} stray bytes at the end of the response body`);
    const length = body.readUInt32BE(at + 1);
    const data = body.subarray(at + 5, at + 5 + length);
    if (data.length !== length) throw new Error("a truncated response message");
    out.push(body[at]! & 1 ? gunzipSync(data) : Buffer.from(data));
    at += 5 + length;
  }
  return out;
}

/** One EnqueueAction call on `session`, with the request bytes as given. */
function rawCall(session: http2.ClientHttp2Session, request: Request): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": ENQUEUE, te: "trailers", ...request.headers }, { endStream: false });
    let status = 0;
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const body: Buffer[] = [];
    const timer = setTimeout(() => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      reject(new Error(`no answer in ${CALL_TIMEOUT_MS} ms`));
    }, CALL_TIMEOUT_MS);
    stream.on("response", (h) => {
      headers = h;
      status = Number(h[":status"]);
    });
    stream.on("trailers", (h) => {
      trailers = h;
    });
    stream.on("data", (chunk: Buffer) => body.push(chunk));
    // The server may close the stream before the whole body was sent.
    stream.on("error", () => {});
    stream.on("close", () => {
      clearTimeout(timer);
      const source = trailers["grpc-status"] !== undefined ? trailers : headers;
      const value = (name: string) => (source[name] === undefined ? undefined : String(source[name]));
      try {
        resolve({
          status,
          headers,
          trailers,
          code: value("grpc-status") === undefined ? undefined : Number(value("grpc-status")),
          message: decodeURIComponent(value("grpc-message") ?? ""),
          details: value("grpc-status-details-bin"),
          messages: messagesOf(Buffer.concat(body)),
        });
      } catch (error) {
        reject(error);
      }
    });
    void (async () => {
      for (const chunk of request.chunks) {
        if (stream.closed || stream.destroyed) return;
        stream.write(chunk);
        if (request.gapMs !== undefined) await sleep(request.gapMs);
      }
      if (!stream.closed && !stream.destroyed) stream.end();
    })();
  });
}

function connect(address: string): { session: http2.ClientHttp2Session; events: string[] } {
  const events: string[] = [];
  const session = http2.connect(`http://${address}`);
  session.on("error", (error) => events.push(`error ${error.message}`));
  session.on("goaway", (code) => events.push(`GOAWAY ${code}`));
  return { session, events };
}

let serial = 0;
/** A fresh x-request-id. */
const requestId = (what: string) => `unary-${what}-${++serial}`;

/** Binary gRPC, accepting gzip answers (the marker of connect-es), with a
 * request id; `extra` added or overriding. */
function grpcHeaders(id: string, extra: Record<string, string> = {}): Record<string, string> {
  return { "content-type": "application/grpc", "grpc-accept-encoding": "gzip", "x-request-id": id, ...extra };
}

function enqueueBytes(fields: MessageInitShape<typeof EnqueueActionRequestSchema>): Buffer {
  return Buffer.from(toBinary(EnqueueActionRequestSchema, create(EnqueueActionRequestSchema, { createdBy: "human:unary", ...fields })));
}

/** The same request plain (direct path) and gzip-compressed (connect-es). */
async function plainAndGzip(session: http2.ClientHttp2Session, bytes: Buffer, what: string, extra: Record<string, string> = {}) {
  const plainId = requestId(`${what}-plain`);
  const gzipId = requestId(`${what}-gzip`);
  const plain = await rawCall(session, { headers: grpcHeaders(plainId, extra), chunks: [envelope(0, bytes)] });
  const gzip = await rawCall(session, { headers: grpcHeaders(gzipId, { "grpc-encoding": "gzip", ...extra }), chunks: [envelope(1, gzipSync(bytes))] });
  expect(servedBy(plain)).toBe("direct");
  expect(servedBy(gzip)).toBe("connect-es");
  return { plain, gzip, plainId, gzipId };
}

function enqueued(answer: Answer) {
  expect(answer.messages).toHaveLength(1);
  return fromBinary(EnqueueActionResponseSchema, answer.messages[0]!);
}

/** An Action as JSON without what differs between two enqueues of one
 * request: its id and times. */
function comparable(response: ReturnType<typeof enqueued>): Record<string, unknown> {
  const json = toJson(ActionSchema, response.action!) as Record<string, unknown>;
  // The external id is derived from the id.
  for (const key of Object.keys(json)) if (key === "id" || key === "externalId" || key.endsWith("Time")) delete json[key];
  return json;
}

/** The ErrorInfo in a grpc-status-details-bin value. */
function errorInfoIn(details: string) {
  const metadata = new grpc.Metadata();
  metadata.set("grpc-status-details-bin", Buffer.from(details, "base64"));
  return errorInfoOf({ metadata } as grpc.ServiceError);
}

/** Actions by id, with how many action_enqueued events each has and the
 * types of all its events in order. */
async function storedActions(server: TestServer, ids: string[]) {
  const { rows } = await server.db.query<{
    id: string;
    action_type: string;
    target_ref: string;
    payload: unknown;
    status: string;
    enqueued: number;
    events: string[];
  }>(
    `SELECT a.id::text, a.action_type, a.target_ref, a.payload, a.status,
            (SELECT count(*)::int FROM events e WHERE e.action_id = a.id AND e.event_type = 'action_enqueued') AS enqueued,
            (SELECT coalesce(array_agg(e.event_type ORDER BY e.id), '{}') FROM events e WHERE e.action_id = a.id) AS events
       FROM actions a WHERE a.id = ANY($1::bigint[]) ORDER BY a.id`,
    [ids],
  );
  return rows;
}

/** Asserts a refusal: the status, never INTERNAL or UNKNOWN, no message. */
function expectRefused(answer: Answer, code: grpc.status): void {
  expect(answer.status).toBe(200);
  expect(grpc.status[answer.code!]).toBe(grpc.status[code]);
  expect([INTERNAL, UNKNOWN]).not.toContain(answer.code);
  expect(answer.messages).toHaveLength(0);
}

let t: TestServer;
let h2: ReturnType<typeof connect>;

beforeAll(async () => {
  // A long ack timeout: a claim back in the queue soon after its stream was
  // cancelled was released by the cancel, not by the timeout.
  t = await startTestServer({ ACTIONQ_ACK_TIMEOUT_SECONDS: "60" });
  h2 = connect(t.address);
});

afterAll(async () => {
  h2?.session.close();
  await t?.close();
});

describe("a good request, direct path and connect-es", () => {
  it("EnqueueAction plain (direct) and gzip-compressed (connect-es) answer alike and both write the action", async () => {
    const payload = { n: 1, s: "x", nested: { ok: true, list: [1, "two", null] } };
    const bytes = enqueueBytes({ actionType: "unary_alike", targetRef: "node-7", payload });
    const { plain, gzip, plainId, gzipId } = await plainAndGzip(h2.session, bytes, "good");

    for (const [answer, id] of [
      [plain, plainId],
      [gzip, gzipId],
    ] as const) {
      expect(answer.status).toBe(200);
      expect(answer.headers["content-type"]).toBe("application/grpc+proto");
      expect(answer.trailers["grpc-status"]).toBe("0");
      expect(answer.code).toBe(OK);
      expect(answer.message).toBe("");
      expect(answer.details).toBeUndefined();
      // The logging interceptor echoes a well-formed x-request-id.
      expect(answer.headers["x-request-id"]).toBe(id);
      const response = enqueued(answer);
      expect(response.created).toBe(true);
      expect(response.action?.actionType).toBe("unary_alike");
      expect(response.action?.targetRef).toBe("node-7");
      expect(response.action?.payload).toEqual(payload);
    }
    const a = enqueued(plain);
    const b = enqueued(gzip);
    expect(a.action!.id).not.toBe(b.action!.id);
    expect(comparable(a)).toEqual(comparable(b));

    const rows = await storedActions(t, [String(a.action!.id), String(b.action!.id)]);
    expect(rows).toHaveLength(2);
    for (const row of rows) {
      // A SAFE action is approved as it is enqueued: two events.
      expect(row).toMatchObject({ action_type: "unary_alike", target_ref: "node-7", payload, status: "approved", enqueued: 1, events: APPROVED_ON_ENQUEUE });
    }
  });

  it("application/grpc+proto is served directly too; without an x-request-id both paths make one up and send it back", async () => {
    const bytes = enqueueBytes({ actionType: "unary_no_id" });
    const headers = { "content-type": "application/grpc+proto", "grpc-accept-encoding": "gzip" };
    const plain = await rawCall(h2.session, { headers, chunks: [envelope(0, bytes)] });
    const gzip = await rawCall(h2.session, { headers: { ...headers, "grpc-encoding": "gzip" }, chunks: [envelope(1, gzipSync(bytes))] });
    expect(servedBy(plain)).toBe("direct");
    expect(servedBy(gzip)).toBe("connect-es");
    for (const answer of [plain, gzip]) {
      expect(answer.code).toBe(OK);
      expect(answer.headers["content-type"]).toBe("application/grpc+proto");
      expect(answer.headers["x-request-id"]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(enqueued(answer).action?.actionType).toBe("unary_no_id");
    }
    expect(plain.headers["x-request-id"]).not.toBe(gzip.headers["x-request-id"]);
  });
});

describe("a request the service refuses", () => {
  it("an empty action_type is INVALID_ARGUMENT with the same message and details either way, and writes nothing", async () => {
    const before = await snapshot(t.db);
    const bytes = enqueueBytes({ actionType: "", targetRef: "node-1" });
    const { plain, gzip } = await plainAndGzip(h2.session, bytes, "invalid");
    for (const answer of [plain, gzip]) {
      expectRefused(answer, INVALID_ARGUMENT);
      expect(answer.headers["content-type"]).toBe("application/grpc+proto");
      expect(answer.message).toContain("action_type");
      expect(answer.details).toBeDefined();
      expect(errorInfoIn(answer.details!)?.metadata.field).toBe("action_type");
      // The call failed before the logging interceptor set it.
      expect(answer.headers["x-request-id"]).toBeUndefined();
    }
    expect(plain.message).toBe(gzip.message);
    expect(Buffer.from(plain.details!, "base64")).toEqual(Buffer.from(gzip.details!, "base64"));
    expect(await snapshot(t.db)).toBe(before);
  });
});

describe("bodies the direct path hands over to connect-es", () => {
  const good = enqueueBytes({ actionType: "unary_malformed", targetRef: "node-2" });
  // Each body and what connect-es answers it with; each is also sent to
  // connect-es alone, which must answer the same.
  const cases: { name: string; body: Buffer; code: grpc.status; message: string }[] = [
    {
      name: "two envelopes in one body",
      body: Buffer.concat([envelope(0, good), envelope(0, good)]),
      code: UNIMPLEMENTED,
      message: "protocol error: received extra input message for unary method",
    },
    {
      name: "a truncated envelope (declared length beyond the data)",
      body: envelope(0, good, good.length + 10),
      code: INVALID_ARGUMENT,
      message: "protocol error: incomplete envelope",
    },
    { name: "less than an envelope header", body: Buffer.from([0, 0, 0]), code: INVALID_ARGUMENT, message: "protocol error: incomplete envelope" },
    {
      name: "a payload that is not protobuf",
      body: envelope(0, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])),
      code: INVALID_ARGUMENT,
      message: "parse binary: ",
    },
    {
      name: "the compressed flag without grpc-encoding",
      body: envelope(1, gzipSync(good)),
      code: INVALID_ARGUMENT,
      message: "received compressed envelope, but do not know how to decompress",
    },
    { name: "no envelope at all", body: Buffer.alloc(0), code: UNIMPLEMENTED, message: "protocol error: missing input message for unary method" },
  ];

  for (const c of cases) {
    it(`${c.name}: ${grpc.status[c.code]}, as connect-es alone answers it; nothing written`, async () => {
      const before = await snapshot(t.db);
      const chunks = c.body.length > 0 ? [c.body] : [];
      const handed = await rawCall(h2.session, { headers: grpcHeaders(requestId("malformed")), chunks });
      const alone = await rawCall(h2.session, { headers: grpcHeaders(requestId("malformed-connect"), CONNECT_ONLY), chunks });
      // Eligible for the direct path, answered by connect-es: handed over.
      expect(servedBy(handed)).toBe("connect-es");
      expect(servedBy(alone)).toBe("connect-es");
      for (const answer of [handed, alone]) {
        expectRefused(answer, c.code);
        expect(answer.message.startsWith(c.message)).toBe(true);
      }
      expect(handed.message).toBe(alone.message);
      expect(handed.details).toBe(alone.details);
      expect(handed.headers["content-type"]).toBe(alone.headers["content-type"]);
      expect(await snapshot(t.db)).toBe(before);
    });
  }

  it("the same bodies in 2-byte DATA frames are refused the same way", async () => {
    const before = await snapshot(t.db);
    for (const c of cases.filter((c) => c.body.length > 0)) {
      const chunks = Array.from({ length: Math.ceil(c.body.length / 2) }, (_, i) => c.body.subarray(i * 2, i * 2 + 2));
      const answer = await rawCall(h2.session, { headers: grpcHeaders(requestId("malformed-trickle")), chunks, gapMs: 1 });
      expect(servedBy(answer)).toBe("connect-es");
      expectRefused(answer, c.code);
      expect(answer.message.startsWith(c.message)).toBe(true);
    }
    expect(await snapshot(t.db)).toBe(before);
  });
});

describe("a body over ACTIONQ_MAX_MESSAGE_BYTES", () => {
  // The smallest value the setting takes is 1024.
  const LIMIT = 2048;
  let small: TestServer;
  let conn: ReturnType<typeof connect>;

  beforeAll(async () => {
    small = await startTestServer({ ACTIONQ_MAX_MESSAGE_BYTES: String(LIMIT) });
    conn = connect(small.address);
  });
  afterAll(async () => {
    conn?.session.close();
    await small?.close();
  });

  /** An EnqueueAction of exactly `size` bytes. */
  function ofSize(size: number): Buffer {
    for (let pad = Math.max(0, size - 120); pad < size; pad++) {
      const bytes = enqueueBytes({ actionType: "unary_big", payload: { blob: "b".repeat(pad) } });
      if (bytes.length === size) return bytes;
      if (bytes.length > size) break;
    }
    throw new Error(`no request of ${size} bytes`);
  }

  const inChunks = (bytes: Buffer, size: number) => Array.from({ length: Math.ceil(bytes.length / size) }, (_, i) => bytes.subarray(i * size, (i + 1) * size));

  it("a message of exactly the limit, in several DATA frames, is served directly", async () => {
    const answer = await rawCall(conn.session, { headers: grpcHeaders(requestId("at-limit")), chunks: inChunks(envelope(0, ofSize(LIMIT)), 500), gapMs: 2 });
    expect(servedBy(answer)).toBe("direct");
    expect(answer.code).toBe(OK);
    expect(enqueued(answer).action?.actionType).toBe("unary_big");
  });

  it("one byte more, in several DATA frames: RESOURCE_EXHAUSTED naming the setting, as connect-es alone answers; nothing written; the connection still serves", async () => {
    const before = await snapshot(small.db);
    const over = envelope(0, ofSize(LIMIT + 1));
    const handed = await rawCall(conn.session, { headers: grpcHeaders(requestId("over")), chunks: inChunks(over, 500), gapMs: 2 });
    const alone = await rawCall(conn.session, { headers: grpcHeaders(requestId("over-connect"), CONNECT_ONLY), chunks: inChunks(over, 500), gapMs: 2 });
    const far = await rawCall(conn.session, { headers: grpcHeaders(requestId("over-4x")), chunks: inChunks(envelope(0, ofSize(4 * LIMIT)), 1000), gapMs: 2 });
    expect(servedBy(handed)).toBe("connect-es");
    expect(servedBy(alone)).toBe("connect-es");
    expect(servedBy(far)).toBe("connect-es");
    for (const answer of [handed, alone, far]) {
      expectRefused(answer, RESOURCE_EXHAUSTED);
      expect(answer.message).toContain("ACTIONQ_MAX_MESSAGE_BYTES");
    }
    expect(handed.message).toBe(`message size ${LIMIT + 1} is larger than ACTIONQ_MAX_MESSAGE_BYTES (${LIMIT} bytes)`);
    expect(alone.message).toBe(handed.message);
    expect(far.message).toBe(`message size ${4 * LIMIT} is larger than ACTIONQ_MAX_MESSAGE_BYTES (${LIMIT} bytes)`);
    expect(await snapshot(small.db)).toBe(before);

    // The same connection serves the next call, directly.
    const next = await rawCall(conn.session, {
      headers: grpcHeaders(requestId("after-over")),
      chunks: [envelope(0, enqueueBytes({ actionType: "unary_after_big" }))],
    });
    expect(servedBy(next)).toBe("direct");
    expect(next.code).toBe(OK);
    expect(enqueued(next).action?.actionType).toBe("unary_after_big");
    expect(conn.session.closed || conn.session.destroyed).toBe(false);
    expect(conn.events).toEqual([]);
  });

  it("two envelopes each within the limit, together over it: handed over mid-body, connect-es reads the rest and refuses the second message", async () => {
    // The direct path stops reading after LIMIT + 5 bytes; the second
    // envelope ends well beyond that, in what connect-es reads itself.
    const before = await snapshot(small.db);
    const one = envelope(0, ofSize(LIMIT - 100));
    const body = Buffer.concat([one, one]);
    const handed = await rawCall(conn.session, { headers: grpcHeaders(requestId("two-over")), chunks: inChunks(body, 500), gapMs: 2 });
    const alone = await rawCall(conn.session, { headers: grpcHeaders(requestId("two-over-connect"), CONNECT_ONLY), chunks: inChunks(body, 500), gapMs: 2 });
    expect(servedBy(handed)).toBe("connect-es");
    for (const answer of [handed, alone]) {
      expectRefused(answer, UNIMPLEMENTED);
      expect(answer.message).toBe("protocol error: received extra input message for unary method");
    }
    expect(await snapshot(small.db)).toBe(before);
  });

  it("gzip that inflates past the limit is RESOURCE_EXHAUSTED too (connect-es); nothing written", async () => {
    const before = await snapshot(small.db);
    const answer = await rawCall(conn.session, {
      headers: grpcHeaders(requestId("over-gzip"), { "grpc-encoding": "gzip" }),
      chunks: [envelope(1, gzipSync(ofSize(4 * LIMIT)))],
    });
    expectRefused(answer, RESOURCE_EXHAUSTED);
    expect(answer.message).toContain("ACTIONQ_MAX_MESSAGE_BYTES");
    expect(await snapshot(small.db)).toBe(before);
  });
});

describe("a body in many small DATA frames", () => {
  it("three bytes at a time is served by the direct path", async () => {
    const bytes = enqueueBytes({ actionType: "unary_trickle", targetRef: "node-9", payload: { note: "sent a few bytes at a time" } });
    const body = envelope(0, bytes);
    const chunks = Array.from({ length: Math.ceil(body.length / 3) }, (_, i) => body.subarray(i * 3, i * 3 + 3));
    expect(chunks.length).toBeGreaterThan(20);
    const answer = await rawCall(h2.session, { headers: grpcHeaders(requestId("trickle")), chunks, gapMs: 1 });
    expect(servedBy(answer)).toBe("direct");
    expect(answer.code).toBe(OK);
    const response = enqueued(answer);
    expect(response.action?.actionType).toBe("unary_trickle");
    expect(response.action?.payload).toEqual({ note: "sent a few bytes at a time" });
    const rows = await storedActions(t, [String(response.action!.id)]);
    expect(rows).toMatchObject([{ action_type: "unary_trickle", target_ref: "node-9", enqueued: 1, events: APPROVED_ON_ENQUEUE }]);
  });

  it("a message larger than an HTTP/2 frame, in 1 KiB writes, is served by the direct path", async () => {
    const blob = "z".repeat(40_000);
    const body = envelope(0, enqueueBytes({ actionType: "unary_large", payload: { blob } }));
    const chunks = Array.from({ length: Math.ceil(body.length / 1024) }, (_, i) => body.subarray(i * 1024, (i + 1) * 1024));
    const answer = await rawCall(h2.session, { headers: grpcHeaders(requestId("large")), chunks, gapMs: 1 });
    expect(servedBy(answer)).toBe("direct");
    expect(answer.code).toBe(OK);
    expect(enqueued(answer).action?.payload).toEqual({ blob });
  });
});

describe("grpc-timeout", () => {
  const bytes = enqueueBytes({ actionType: "unary_timeout" });

  for (const value of ["abc", "1x", "123456789S", "-1S", "1.5S", "S"]) {
    it(`"${value}" is INVALID_ARGUMENT, direct and via connect-es alike; nothing written`, async () => {
      const before = await snapshot(t.db);
      const { plain, gzip } = await plainAndGzip(h2.session, bytes, "bad-timeout", { "grpc-timeout": value });
      for (const answer of [plain, gzip]) {
        expectRefused(answer, INVALID_ARGUMENT);
        expect(answer.message).toBe(`protocol error: invalid grpc timeout value: ${value}`);
      }
      expect(await snapshot(t.db)).toBe(before);
    });
  }

  for (const value of ["5S", "3000m", "2000000u", "1M", "2147483S"]) {
    it(`"${value}" on a normal call: served directly, OK`, async () => {
      const answer = await rawCall(h2.session, { headers: grpcHeaders(requestId("timeout-ok"), { "grpc-timeout": value }), chunks: [envelope(0, bytes)] });
      expect(servedBy(answer)).toBe("direct");
      expect(answer.code).toBe(OK);
      expect(enqueued(answer).action?.actionType).toBe("unary_timeout");
    });
  }

  it('"99999999S" (valid in gRPC, beyond what a Node timer holds) is clamped, not refused, on either path', async () => {
    const headers = { "grpc-timeout": "99999999S" };
    const direct = await rawCall(h2.session, { headers: grpcHeaders(requestId("timeout-long"), headers), chunks: [envelope(0, bytes)] });
    const alone = await rawCall(h2.session, {
      headers: grpcHeaders(requestId("timeout-long-connect"), { ...headers, ...CONNECT_ONLY }),
      chunks: [envelope(0, bytes)],
    });
    expect(servedBy(direct)).toBe("direct");
    for (const answer of [direct, alone]) {
      expect(answer.code).toBe(OK);
      expect(enqueued(answer).action?.actionType).toBe("unary_timeout");
    }
  });
});

describe("grpc-js under load", () => {
  it("200 concurrent EnqueueAction calls all succeed and write 200 actions with one action_enqueued event each", async () => {
    const N = 200;
    const count = async () => (await t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM actions")).rows[0]!.n;
    const before = await count();
    const responses = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        t.grpc.unary<EnqueueResponse>("EnqueueAction", { actionType: "unary_burst", createdBy: "human:burst", targetRef: `burst-${i}` }),
      ),
    );
    expect(responses.every((r) => r.created && r.action.actionType === "unary_burst")).toBe(true);
    expect(responses.map((r) => r.action.targetRef)).toEqual(Array.from({ length: N }, (_, i) => `burst-${i}`));
    const ids = responses.map((r) => r.action.id);
    expect(new Set(ids).size).toBe(N);

    expect((await count()) - before).toBe(N);
    const rows = await storedActions(t, ids);
    expect(new Set(rows.map((row) => row.id))).toEqual(new Set(ids));
    const wrong = rows.filter((row) => row.action_type !== "unary_burst" || row.enqueued !== 1 || row.events.join() !== APPROVED_ON_ENQUEUE.join());
    expect(wrong).toEqual([]);
    const { rows: typed } = await t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM actions WHERE action_type = 'unary_burst'");
    expect(typed[0]!.n).toBe(N);
  });
});

/** A server-streaming call: the first `count` messages, then the stream is
 * cancelled; or, with fewer, whatever came before the server ended it. */
function rawStream(session: http2.ClientHttp2Session, path: string, headers: Record<string, string>, body: Buffer, count: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": path, te: "trailers", ...headers });
    let answer: Answer = { status: 0, headers: {}, trailers: {}, code: undefined, message: "", details: undefined, messages: [] };
    let buffered = Buffer.alloc(0);
    const timer = setTimeout(() => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      reject(new Error(`${answer.messages.length} of ${count} messages in ${CALL_TIMEOUT_MS} ms`));
    }, CALL_TIMEOUT_MS);
    stream.on("response", (h) => {
      answer = { ...answer, headers: h, status: Number(h[":status"]) };
    });
    stream.on("trailers", (h) => {
      answer = { ...answer, trailers: h, code: Number(h["grpc-status"]), message: decodeURIComponent(String(h["grpc-message"] ?? "")) };
    });
    stream.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 5 && buffered.length >= 5 + buffered.readUInt32BE(1)) {
        const length = buffered.readUInt32BE(1);
        answer.messages.push(buffered[0]! & 1 ? gunzipSync(buffered.subarray(5, 5 + length)) : Buffer.from(buffered.subarray(5, 5 + length)));
        buffered = buffered.subarray(5 + length);
      }
      if (answer.messages.length >= count) stream.close(http2.constants.NGHTTP2_CANCEL);
    });
    stream.on("error", () => {});
    stream.on("close", () => {
      clearTimeout(timer);
      if (answer.code === undefined && answer.headers["grpc-status"] !== undefined) {
        answer = { ...answer, code: Number(answer.headers["grpc-status"]), message: decodeURIComponent(String(answer.headers["grpc-message"] ?? "")) };
      }
      resolve(answer);
    });
    stream.end(body);
  });
}

describe("server streams", () => {
  const WATCH = "/actionq.v1.ActionQueueService/WatchEvents";
  const CLAIMS = "/actionq.v1.ActionQueueService/StreamClaims";

  it("WatchEvents served directly and by connect-es (gzip) delivers the same events, and two direct watchers get the same bytes", async () => {
    const { rows } = await t.db.query<{ max: string }>("SELECT coalesce(max(id), 0)::text AS max FROM events");
    const afterId = BigInt(rows[0]!.max);
    for (let i = 0; i < 3; i++) {
      const answer = await rawCall(h2.session, {
        headers: grpcHeaders(requestId("watch-seed")),
        chunks: [envelope(0, enqueueBytes({ actionType: "stream_watch", targetRef: `w-${i}` }))],
      });
      expect(answer.code).toBe(OK);
    }
    const request = Buffer.from(toBinary(WatchEventsRequestSchema, create(WatchEventsRequestSchema, { afterId })));
    // The first message is a heartbeat; then 6 events (enqueued and approved, three times).
    const count = 7;
    const [first, second, viaConnect] = await Promise.all([
      rawStream(h2.session, WATCH, grpcHeaders(requestId("watch-a")), envelope(0, request), count),
      rawStream(h2.session, WATCH, grpcHeaders(requestId("watch-b")), envelope(0, request), count),
      rawStream(h2.session, WATCH, grpcHeaders(requestId("watch-c"), { "grpc-encoding": "gzip" }), envelope(1, gzipSync(request)), count),
    ]);
    expect(servedBy(first)).toBe("direct");
    expect(servedBy(viaConnect)).toBe("connect-es");
    const events = (answer: Answer) =>
      answer.messages
        .map((bytes) => fromBinary(WatchEventsResponseSchema, bytes))
        .filter((message) => message.kind.case === "event")
        .map((message) => toJson(WatchEventsResponseSchema, message));
    expect(events(first)).toHaveLength(6);
    expect(events(first).map((e) => (e as { event: { eventType: string } }).event.eventType)).toEqual(Array(3).fill(APPROVED_ON_ENQUEUE).flat());
    expect(events(viaConnect)).toEqual(events(first));
    // Event messages (not the heartbeat, which carries the time) are byte-identical.
    expect(second.messages.slice(1)).toEqual(first.messages.slice(1));
  });

  it("batched WatchEvents (max_batch) served directly and by connect-es (gzip) delivers the same batches, and caught-up direct watchers get the same bytes", async () => {
    const { rows } = await t.db.query<{ max: string }>("SELECT coalesce(max(id), 0)::text AS max FROM events");
    const afterId = BigInt(rows[0]!.max);
    const batchesIn = (answer: Answer) =>
      answer.messages
        .map((bytes) => fromBinary(WatchEventsResponseSchema, bytes))
        .filter((message) => message.kind.case !== "heartbeat")
        // A bare event (or anything else) shows as its case, never as a batch.
        .map((message) => (message.kind.case === "events" ? message.kind.value.events.map((event) => event.eventType) : [`${message.kind.case}`]));
    // Live: two watchers at the end of the log, then three actions in one commit.
    // The previous test's watchers are gone first, so that the two counted
    // below are these, following the log live.
    await eventually(() => t.server.stats.watchers === 0, "no watchers left from the previous test");
    const live = Buffer.from(toBinary(WatchEventsRequestSchema, create(WatchEventsRequestSchema, { afterId, maxBatch: 10 })));
    const watching = Promise.all([
      rawStream(h2.session, WATCH, grpcHeaders(requestId("batch-live-a")), envelope(0, live), 2),
      rawStream(h2.session, WATCH, grpcHeaders(requestId("batch-live-b")), envelope(0, live), 2),
    ]);
    await eventually(() => t.server.stats.watchers === 2, "both watchers following the log");
    await t.client.enqueueActions({ requests: [0, 1, 2].map((i) => ({ actionType: "stream_watch_batch", createdBy: "human:tester", targetRef: `b-${i}` })) });
    const [liveA, liveB] = await watching;
    expect(servedBy(liveA)).toBe("direct");
    expect(batchesIn(liveA)).toEqual([Array(3).fill(APPROVED_ON_ENQUEUE).flat()]);
    expect(liveB.messages[1]).toEqual(liveA.messages[1]);
    // Replayed: batches of four, then two, on either path.
    const replay = Buffer.from(toBinary(WatchEventsRequestSchema, create(WatchEventsRequestSchema, { afterId, maxBatch: 4 })));
    const [direct, viaConnect] = await Promise.all([
      rawStream(h2.session, WATCH, grpcHeaders(requestId("batch-replay")), envelope(0, replay), 3),
      rawStream(h2.session, WATCH, grpcHeaders(requestId("batch-replay-c"), { "grpc-encoding": "gzip" }), envelope(1, gzipSync(replay)), 3),
    ]);
    expect(servedBy(direct)).toBe("direct");
    expect(servedBy(viaConnect)).toBe("connect-es");
    expect(batchesIn(direct).map((batch) => batch.length)).toEqual([4, 2]);
    expect(viaConnect.messages.slice(1)).toEqual(direct.messages.slice(1));
  });

  it("a StreamClaims request that is not protobuf is refused as connect-es refuses it, and claims nothing", async () => {
    const before = await snapshot(t.db);
    const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]);
    const direct = await rawStream(h2.session, CLAIMS, grpcHeaders(requestId("claims-garbage")), envelope(0, garbage), 1);
    const alone = await rawStream(h2.session, CLAIMS, grpcHeaders(requestId("claims-garbage-connect"), CONNECT_ONLY), envelope(0, garbage), 1);
    expect(direct.code).toBe(INVALID_ARGUMENT);
    expect(direct.message).toBe(alone.message);
    expect(alone.code).toBe(INVALID_ARGUMENT);
    expect(await snapshot(t.db)).toBe(before);
  });

  it("a claim stream served directly delivers a claim, and cancelling it returns the unacknowledged claim to the queue", async () => {
    const answer = await rawCall(h2.session, {
      headers: grpcHeaders(requestId("claim-seed")),
      chunks: [envelope(0, enqueueBytes({ actionType: "stream_direct_claim", targetRef: "c-1" }))],
    });
    const id = enqueued(answer).action!.id;
    const request = Buffer.from(
      toBinary(StreamClaimsRequestSchema, create(StreamClaimsRequestSchema, { worker: "direct-worker", actionTypes: ["stream_direct_claim"], maxInFlight: 1 })),
    );
    // The heartbeat that opens the stream, then the claim.
    const stream = await rawStream(h2.session, CLAIMS, grpcHeaders(requestId("claims")), envelope(0, request), 2);
    expect(servedBy(stream)).toBe("direct");
    const claim = fromBinary(StreamClaimsResponseSchema, stream.messages[1]!);
    expect(claim.kind.case).toBe("claim");
    expect(claim.kind.case === "claim" && claim.kind.value.action?.id).toBe(id);
    const status = async () => (await t.db.query<{ status: string }>("SELECT status FROM actions WHERE id = $1", [String(id)])).rows[0]!.status;
    // Well under the 60 s ack timeout: the cancel released it.
    await eventually(async () => (await status()) === "approved", "the claim back in the queue", 15_000);
    const { rows } = await t.db.query<{ event_type: string }>("SELECT event_type FROM events WHERE action_id = $1 ORDER BY id", [String(id)]);
    expect(rows.map((row) => row.event_type)).toEqual([...APPROVED_ON_ENQUEUE, "action_claimed", "claim_released"]);
  });
});
