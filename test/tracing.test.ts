// OpenTelemetry traces (issue 20), end to end: a real OTLP/HTTP receiver on
// loopback, the built server as a child process configured only by the
// standard OTEL_* variables, a producer (grpc-js, with a span of its own
// from the SDK) that sends a traceparent, an approver, and a worker in
// another process (the TypeScript example, then the Python one) that
// continues the trace from its claim. One action is one connected trace;
// each test prints it as a tree. With the variables unset, nothing reaches
// the receiver and the trace context is still kept and handed out.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import zlib from "node:zlib";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { ROOT_CONTEXT, SpanKind, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { ActionQueueService } from "../gen/actionq/v1/action_queue_service_pb.js";
import { parseTraceContext } from "../src/api/trace-context.js";
import { loadConfig, tracingWanted } from "../src/config.js";
import { databaseUrl, dropSchema, freshSchema } from "./support/database.js";
import { ExampleProcess, generatePythonStubs, killExamples, pythonExample, pythonSkipReason } from "./support/examples.js";
import { GrpcClient } from "./support/harness.js";
import { ActionqProcess, freePort, killRunning, packageRoot, requireBuiltCli } from "./support/processes.js";
import { eventually } from "./support/wait.js";

const gunzip = promisify(zlib.gunzip);

/** One span as the receiver got it, ids in hex. */
interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  start: bigint;
  attributes: Record<string, string>;
  links: { traceId: string; spanId: string }[];
}

// OTLP/JSON writes ids in hex; accept base64 (protobuf JSON's default) too.
const hex = (id: unknown): string =>
  typeof id !== "string" || id === "" ? "" : /^[0-9a-f]+$/.test(id) && (id.length === 32 || id.length === 16) ? id : Buffer.from(id, "base64").toString("hex");

type OtlpValue = { stringValue?: string; intValue?: string | number; boolValue?: boolean; doubleValue?: number };
type OtlpAttribute = { key: string; value: OtlpValue };

const plain = (attributes: OtlpAttribute[] | undefined): Record<string, string> =>
  Object.fromEntries(
    (attributes ?? []).map(({ key, value }) => [key, String(value.stringValue ?? value.intValue ?? value.boolValue ?? value.doubleValue ?? "")]),
  );

/** A real OTLP/HTTP receiver: POST /v1/traces, JSON (what
 * @opentelemetry/exporter-trace-otlp-http and the Python example send),
 * gzipped or not. */
class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  requests = 0;
  private readonly server = http.createServer((req, res) => void this.receive(req, res));

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async receive(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    this.requests++;
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    let body = Buffer.concat(chunks);
    if (req.headers["content-encoding"] === "gzip") body = await gunzip(body);
    if (req.method !== "POST" || req.url !== "/v1/traces" || !String(req.headers["content-type"]).startsWith("application/json")) {
      res.writeHead(415).end();
      return;
    }
    const payload = JSON.parse(body.toString("utf8")) as {
      resourceSpans?: {
        resource?: { attributes?: OtlpAttribute[] };
        scopeSpans?: {
          spans?: {
            traceId: string;
            spanId: string;
            parentSpanId?: string;
            name: string;
            kind: number;
            startTimeUnixNano: string | number;
            attributes?: OtlpAttribute[];
            links?: { traceId: string; spanId: string }[];
          }[];
        }[];
      }[];
    };
    for (const resource of payload.resourceSpans ?? []) {
      const service = plain(resource.resource?.attributes)["service.name"] ?? "";
      for (const scope of resource.scopeSpans ?? []) {
        for (const span of scope.spans ?? []) {
          this.spans.push({
            service,
            traceId: hex(span.traceId),
            spanId: hex(span.spanId),
            parentSpanId: hex(span.parentSpanId),
            name: span.name,
            kind: span.kind,
            start: BigInt(span.startTimeUnixNano),
            attributes: plain(span.attributes),
            links: (span.links ?? []).map((link) => ({ traceId: hex(link.traceId), spanId: hex(link.spanId) })),
          });
        }
      }
    }
    res.writeHead(200, { "content-type": "application/json" }).end("{}");
  }

  trace(traceId: string): ReceivedSpan[] {
    return this.spans.filter((span) => span.traceId === traceId);
  }
}

