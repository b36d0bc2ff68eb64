// The admin port (ACTIONQ_METRICS_LISTEN): after real work (200 actions
// through a StreamClaims worker, some failed, some refused calls), /metrics
// says what happened and what the database holds; /healthz and /readyz
// answer as an orchestrator expects, /readyz going 503 while the schema is
// behind this build; and with the setting unset there is no admin port.
import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, grpcError, startTestServer } from "./support/harness.js";
import { FOREIGN_TOKEN } from "./support/wire.js";
import { ConnectStream, inParallel } from "./support/streams.js";
import { eventually } from "./support/wait.js";

const SERVICE = "actionq.v1.ActionQueueService";
const LOAD = 200;
/** Every FAIL_EVERY-th action is failed by the worker instead of completed. */
const FAIL_EVERY = 20;
const FAILED = LOAD / FAIL_EVERY;

function get(port: number, path: string, method = "GET"): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path, method, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode!, type: String(res.headers["content-type"]), body }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`no answer to ${path}`)));
    req.on("error", reject);
    req.end();
  });
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The Prometheus text format, samples only. */
function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`unreadable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1]!] = pair[2]!.replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
    }
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

class Scrape {
  constructor(readonly samples: Sample[]) {}

  /** The samples of `name` whose labels include `labels`. */
  find(name: string, labels: Record<string, string> = {}): Sample[] {
    return this.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }

  /** The one sample of `name` with exactly these labels; fails when absent. */
  value(name: string, labels: Record<string, string> = {}): number {
    const exact = this.find(name, labels).filter((s) => Object.keys(s.labels).length === Object.keys(labels).length);
    if (exact.length !== 1) throw new Error(`expected one sample ${name}${JSON.stringify(labels)}, found ${exact.length}`);
    return exact[0]!.value;
  }
}

describe("the admin endpoint", () => {
  let t: TestServer;
  let port: number;
  const scrape = async () => {
    const res = await get(port, "/metrics");
    expect(res.status).toBe(200);
    expect(res.type).toMatch(/^text\/plain; version=0\.0\.4/);
    return new Scrape(parseMetrics(res.body));
  };
  const rpcs = (s: Scrape, method: string, code: string) =>
    s.find("actionq_rpcs_total", { method: `${SERVICE}/${method}`, code }).reduce((n, x) => n + x.value, 0);

  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_METRICS_LISTEN: "127.0.0.1:0" });
    port = t.server.metricsPort!;
  });
  afterAll(async () => {
    await t?.close();
  });

  it("listens on its own port, apart from the API", () => {
    expect(port).toBeGreaterThan(0);
    expect(port).not.toBe(t.server.port);
  });

  describe("after 200 actions went through a StreamClaims worker", () => {
    let worker: ConnectStream<unknown>;
    let whileStreaming: Scrape;
    let settled: Scrape;
    let idleWorker: Scrape;
    let finished = 0;

    beforeAll(async () => {
      worker = new ConnectStream(
        (signal) => t.client.streamClaims({ worker: "worker:metrics", actionTypes: ["m_work"], maxInFlight: 8 }, { signal }),
        async (message) => {
          if (message.kind.case !== "claim") return;
          const { action, claimToken } = message.kind.value;
          const id = action!.id;
          await t.client.ackClaim({ id, claimToken });
          if (action!.payload?.fail === true) await t.client.failAction({ id, claimToken, reason: "the test fails this one" });
          else await t.client.completeAction({ id, claimToken, resultRef: `result:${id}` });
          finished++;
        },
      );
      await inParallel(
        Array.from({ length: LOAD }, (_, i) => i),
        8,
        (i) =>
          t.grpc.unary("EnqueueAction", { actionType: "m_work", createdBy: "human:load", payload: { fields: { fail: { boolValue: i % FAIL_EVERY === 0 } } } }),
      );
      await eventually(() => finished === LOAD, `the worker finishing ${LOAD} actions (${finished} so far)`, 60_000);

      // Refused calls, each with a code of its own.
      for (let i = 0; i < 3; i++) await grpcError(t.grpc.unary("GetAction", { id: String(900_000 + i) }));
      for (let i = 0; i < 2; i++) await grpcError(t.grpc.unary("EnqueueAction", { actionType: "m_work" }));
      const held = await t.grpc.unary<{ action: { id: string } }>("EnqueueAction", { actionType: "m_hold", createdBy: "human:load" });
      await t.grpc.unary("ClaimAction", { worker: "worker:holder", actionTypes: ["m_hold"] });
      await grpcError(t.grpc.unary("CompleteAction", { id: held.action.id, claimToken: FOREIGN_TOKEN, resultRef: "x" }));

      // Work left waiting: three claimable, two pending an approval.
      for (let i = 0; i < 3; i++) await t.grpc.unary("EnqueueAction", { actionType: "m_wait", createdBy: "human:load" });
      for (let i = 0; i < 2; i++) await t.grpc.unary("EnqueueAction", { actionType: "m_review", createdBy: "human:load", approvalRequired: true });
      await new Promise((resolve) => setTimeout(resolve, 200));
      whileStreaming = await scrape();
      // The worker has done all it takes and has room: it stands idle (the
      // backstop poll may wake it for a moment, hence the retries).
      idleWorker = (await eventually(async () => {
        const scraped = await scrape();
        return scraped.value("actionq_claim_streams_waiting") === 1 ? scraped : undefined;
      }, "the worker's stream to be reported waiting for work"))!;
      await worker.cancel();
      await eventually(() => t.server.stats.claimStreams === 0, "the claim stream to close");
      settled = await scrape();
    }, 120_000);

    afterAll(async () => {
      await worker?.cancel();
    });

    it("counts enqueues by type and the status they landed in", () => {
      expect(settled.value("actionq_actions_enqueued_total", { action_type: "m_work", status: "approved" })).toBe(LOAD);
      expect(settled.value("actionq_actions_enqueued_total", { action_type: "m_review", status: "pending" })).toBe(2);
      expect(settled.value("actionq_actions_enqueued_total", { action_type: "m_wait", status: "approved" })).toBe(3);
    });

    it("counts claims, and how they ended", () => {
      expect(settled.value("actionq_claims_total", { action_type: "m_work" })).toBe(LOAD);
      expect(settled.value("actionq_claims_total", { action_type: "m_hold" })).toBe(1);
      expect(settled.value("actionq_claims_finished_total", { action_type: "m_work", outcome: "completed" })).toBe(LOAD - FAILED);
      expect(settled.value("actionq_claims_finished_total", { action_type: "m_work", outcome: "failed" })).toBe(FAILED);
      expect(settled.find("actionq_claims_finished_total", { action_type: "m_hold" })).toEqual([]);
    });

    it("measures the time from enqueue to claim and from claim to completion", () => {
      expect(settled.value("actionq_enqueue_to_claim_seconds_count", { action_type: "m_work" })).toBe(LOAD);
      expect(settled.value("actionq_enqueue_to_claim_seconds_sum", { action_type: "m_work" })).toBeGreaterThan(0);
      expect(settled.value("actionq_enqueue_to_claim_seconds_bucket", { action_type: "m_work", le: "+Inf" })).toBe(LOAD);
      // Only completions are timed; failures are not.
      expect(settled.value("actionq_claim_to_complete_seconds_count", { action_type: "m_work" })).toBe(LOAD - FAILED);
      expect(settled.value("actionq_claim_to_complete_seconds_sum", { action_type: "m_work" })).toBeGreaterThan(0);
    });

    it("counts RPCs by method and code, errors included", () => {
      expect(rpcs(settled, "EnqueueAction", "ok")).toBe(LOAD + 1 + 3 + 2);
      expect(rpcs(settled, "EnqueueAction", "invalid_argument")).toBe(2);
      expect(rpcs(settled, "GetAction", "not_found")).toBe(3);
      expect(rpcs(settled, "CompleteAction", "failed_precondition")).toBe(1);
      expect(rpcs(settled, "AckClaim", "ok")).toBe(LOAD);
      expect(rpcs(settled, "CompleteAction", "ok")).toBe(LOAD - FAILED);
      expect(rpcs(settled, "FailAction", "ok")).toBe(FAILED);
      expect(rpcs(settled, "ClaimAction", "ok")).toBe(1);
      // The stream is counted once it is over, whatever ended it.
      expect(settled.find("actionq_rpcs_total", { method: `${SERVICE}/StreamClaims` }).reduce((n, s) => n + s.value, 0)).toBe(1);
      expect(whileStreaming.find("actionq_rpcs_total", { method: `${SERVICE}/StreamClaims` })).toEqual([]);
      const durations = settled.value("actionq_rpc_duration_seconds_count", { method: `${SERVICE}/GetAction`, code: "not_found" });
      expect(durations).toBe(3);
    });

    it("reports the live actions by status and type exactly as the database holds them", async () => {
      const { rows } = await t.db.query<{ status: string; action_type: string; n: number }>(
        "SELECT status, action_type, count(*)::int AS n FROM actions WHERE status IN ('pending', 'approved', 'claimed') GROUP BY 1, 2",
      );
      const fromDb = Object.fromEntries(rows.map((r) => [`${r.status}/${r.action_type}`, r.n]));
      const fromMetrics = Object.fromEntries(settled.find("actionq_actions").map((s) => [`${s.labels.status}/${s.labels.action_type}`, s.value]));
      expect(fromMetrics).toEqual(fromDb);
      expect(fromMetrics).toEqual({ "approved/m_wait": 3, "pending/m_review": 2, "claimed/m_hold": 1 });
    });

    it("reports what is claimable and how long the oldest has waited", () => {
      expect(settled.value("actionq_claimable_actions")).toBe(3);
      const age = settled.value("actionq_oldest_claimable_age_seconds");
      expect(age).toBeGreaterThan(0.15);
      expect(age).toBeLessThan(60);
    });

    it("reports the open claim streams, the LISTEN connection and the pool", () => {
      expect(whileStreaming.value("actionq_claim_streams")).toBe(1);
      expect(settled.value("actionq_claim_streams")).toBe(0);
      expect(idleWorker.value("actionq_claim_streams")).toBe(1);
      expect(settled.value("actionq_claim_streams_waiting")).toBe(0);
      expect(settled.value("actionq_listen_connected")).toBe(1);
      const total = settled.value("actionq_db_pool_connections", { state: "total" });
      expect(total).toBeGreaterThanOrEqual(1);
      expect(total).toBeLessThanOrEqual(t.server.config.poolSize);
      expect(settled.value("actionq_db_pool_connections", { state: "idle" })).toBeLessThanOrEqual(total);
      expect(settled.value("actionq_db_pool_connections", { state: "waiting" })).toBe(0);
      // Node's own metrics come along.
      expect(settled.find("process_cpu_user_seconds_total")).toHaveLength(1);
    });

    it("reports nothing claimable, and an age of 0, when nothing waits", async () => {
      const { actions } = await t.grpc.unary<{ actions: { id: string }[] }>("ListActions", { actionTypes: ["m_wait"] });
      for (const { id } of actions) await t.grpc.unary("CancelAction", { id, actor: "human:load", reason: "emptying the queue" });
      const empty = await scrape();
      expect(empty.value("actionq_claimable_actions")).toBe(0);
      expect(empty.value("actionq_oldest_claimable_age_seconds")).toBe(0);
      expect(empty.find("actionq_actions", { status: "approved" })).toEqual([]);
    });
  });

  describe("probes", () => {
    it("answers /healthz and /readyz with 200 while all is well", async () => {
      expect(await get(port, "/healthz")).toMatchObject({ status: 200, body: "ok\n" });
      expect(await get(port, "/readyz")).toMatchObject({ status: 200, body: "ready\n" });
    });

    it("answers /readyz with 503 while the schema lacks a migration this build has, and 200 once it is back", async () => {
      const { rows } = await t.db.query<{ id: number; name: string; applied_at: Date }>(
        "DELETE FROM schema_migrations WHERE id = (SELECT max(id) FROM schema_migrations) RETURNING id, name, applied_at",
      );
      const removed = rows[0]!;
      try {
        const behind = await get(port, "/readyz");
        expect(behind.status).toBe(503);
        expect(behind.body).toBe(`not ready: schema is at migration ${removed.id - 1}, this build needs ${removed.id}\n`);
        // Alive all the same: a restart would not help.
        expect((await get(port, "/healthz")).status).toBe(200);
      } finally {
        await t.db.query("INSERT INTO schema_migrations (id, name, applied_at) VALUES ($1, $2, $3)", [removed.id, removed.name, removed.applied_at]);
      }
      expect((await get(port, "/readyz")).status).toBe(200);
    });

    it("answers 404 for an unknown path and 405 for a POST", async () => {
      const unknown = await get(port, "/metricz");
      expect(unknown.status).toBe(404);
      expect(unknown.body).toContain("/metrics");
      expect((await get(port, "/metrics", "POST")).status).toBe(405);
    });
  });
});

describe("without ACTIONQ_METRICS_LISTEN", () => {
  it("opens no admin port, and the API port serves no metrics", async () => {
    const t = await startTestServer();
    try {
      expect(t.server.config.metricsListen).toBeUndefined();
      expect(t.server.metricsPort).toBeUndefined();
      const res = await get(t.server.port, "/metrics");
      expect(res.status).toBe(404);
      expect(res.body).not.toContain("actionq_");
    } finally {
      await t.close();
    }
  });
});
