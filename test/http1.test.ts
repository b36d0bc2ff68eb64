// HTTP/1.1 on the gRPC port, spoken with Node's own http module (and curl
// once): Connect with JSON and binary bodies, unary and server streams,
// Connect's error JSON, gRPC-Web framed by hand, grpc-js on the same port at
// the same time, and CORS when ACTIONQ_CORS_ORIGINS allows browsers in.
import { execFile } from "node:child_process";
import http from "node:http";
import { promisify } from "node:util";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { AnySchema, anyUnpack } from "@bufbuild/protobuf/wkt";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ActionQueueService,
  EnqueueActionRequestSchema,
  EnqueueActionResponseSchema,
  GetActionRequestSchema,
  GetActionResponseSchema,
  WatchEventsRequestSchema,
  WatchEventsResponseSchema,
} from "../gen/actionq/v1/action_queue_service_pb.js";
import { ActionStatus } from "../gen/actionq/v1/action_pb.js";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { type TestServer, startTestServer } from "./support/harness.js";
import { type WireAction, enqueue, getAction } from "./support/wire.js";
import { ConnectStream, Inbox } from "./support/streams.js";

const execFileAsync = promisify(execFile);
const SERVICE = "/actionq.v1.ActionQueueService";

interface H1Response {
  status: number;
  httpVersion: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One request on a fresh HTTP/1.1 connection. */
function h1(address: string, options: { method?: string; path: string; headers?: Record<string, string>; body?: string | Uint8Array }): Promise<H1Response> {
  const [host, port] = address.split(":");
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host, port: Number(port), method: options.method ?? "POST", path: options.path, headers: options.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => resolve({ status: res.statusCode!, httpVersion: res.httpVersion, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      },
    );
    req.setTimeout(20_000, () => req.destroy(new Error(`no answer to ${options.path} within 20 s`)));
    req.on("error", reject);
    req.end(options.body);
  });
}

/** A Connect unary call with a JSON body. */
async function connectJson(address: string, method: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await h1(address, {
    path: `${SERVICE}/${method}`,
    headers: { "content-type": "application/json", "connect-protocol-version": "1", ...headers },
    body: JSON.stringify(body),
  });
  return { ...res, json: JSON.parse(res.body.toString("utf8")) as Record<string, unknown> };
}

/** A length-prefixed message, as Connect streams and gRPC-Web frame them. */
function frame(flags: number, payload: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

interface Frame {
  flags: number;
  payload: Buffer;
}

/** Splits complete frames off the front of `buffer`; returns the rest. */
function takeFrames(buffer: Buffer, into: Frame[]): Buffer {
  let offset = 0;
  while (buffer.length - offset >= 5) {
    const length = buffer.readUInt32BE(offset + 1);
    if (buffer.length - offset - 5 < length) break;
    into.push({ flags: buffer.readUInt8(offset), payload: buffer.subarray(offset + 5, offset + 5 + length) });
    offset += 5 + length;
  }
  return buffer.subarray(offset);
}

/** A Connect server stream with JSON messages, over one HTTP/1.1 request,
 * recording each message as it arrives. */
class H1ConnectStream extends Inbox<Record<string, unknown>> {
  readonly response: Promise<http.IncomingMessage>;
  /** The end-of-stream message, once it came. */
  end: Record<string, unknown> | undefined;
  private readonly req: http.ClientRequest;

  constructor(address: string, method: string, request: unknown) {
    super();
    const [host, port] = address.split(":");
    this.req = http.request({
      host,
      port: Number(port),
      method: "POST",
      path: `${SERVICE}/${method}`,
      headers: { "content-type": "application/connect+json", "connect-protocol-version": "1" },
      agent: false,
    });
    this.response = new Promise((resolve, reject) => {
      this.req.on("response", (res) => {
        resolve(res);
        let pending: Buffer = Buffer.alloc(0);
        res.on("data", (chunk: Buffer) => {
          const frames: Frame[] = [];
          pending = takeFrames(Buffer.concat([pending, chunk]), frames);
          for (const f of frames) {
            const json = JSON.parse(f.payload.toString("utf8")) as Record<string, unknown>;
            if (f.flags & 2) this.end = json;
            else this.push(json);
          }
        });
        res.on("end", () => this.finish(this.end && "error" in this.end ? new Error(JSON.stringify(this.end.error)) : undefined));
        res.on("error", (error) => this.finish(error));
      });
      this.req.on("error", (error) => {
        reject(error);
        this.finish(error);
      });
    });
    this.req.end(frame(0, Buffer.from(JSON.stringify(request))));
  }

  close(): void {
    this.req.destroy();
  }
}

/** A google.rpc.Status (code 1, message 2, details 3) in binary: its ErrorInfo. */
function errorInfoInStatus(bytes: Uint8Array) {
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 3 && wireType === WireType.LengthDelimited) {
      const info = anyUnpack(fromBinary(AnySchema, reader.bytes()), ErrorInfoSchema);
      if (info) return info;
    } else {
      reader.skip(wireType);
    }
  }
  return undefined;
}