const KINDS = ["unspecified", "internal", "server", "client", "producer", "consumer"];

/** The trace as an indented tree, children in start order, with each
 * span's service, kind and the few attributes that say what it was. */
function printTree(spans: ReceivedSpan[]): string {
  const ids = new Set(spans.map((span) => span.spanId));
  const children = new Map<string, ReceivedSpan[]>();
  for (const span of spans) {
    const parent = ids.has(span.parentSpanId) ? span.parentSpanId : "";
    children.set(parent, [...(children.get(parent) ?? []), span]);
  }
  let start = spans[0]?.start ?? 0n;
  for (const span of spans) if (span.start < start) start = span.start;
  const lines: string[] = [];
  const walk = (parent: string, indent: string, depth: number) => {
    const siblings = (children.get(parent) ?? []).sort((a, b) => (a.start < b.start ? -1 : 1));
    siblings.forEach((span, index) => {
      const last = index === siblings.length - 1;
      const at = `+${(Number(span.start - start) / 1e6).toFixed(1)}ms`;
      const detail = span.attributes["db.query.text"]
        ? ` ${span.attributes["db.query.text"].replace(/\s+/g, " ").slice(0, 60)}`
        : span.attributes["actionq.actor"]
          ? ` actor=${span.attributes["actionq.actor"]} status=${span.attributes["actionq.action.status"]}`
          : "";
      const links = span.links.length > 0 ? ` (linked to ${span.links.length} span in another trace)` : "";
      const branch = depth === 0 ? "" : last ? "└─ " : "├─ ";
      lines.push(`${indent}${branch}${span.name} [${span.service}, ${KINDS[span.kind] ?? span.kind}] ${at}${detail}${links}`);
      walk(span.spanId, depth === 0 ? indent : indent + (last ? "   " : "│  "), depth + 1);
    });
  };
  walk("", "", 0);
  return lines.join("\n");
}

/** The producer: a span of its own from the OpenTelemetry SDK, exported to
 * the receiver, whose context rides on the enqueue as metadata. */