interface ConnectErrorJson {
  code: string;
  message: string;
  details: { type: string; value: string; debug: { reason: string; domain: string; metadata: Record<string, string> } }[];
}

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.close();
});

describe("Connect over HTTP/1.1", () => {
  it("answers a unary call with a JSON body, and echoes the request id", async () => {
    const created = await connectJson(
      t.address,
      "EnqueueAction",
      { actionType: "h1_json", createdBy: "human:h1", payload: { n: 1 } },
      { "x-request-id": "h1-req-1" },
    );
    expect(created.status).toBe(200);
    expect(created.httpVersion).toBe("1.1");
    expect(created.headers["content-type"]).toBe("application/json");
    expect(created.headers["x-request-id"]).toBe("h1-req-1");
    const action = created.json.action as { id: string; status: string; payload: unknown };
    expect(action).toMatchObject({ status: "ACTION_STATUS_APPROVED", payload: { n: 1 } });

    const got = await connectJson(t.address, "GetAction", { id: action.id });
    expect(got.status).toBe(200);
    expect((got.json.action as { id: string }).id).toBe(action.id);
    expect((got.json.events as { eventType: string }[]).map((e) => e.eventType)).toEqual(["action_enqueued", "action_approved"]);
    // A request id is made up when the client sends none.
    expect(got.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("answers a unary call with a binary (application/proto) body", async () => {
    const request = create(EnqueueActionRequestSchema, { actionType: "h1_binary", createdBy: "human:h1", project: "bin", sourceRefs: ["ticket:7"] });
    const res = await h1(t.address, {
      path: `${SERVICE}/EnqueueAction`,
      headers: { "content-type": "application/proto", "connect-protocol-version": "1" },
      body: toBinary(EnqueueActionRequestSchema, request),
    });
    expect(res.status).toBe(200);
    expect(res.httpVersion).toBe("1.1");
    expect(res.headers["content-type"]).toBe("application/proto");
    const { action, created } = fromBinary(EnqueueActionResponseSchema, res.body);
    expect(created).toBe(true);
    expect(action?.actionType).toBe("h1_binary");
    expect(action?.status).toBe(ActionStatus.APPROVED);

    // Read back in binary too, and through grpc-js for good measure.
    const back = await h1(t.address, {
      path: `${SERVICE}/GetAction`,
      headers: { "content-type": "application/proto" },
      body: toBinary(GetActionRequestSchema, create(GetActionRequestSchema, { id: action!.id })),
    });
    expect(fromBinary(GetActionResponseSchema, back.body).action?.sourceRefs).toEqual(["ticket:7"]);
    expect((await getAction(t, String(action!.id))).action.project).toBe("bin");
  });

  it("answers errors with Connect's JSON: code, message and the ErrorInfo detail", async () => {
    const missing = await connectJson(t.address, "GetAction", { id: "987654" });
    expect(missing.status).toBe(404);
    expect(missing.headers["content-type"]).toBe("application/json");
    const notFound = missing.json as unknown as ConnectErrorJson;
    expect(notFound.code).toBe("not_found");
    expect(notFound.message).toContain("987654");
    expect(notFound.details).toHaveLength(1);
    const [detail] = notFound.details;
    expect(detail!.type).toBe("google.rpc.ErrorInfo");
    expect(detail!.debug).toEqual({ reason: "ACTION_NOT_FOUND", domain: "actionq", metadata: { action_id: "987654" } });
    // `value` is the same ErrorInfo in binary, base64 without padding.
    const decoded = fromBinary(ErrorInfoSchema, Buffer.from(detail!.value, "base64"));
    expect({ reason: decoded.reason, domain: decoded.domain, metadata: decoded.metadata }).toEqual(detail!.debug);

    const invalid = await connectJson(t.address, "EnqueueAction", { actionType: "h1_json" });
    expect(invalid.status).toBe(400);
    const invalidError = invalid.json as unknown as ConnectErrorJson;
    expect(invalidError.code).toBe("invalid_argument");
    expect(invalidError.details[0]!.debug).toMatchObject({ reason: "INVALID_FIELD", metadata: { field: "created_by" } });

    // A refused transition names the current status.
    const { action } = await enqueue(t, { actionType: "h1_done" });
    await t.grpc.unary("CancelAction", { id: action.id, actor: "human:h1", reason: "test" });
    const late = await connectJson(t.address, "ApproveAction", { id: action.id, approver: "human:other" });
    expect(late.status).toBe(400);
    const lateError = late.json as unknown as ConnectErrorJson;
    expect(lateError.code).toBe("failed_precondition");
    expect(lateError.details[0]!.debug).toMatchObject({ reason: "INVALID_TRANSITION", metadata: { current_status: "CANCELLED" } });

    // A binary request's error is JSON all the same, as Connect specifies.
    const binary = await h1(t.address, {
      path: `${SERVICE}/GetAction`,
      headers: { "content-type": "application/proto" },
      body: toBinary(GetActionRequestSchema, create(GetActionRequestSchema, { id: 987654n })),
    });
    expect(binary.status).toBe(404);
    expect(binary.headers["content-type"]).toBe("application/json");
    expect((JSON.parse(binary.body.toString("utf8")) as ConnectErrorJson).details[0]!.debug.reason).toBe("ACTION_NOT_FOUND");
  });

  it("streams WatchEvents: the replay, then new events live, on one HTTP/1.1 response", async () => {
    const before = await enqueue(t, { actionType: "h1_watch_old" });
    const watch = new H1ConnectStream(t.address, "WatchEvents", { afterId: "0", eventTypes: ["action_enqueued"] });
    try {
      const res = await watch.response;
      expect(res.statusCode).toBe(200);
      expect(res.httpVersion).toBe("1.1");
      expect(res.headers["content-type"]).toBe("application/connect+json");
      const enqueuedFor = (id: string) => (m: Record<string, unknown>) => (m.event as { actionId?: string } | undefined)?.actionId === id;
      await watch.until("the replayed event", () => watch.received.some(enqueuedFor(before.action.id)));
      // Live: an action enqueued after the stream opened arrives on it.
      const after = await enqueue(t, { actionType: "h1_watch_new" });
      await watch.until("the live event", () => watch.received.some(enqueuedFor(after.action.id)));
      // Each event's cursor is its id, and ids only grow.
      const events = watch.received.filter((m) => "event" in m) as { event: { id: string }; cursor: string }[];
      for (const m of events) expect(m.cursor).toBe(m.event.id);
      const ids = events.map((m) => BigInt(m.event.id));
      expect(ids.every((id, i) => i === 0 || id > ids[i - 1]!)).toBe(true);
      expect(watch.done).toBe(false);
    } finally {
      watch.close();
    }
  });

  it("streams claims with StreamClaims over HTTP/1.1, and the worker acks and completes them over HTTP/1.1", async () => {
    const stream = new H1ConnectStream(t.address, "StreamClaims", { worker: "worker:h1", actionTypes: ["h1_work"], maxInFlight: 1 });
    try {
      expect((await stream.response).statusCode).toBe(200);
      await stream.until("the opening heartbeat", () => stream.received.some((m) => "heartbeat" in m));
      const first = await enqueue(t, { actionType: "h1_work" });
      const second = await enqueue(t, { actionType: "h1_work" });
      type ClaimJson = { claim: { action: { id: string; claimedBy: string }; claimToken: string } };
      const claims = () => stream.received.filter((m): m is ClaimJson => "claim" in m);
      await stream.until("the first claim", () => claims().length >= 1);
      const claim = claims()[0]!.claim;
      expect(claim.action).toMatchObject({ id: first.action.id, claimedBy: "worker:h1" });
      // max_in_flight 1: the second waits until the first is finished.
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(claims()).toHaveLength(1);

      const ack = await connectJson(t.address, "AckClaim", { id: claim.action.id, claimToken: claim.claimToken });
      expect((ack.json.action as { claimAcked: boolean }).claimAcked).toBe(true);
      const done = await connectJson(t.address, "CompleteAction", { id: claim.action.id, claimToken: claim.claimToken, resultRef: "h1://1" });
      expect((done.json.action as { status: string }).status).toBe("ACTION_STATUS_COMPLETED");

      await stream.until("the second claim", () => claims().length >= 2);
      const next = claims()[1]!.claim;
      expect(next.action.id).toBe(second.action.id);
      await connectJson(t.address, "CompleteAction", { id: next.action.id, claimToken: next.claimToken, resultRef: "h1://2" });
      const { rows } = await t.db.query<{ id: string; status: string; result_ref: string }>(
        "SELECT id::text, status, result_ref FROM actions WHERE id = ANY($1::bigint[]) ORDER BY id",
        [[first.action.id, second.action.id]],
      );
      expect(rows).toEqual([
        { id: first.action.id, status: "completed", result_ref: "h1://1" },
        { id: second.action.id, status: "completed", result_ref: "h1://2" },
      ]);
    } finally {
      stream.close();
    }
  });

  it("serves the generated Connect client over HTTP/1.1 in binary, streams included", async () => {
    const client = createClient(ActionQueueService, createConnectTransport({ baseUrl: `http://${t.address}`, httpVersion: "1.1", useBinaryFormat: true }));
    const worker = new ConnectStream((signal) => client.streamClaims({ worker: "worker:h1-binary", actionTypes: ["h1_binary_work"] }, { signal }));
    try {
      const { action } = await client.enqueueAction({ actionType: "h1_binary_work", createdBy: "human:h1" });
      await worker.until("a claim", () => worker.received.some((m) => m.kind.case === "claim"));
      const message = worker.received.find((m) => m.kind.case === "claim")!;
      if (message.kind.case !== "claim") throw new Error("not a claim");
      const claim = message.kind.value;
      expect(claim.action?.id).toBe(action!.id);
      await client.ackClaim({ id: action!.id, claimToken: claim.claimToken });
      const done = await client.completeAction({ id: action!.id, claimToken: claim.claimToken, resultRef: "bin://ok" });
      expect(done.action?.status).toBe(ActionStatus.COMPLETED);
    } finally {
      await worker.cancel();
    }
  });
});

describe("gRPC-Web over HTTP/1.1", () => {
  /** Parses a gRPC-Web trailer frame ("name: value\r\n" lines). */
  function trailers(payload: Buffer): Record<string, string> {
    return Object.fromEntries(
      payload
        .toString("utf8")
        .split("\r\n")
        .filter((line) => line !== "")
        .map((line) => {
          const at = line.indexOf(":");
          return [line.slice(0, at).trim().toLowerCase(), line.slice(at + 1).trim()];
        }),
    );
  }

  it("answers a unary call: a data frame, then a trailer frame with grpc-status 0", async () => {
    const request = create(EnqueueActionRequestSchema, { actionType: "h1_grpc_web", createdBy: "human:h1" });
    const res = await h1(t.address, {
      path: `${SERVICE}/EnqueueAction`,
      headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
      body: frame(0, toBinary(EnqueueActionRequestSchema, request)),
    });
    expect(res.status).toBe(200);
    expect(res.httpVersion).toBe("1.1");
    expect(res.headers["content-type"]).toBe("application/grpc-web+proto");
    const frames: Frame[] = [];
    expect(takeFrames(res.body, frames)).toHaveLength(0);
    expect(frames.map((f) => f.flags)).toEqual([0x00, 0x80]);
    const response = fromBinary(EnqueueActionResponseSchema, frames[0]!.payload);
    expect(response.action?.actionType).toBe("h1_grpc_web");
    expect(trailers(frames[1]!.payload)["grpc-status"]).toBe("0");
  });

  it("carries an error's status, message and ErrorInfo in the trailers", async () => {
    const res = await h1(t.address, {
      path: `${SERVICE}/GetAction`,
      headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
      body: frame(0, toBinary(GetActionRequestSchema, create(GetActionRequestSchema, { id: 987654n }))),
    });
    expect(res.status).toBe(200);
    // A trailers-only answer may put the trailers in the headers instead.
    const frames: Frame[] = [];
    takeFrames(res.body, frames);
    const trailerFrame = frames.find((f) => f.flags & 0x80);
    const fields: Record<string, string> = trailerFrame ? trailers(trailerFrame.payload) : (res.headers as Record<string, string>);
    expect(frames.filter((f) => !(f.flags & 0x80))).toHaveLength(0);
    expect(fields["grpc-status"]).toBe("5");
    expect(decodeURIComponent(fields["grpc-message"]!)).toContain("987654");
    const info = errorInfoInStatus(Buffer.from(fields["grpc-status-details-bin"]!, "base64"));
    expect(info?.reason).toBe("ACTION_NOT_FOUND");
  });

  /** Decodes a text-mode body: base64 runs, each chunk padded on its own. */
  function fromText(body: Buffer): Buffer {
    const text = body.toString("latin1");
    const runs = text.match(/[A-Za-z0-9+/]*(?:={1,2}|$)/g)!.filter((run) => run !== "");
    // Every padded run is whole quanta; decode each on its own.
    return Buffer.concat(runs.flatMap((run) => (run.length % 4 === 0 ? [Buffer.from(run, "base64")] : [])));
  }

  it("serves the text mode (application/grpc-web-text) like the binary one, base64 both ways", async () => {
    const request = create(EnqueueActionRequestSchema, { actionType: "h1_grpc_web_text", createdBy: "human:h1" });
    const res = await h1(t.address, {
      path: `${SERVICE}/EnqueueAction`,
      headers: { "content-type": "application/grpc-web-text", accept: "application/grpc-web-text", "x-grpc-web": "1" },
      body: frame(0, toBinary(EnqueueActionRequestSchema, request)).toString("base64"),
    });
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("application/grpc-web-text+proto");
    expect(res.body.toString("latin1")).toMatch(/^[A-Za-z0-9+/=]+$/);
    const frames: Frame[] = [];
    expect(takeFrames(fromText(res.body), frames)).toHaveLength(0);
    expect(frames.map((f) => f.flags)).toEqual([0x00, 0x80]);
    const response = fromBinary(EnqueueActionResponseSchema, frames[0]!.payload);
    expect(response.action?.actionType).toBe("h1_grpc_web_text");
    expect(trailers(frames[1]!.payload)["grpc-status"]).toBe("0");
    expect((await getAction(t, String(response.action!.id))).action.actionType).toBe("h1_grpc_web_text");
  });

  it("serves a text-mode server stream until its deadline, every chunk decodable", async () => {
    const res = await h1(t.address, {
      path: `${SERVICE}/WatchEvents`,
      headers: { "content-type": "application/grpc-web-text+proto", "x-grpc-web": "1", "grpc-timeout": "700m" },
      body: frame(0, toBinary(WatchEventsRequestSchema, create(WatchEventsRequestSchema, { afterId: 0n }))).toString("base64"),
    });
    expect(res.headers["content-type"]).toBe("application/grpc-web-text+proto");
    const frames: Frame[] = [];
    expect(takeFrames(fromText(res.body), frames)).toHaveLength(0);
    const messages = frames.filter((f) => !(f.flags & 0x80)).map((f) => fromBinary(WatchEventsResponseSchema, f.payload));
    expect(messages[0]?.kind.case).toBe("heartbeat");
    expect(messages.some((m) => m.kind.case === "event")).toBe(true);
    // The stream ends at its deadline with a trailer frame, encoded too.
    expect(frames.at(-1)!.flags & 0x80).toBe(0x80);
    expect(trailers(frames.at(-1)!.payload)["grpc-status"]).toMatch(/^(0|4)$/);
  });

  it("refuses a text-mode body that is not base64 with INVALID_ARGUMENT, writing nothing", async () => {
    const before = await t.db.query<{ n: string }>("SELECT count(*) AS n FROM actions");
    const res = await h1(t.address, {
      path: `${SERVICE}/EnqueueAction`,
      headers: { "content-type": "application/grpc-web-text", "x-grpc-web": "1" },
      body: '{"actionType":"not base64"}',
    });
    expect(res.status).toBe(200);
    expect(res.headers["grpc-status"]).toBe("3");
    expect(decodeURIComponent(String(res.headers["grpc-message"]))).toContain("application/grpc-web-text: the body is not base64");
    const after = await t.db.query<{ n: string }>("SELECT count(*) AS n FROM actions");
    expect(after.rows[0]!.n).toBe(before.rows[0]!.n);
  });
});

describe("gRPC on the same port", () => {
  it("serves grpc-js and the Connect gRPC transport while HTTP/1.1 streams are open", async () => {
    const watch = new H1ConnectStream(t.address, "WatchEvents", { afterId: "0", eventTypes: ["action_enqueued"] });
    try {
      expect((await watch.response).httpVersion).toBe("1.1");
      // Over HTTP/2 with grpc-js...
      const viaGrpc = await t.grpc.unary<{ action: WireAction }>("EnqueueAction", { actionType: "h1_mixed", createdBy: "human:grpc" });
      // ...and with the generated client over gRPC.
      const viaConnect = await t.client.enqueueAction({ actionType: "h1_mixed", createdBy: "human:connect" });
      const ids = [viaGrpc.action.id, String(viaConnect.action!.id)];
      await watch.until("both events on the HTTP/1.1 stream", () =>
        ids.every((id) => watch.received.some((m) => (m.event as { actionId?: string } | undefined)?.actionId === id)),
      );
      const listed = await t.grpc.unary<{ actions: WireAction[] }>("ListActions", { actionTypes: ["h1_mixed"] });
      expect(listed.actions.map((a) => a.id).sort()).toEqual([...ids].sort());
    } finally {
      watch.close();
    }
  });
});

describe("plain curl", () => {
  it("calls a unary method over HTTP/1.1 with a JSON body", async () => {
    const { action } = await enqueue(t, { actionType: "h1_curl", node: "node-9" });
    const { stdout } = await execFileAsync(
      "curl",
      [
        "-sS",
        "--fail-with-body",
        "--http1.1",
        "-H",
        "content-type: application/json",
        "-d",
        JSON.stringify({ id: action.id }),
        "-w",
        "\n%{http_code} %{http_version}",
        `http://${t.address}${SERVICE}/GetAction`,
      ],
      { timeout: 20_000, env: { ...process.env, no_proxy: "*", NO_PROXY: "*" } },
    );
    const cut = stdout.lastIndexOf("\n");
    expect(stdout.slice(cut + 1)).toBe("200 1.1");
    const body = JSON.parse(stdout.slice(0, cut)) as { action: { id: string; node: string } };
    expect(body.action).toMatchObject({ id: action.id, node: "node-9" });
  });
});

describe("CORS", () => {
  const allowed = "https://console.example.com";
  const refused = "https://evil.example.com";
  let c: TestServer;
  beforeAll(async () => {
    c = await startTestServer({ ACTIONQ_CORS_ORIGINS: `${allowed}, https://ops.example.com` });
  });
  afterAll(async () => {
    await c?.close();
  });

  const preflight = (server: TestServer, origin: string) =>
    h1(server.address, {
      method: "OPTIONS",
      path: `${SERVICE}/EnqueueAction`,
      headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type,connect-protocol-version,x-request-id" },
    });
  const corsHeaders = (res: H1Response) => Object.keys(res.headers).filter((name) => name.startsWith("access-control-"));

  it("answers a preflight from an allowed origin with what Connect needs", async () => {
    const res = await preflight(c, allowed);
    expect(res.status).toBe(204);
    expect(res.headers["access-control-allow-origin"]).toBe(allowed);
    const methods = String(res.headers["access-control-allow-methods"]).split(",");
    expect(methods).toEqual(expect.arrayContaining(["POST", "GET"]));
    const headers = String(res.headers["access-control-allow-headers"]).toLowerCase().split(",");
    expect(headers).toEqual(expect.arrayContaining(["content-type", "connect-protocol-version", "connect-timeout-ms", "x-grpc-web", "x-request-id"]));
    expect(res.headers["access-control-max-age"]).toBe("7200");
    expect(String(res.headers.vary)).toMatch(/origin/i);
  });

  it("marks an actual request from an allowed origin, exposing the status headers", async () => {
    const res = await connectJson(c.address, "EnqueueAction", { actionType: "h1_cors", createdBy: "human:browser" }, { origin: allowed });
    expect(res.status).toBe(200);
    expect(res.headers["access-control-allow-origin"]).toBe(allowed);
    const exposed = String(res.headers["access-control-expose-headers"]).toLowerCase().split(",");
    expect(exposed).toEqual(expect.arrayContaining(["grpc-status", "grpc-message", "grpc-status-details-bin", "x-request-id"]));
  });

  it("gives a refused origin no allow-origin header, so browsers block it", async () => {
    const pre = await preflight(c, refused);
    expect(pre.headers["access-control-allow-origin"]).toBeUndefined();
    const res = await connectJson(c.address, "GetQueueStats", {}, { origin: refused });
    expect(res.headers["access-control-allow-origin"]).toBeUndefined();
  });

  it("sends no CORS headers at all when ACTIONQ_CORS_ORIGINS is unset", async () => {
    const pre = await preflight(t, allowed);
    expect(corsHeaders(pre)).toEqual([]);
    expect(pre.status).not.toBe(204);
    const res = await connectJson(t.address, "GetQueueStats", {}, { origin: allowed });
    expect(res.status).toBe(200);
    expect(corsHeaders(res)).toEqual([]);
  });
});