function producerTracer(endpoint: string) {
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": "test-producer" }),
    spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${endpoint}/v1/traces` }))],
  });
  return { tracer: provider.getTracer("test-producer"), provider };
}

function metadataOf(span: ReturnType<ReturnType<typeof producerTracer>["tracer"]["startSpan"]>, tracestate?: string): grpc.Metadata {
  const carrier: Record<string, string> = {};
  new W3CTraceContextPropagator().inject(trace.setSpan(ROOT_CONTEXT, span), carrier, {
    set: (into, key, value) => {
      into[key] = value;
    },
  });
  const metadata = new grpc.Metadata();
  metadata.set("traceparent", carrier.traceparent!);
  if (tracestate) metadata.set("tracestate", tracestate);
  return metadata;
}

interface WireAction {
  id: string;
  status: string;
  traceContext: { traceparent: string; tracestate: string } | null;
}

/** A server child process on a fresh schema; `env` adds OTEL_* or not. */
async function startServer(env: Record<string, string>): Promise<{ proc: ActionqProcess; address: string; schema: string; client: GrpcClient }> {
  const port = await freePort();
  const schema = freshSchema("tracing");
  const proc = new ActionqProcess(["serve"], {
    ACTIONQ_URL: databaseUrl(),
    ACTIONQ_SCHEMA: schema,
    ACTIONQ_LISTEN: `127.0.0.1:${port}`,
    ACTIONQ_HEARTBEAT_SECONDS: "1",
    ...env,
  });
  await proc.waitForLog("actionq is serving", 60_000);
  const address = `127.0.0.1:${port}`;
  return { proc, address, schema, client: new GrpcClient(address) };
}

const TS_WORKER = path.join(packageRoot, "dist", "examples", "worker.js");
const TS_WORKER_TRACING = path.join(packageRoot, "dist", "examples", "tracing.js");

const pythonSkip = pythonSkipReason();

describe("when tracing is on, and which trace contexts are kept", () => {
  it("tracing is on with an OTLP endpoint or OTEL_TRACES_EXPORTER=otlp, and off otherwise", () => {
    expect(tracingWanted({})).toBe(false);
    expect(tracingWanted({ OTEL_SERVICE_NAME: "actionq" })).toBe(false);
    expect(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318" })).toBe(true);
    expect(tracingWanted({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://127.0.0.1:4318/v1/traces" })).toBe(true);
    expect(tracingWanted({ OTEL_TRACES_EXPORTER: "otlp" })).toBe(true);
    expect(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318", OTEL_TRACES_EXPORTER: "none" })).toBe(false);
    expect(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318", OTEL_SDK_DISABLED: "true" })).toBe(false);
    expect(loadConfig({}).tracing).toBe(false);
  });

  it("keeps a well-formed traceparent and ignores a malformed one", () => {
    const good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    expect(parseTraceContext(good, "congo=t61rcWkgMzE")).toEqual({ traceparent: good, tracestate: "congo=t61rcWkgMzE" });
    expect(parseTraceContext(good, undefined)).toEqual({ traceparent: good, tracestate: "" });
    // A later version may add fields; 00 may not.
    expect(parseTraceContext(`cc${good.slice(2)}-what-the-future-holds`, null)?.traceparent).toBe(`cc${good.slice(2)}-what-the-future-holds`);
    for (const bad of [
      "",
      "garbage",
      `${good}-extra`,
      `ff${good.slice(2)}`,
      good.toUpperCase(),
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
      "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
    ]) {
      expect(parseTraceContext(bad, "congo=1"), bad).toBeNull();
    }
    // A tracestate that no carrier may hold is dropped alone.
    expect(parseTraceContext(good, "x".repeat(513))).toEqual({ traceparent: good, tracestate: "" });
  });
});

describe("OpenTelemetry traces", () => {
  const receiver = new OtlpReceiver();
  let endpoint: string;
  const schemas: string[] = [];
  const clients: GrpcClient[] = [];

  beforeAll(async () => {
    requireBuiltCli();
    endpoint = await receiver.start();
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await killExamples();
    await killRunning();
  });

  afterAll(async () => {
    await receiver.close();
    for (const schema of schemas) await dropSchema(databaseUrl(), schema);
  });

  const tracingEnv = () => ({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_BSP_SCHEDULE_DELAY: "100" });

  /** Enqueue (with the producer's span) -> approve -> a worker claims over
   * a stream, continues the trace and completes; the servers' spans are
   * exported when it stops. Returns the trace, printed. */
  async function oneAction<W extends { stop(): Promise<unknown>; output(): string }>(
    actionType: string,
    startWorker: (address: string) => W,
    finished: (worker: W, id: string, client: GrpcClient) => boolean | Promise<boolean>,
    fields: Record<string, unknown> = {},
  ) {
    const server = await startServer(tracingEnv());
    schemas.push(server.schema);
    clients.push(server.client);
    const { tracer, provider } = producerTracer(endpoint);
    const produce = tracer.startSpan(`propose ${actionType}`, { kind: SpanKind.PRODUCER });
    const { action } = await server.client.unary<{ action: WireAction }>(
      "EnqueueAction",
      { actionType, createdBy: "agent:triage", targetRef: "svc/web", approvalRequired: true, ...fields },
      metadataOf(produce, "vendor=opaque"),
    );
    produce.end();
    await provider.shutdown();
    const traceId = produce.spanContext().traceId;
    expect(action.status).toBe("ACTION_STATUS_PENDING");
    // The action keeps the server's enqueue span, a child in the producer's trace.
    expect(action.traceContext?.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
    expect(action.traceContext?.tracestate).toBe("vendor=opaque");

    await server.client.unary("ApproveAction", { id: action.id, approver: "human:bob" });
    const worker = startWorker(server.address);
    await eventually(() => finished(worker, action.id, server.client), "the worker to finish the action", 30_000).catch((error: Error) => {
      throw new Error(`${error.message}\n${worker.output()}`);
    });
    await eventually(() => receiver.trace(traceId).some((span) => span.name === "action.completed"), "the action.completed span", 10_000);
    // Stopping flushes the last spans of both.
    await worker.stop();
    await server.proc.stop();
    const spans = receiver.trace(traceId);
    const printed = printTree(spans);
    console.log(`one action's trace (${spans.length} spans):\n${printed}`);
    return { spans, traceId, produceSpanId: produce.spanContext().spanId, action, printed };
  }

  /** What every worker's trace must show, whatever the worker's language. */
  function expectConnected(spans: ReceivedSpan[], produceSpanId: string, workerService: string, action: WireAction) {
    const byId = new Map(spans.map((span) => [span.spanId, span]));
    const named = (name: string) => spans.filter((span) => span.name === name);
    // Connected: one root, the producer's span; every other span's parent is in the trace.
    const roots = spans.filter((span) => !byId.has(span.parentSpanId));
    expect(roots.map((span) => span.spanId)).toEqual([produceSpanId]);

    const [enqueue] = named("actionq.v1.ActionQueueService/EnqueueAction");
    expect(enqueue).toMatchObject({ service: "actionq", kind: 2, parentSpanId: produceSpanId });
    expect(action.traceContext?.traceparent.split("-")[2]).toBe(enqueue!.spanId);
    // Its statements, as database spans.
    expect(spans.some((span) => span.parentSpanId === enqueue!.spanId && span.kind === 3 && span.attributes["db.system.name"] === "postgresql")).toBe(true);

    // The lifecycle, in the action's trace under the enqueue span.
    for (const change of ["action.enqueued", "action.approved", "action.claimed", "action.acked", "action.completed"]) {
      const [span] = named(change);
      expect(span, change).toMatchObject({ service: "actionq", parentSpanId: enqueue!.spanId });
      expect(span!.attributes["actionq.action.id"]).toBe(action.id);
    }
    // The approval was another caller's call, in another trace: linked.
    const [approved] = named("action.approved");
    expect(approved!.attributes["actionq.actor"]).toBe("human:bob");
    expect(approved!.links).toHaveLength(1);
    expect(receiver.spans.find((span) => span.spanId === approved!.links[0]!.spanId)?.name).toBe("actionq.v1.ActionQueueService/ApproveAction");

    // The worker's span continues the trace from its claim, and its calls are its children.
    const work = spans.filter((span) => span.service === workerService);
    expect(work).toHaveLength(1);
    expect(work[0]).toMatchObject({ kind: 5, parentSpanId: enqueue!.spanId });
    expect(work[0]!.attributes["actionq.action.id"]).toBe(action.id);
    const [complete] = named("actionq.v1.ActionQueueService/CompleteAction");
    expect(complete).toMatchObject({ service: "actionq", kind: 2, parentSpanId: work[0]!.spanId });
    expect(spans.some((span) => span.parentSpanId === complete!.spanId && span.kind === 3)).toBe(true);
  }

  it("one enqueue -> approve -> claim -> complete is one connected trace across the producer, the server and the TypeScript worker", async () => {
    const { spans, produceSpanId, action } = await oneAction(
      "restart_service",
      (address) =>
        new ExampleProcess(process.execPath, ["--import", TS_WORKER_TRACING, TS_WORKER], {
          env: { ACTIONQ_ADDR: address, WORKER_NAME: "worker:ts", ...tracingEnv() },
        }),
      (worker, id) => worker.lines.some((line) => line.startsWith(`completed action #${id}:`)),
    );
    expectConnected(spans, produceSpanId, "actionq-example-worker", action);
  }, 90_000);

  it("the executor's span continues the same trace, and its calls are its children", async () => {
    const stateDir = await mkdtemp(path.join(tmpdir(), "actionq-tracing-executor-"));
    onTestFinished(() => rm(stateDir, { recursive: true, force: true }));
    const { spans, produceSpanId, action } = await oneAction(
      "collect_diagnostics",
      (address) =>
        new ActionqProcess(["executor", "--server", address, "--worker", "executor:sim", "--state-dir", stateDir], {
          XDG_STATE_HOME: stateDir,
          ...tracingEnv(),
        }),
      async (_executor, id, client) => (await client.unary<{ action: WireAction }>("GetAction", { id })).action.status === "ACTION_STATUS_COMPLETED",
      { node: "node-1" },
    );
    expectConnected(spans, produceSpanId, "actionq-executor", action);
  }, 90_000);

  describe.skipIf(pythonSkip !== undefined)(pythonSkip ? `with the Python worker (skipped: ${pythonSkip})` : "with the Python worker", () => {
    it("the Python worker's span continues the same trace, and its calls are its children", async () => {
      const genDir = await generatePythonStubs();
      onTestFinished(() => rm(genDir, { recursive: true, force: true }));
      const { spans, produceSpanId, action } = await oneAction(
        "rotate_key",
        (address) => pythonExample("worker.py", ["--server", address, "--worker", "python:tracing", "--exit-after", "1"], genDir, tracingEnv()),
        (worker, id) => worker.lines.some((line) => (JSON.parse(line) as { outcome: string; id: number }).id === Number(id)),
      );
      expectConnected(spans, produceSpanId, "actionq-python-worker", action);
    }, 90_000);
  });

  it("with the OTEL_* variables unset nothing reaches the receiver, and the trace context is still kept and handed to the worker", async () => {
    const before = receiver.requests;
    const server = await startServer({});
    schemas.push(server.schema);
    clients.push(server.client);
    expect(server.proc.logs().some((line) => line.msg === "exporting traces over OTLP/HTTP")).toBe(false);
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const metadata = new grpc.Metadata();
    metadata.set("traceparent", traceparent);
    metadata.set("tracestate", "congo=t61rcWkgMzE");
    const { action } = await server.client.unary<{ action: WireAction }>("EnqueueAction", { actionType: "flush_cache", createdBy: "agent:triage" }, metadata);
    expect(action.traceContext).toEqual({ traceparent, tracestate: "congo=t61rcWkgMzE" });
    const got = await server.client.unary<{ action: WireAction }>("GetAction", { id: action.id });
    expect(got.action.traceContext).toEqual({ traceparent, tracestate: "congo=t61rcWkgMzE" });

    // Connect and gRPC-Web carry it as the same header.
    for (const [protocol, transport] of [
      ["Connect", createConnectTransport({ baseUrl: `http://${server.address}`, httpVersion: "1.1" })],
      ["gRPC-Web", createGrpcWebTransport({ baseUrl: `http://${server.address}`, httpVersion: "1.1" })],
    ] as const) {
      const connectClient = createClient(ActionQueueService, transport);
      const other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
      const { action: sent } = await connectClient.enqueueAction({ actionType: "other", createdBy: "agent:triage" }, { headers: { traceparent: other } });
      expect(sent?.traceContext, protocol).toMatchObject({ traceparent: other, tracestate: "" });
    }

    // A malformed traceparent is ignored, never refused.
    const bad = new grpc.Metadata();
    bad.set("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01");
    const { action: untraced } = await server.client.unary<{ action: WireAction }>("EnqueueAction", { actionType: "other", createdBy: "agent:triage" }, bad);
    expect(untraced.traceContext).toBeNull();

    // A claim hands it to the worker; the TypeScript worker, with its SDK
    // setup loaded but no endpoint, exports nothing either.
    const claimed = await server.client.unary<{ claim: { action: WireAction } | null }>("ClaimAction", {
      worker: "worker:unary",
      actionTypes: ["flush_cache"],
    });
    expect(claimed.claim?.action.traceContext).toEqual({ traceparent, tracestate: "congo=t61rcWkgMzE" });
    const worker = new ExampleProcess(process.execPath, ["--import", TS_WORKER_TRACING, TS_WORKER], {
      env: { ACTIONQ_ADDR: server.address, WORKER_NAME: "worker:ts" },
    });
    await eventually(() => worker.lines.some((line) => line.startsWith(`completed action #${untraced.id}:`)), "the worker to complete", 30_000).catch(
      (error: Error) => {
        throw new Error(`${error.message}\n${worker.output()}`);
      },
    );
    await worker.stop();
    await server.proc.stop();
    expect(receiver.requests).toBe(before);
  }, 90_000);
});
