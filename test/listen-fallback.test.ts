// Wakeups without NOTIFY, and NOTIFY over a connection of its own. Two
// servers with ACTIONQ_LISTEN_URL=none (as behind a transaction pooler with
// no direct URL) hear of each other's commits only by polling every
// ACTIONQ_FALLBACK_POLL_SECONDS; their backstop poll is an hour, so what
// arrives promptly came from the fallback poll. A server whose
// ACTIONQ_LISTEN_URL differs from ACTIONQ_URL listens there, and polls
// while that connection is lost.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, closeWithin, startTestServer } from "./support/harness.js";
import { type ClaimStreamMessage, type GrpcStream, cancelAfterEach, claimsOf, nthClaim, openClaimStream, openWatch, waitingFor } from "./support/streams.js";
import { TcpProxy } from "./support/tcp-proxy.js";
import { eventually, sleep } from "./support/wait.js";
import { Receiver, newSecret } from "./support/webhook-receiver.js";
import type { WireAction } from "./support/wire.js";

const track = cancelAfterEach();
const SECRET = newSecret();
const FALLBACK_MS = 200;
/** The fallback poll's interval, a claim statement and a round trip, with
 * ample room for a busy machine: still far below the backstop poll (an
 * hour), so what arrives within it was not woken by that. */
const BOUND_MS = 10_000;

/** A logger whose lines the test can read. */
function capturingLogger(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const text of chunk.toString("utf8").split("\n")) if (text.startsWith("{")) lines.push(JSON.parse(text) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: "info" }, sink), lines };
}

function metrics(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: "127.0.0.1", port, path: "/metrics" }, (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve(body));
      })
      .on("error", reject);
  });
}

const enqueue = (t: TestServer, request: Record<string, unknown>) =>
  t.grpc.unary<{ action: WireAction }>("EnqueueAction", { createdBy: "human:ann", ...request }).then((response) => response.action);

/** A claim stream that has looked once and found nothing: the server
 * counts it among the streams waiting for work, which on a loaded machine
 * may take a while. */
async function waitingStream(t: TestServer, request: { worker: string } & Record<string, unknown>): Promise<GrpcStream<ClaimStreamMessage>> {
  const stream = track(openClaimStream(t, request));
  await stream.until("the first heartbeat", () => stream.received.length > 0);
  await waitingFor(t, request.worker);
  return stream;
}

/** A watcher of the whole log that has had its opening heartbeat: it
 * follows the log live. */
async function liveWatch(t: TestServer) {
  const watch = track(openWatch(t, { afterId: "0" }));
  await watch.until("the watcher is live", () => watch.received.some((message) => message.kind === "heartbeat"));
  return watch;
}

/** Until the watcher has shown an event of the action. */
const eventOf = (watch: Awaited<ReturnType<typeof liveWatch>>, actionId: string, timeoutMs: number) =>
  watch.until(
    `an event of action ${actionId}`,
    () => watch.received.some((message) => message.kind === "event" && message.event.actionId === actionId),
    timeoutMs,
  );

describe("two servers without a direct LISTEN connection (ACTIONQ_LISTEN_URL=none)", () => {
  let a: TestServer;
  let b: TestServer;
  let receiver: Receiver;
  let dir: string;
  const logA = capturingLogger();
  beforeAll(async () => {
    receiver = await Receiver.start(SECRET);
    dir = await mkdtemp(path.join(tmpdir(), "actionq-listen-fallback-"));
    const policy = path.join(dir, "policy.yaml");
    await writeFile(policy, "name: fallback-test\nquorum: { guarded: 1 }\naction_types: { lf_change: guarded }\n");
    const webhooks = path.join(dir, "webhooks.yaml");
    await writeFile(
      webhooks,
      `retry: { initial: 50ms, max: 200ms }\nendpoints:\n  - name: all\n    url: ${receiver.url("/all")}\n    secret: ${SECRET}\n    events: [approval_requested]\n`,
    );
    const env = {
      ACTIONQ_LISTEN_URL: "none",
      ACTIONQ_FALLBACK_POLL_SECONDS: String(FALLBACK_MS / 1000),
      ACTIONQ_POLL_INTERVAL_SECONDS: "3600",
      ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600",
      ACTIONQ_ACK_TIMEOUT_SECONDS: "60",
      ACTIONQ_HEARTBEAT_SECONDS: "0.5",
      ACTIONQ_METRICS_LISTEN: "127.0.0.1:0",
      ACTIONQ_POLICY: policy,
    };
    a = await startTestServer(env, undefined, logA.log);
    // Only b sends webhooks: a's enqueues reach its sender by polling.
    b = await startTestServer({ ...env, ACTIONQ_WEBHOOKS_FILE: webhooks }, a.schema);
  });
  afterAll(async () => {
    // a last: closing a test server drops the shared schema.
    await closeWithin(b);
    await closeWithin(a);
    await receiver?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("says at start that it polls, how often and why, and opens no LISTEN connection", async () => {
    const line = logA.lines.find((entry) => String(entry.msg).startsWith("no direct LISTEN connection"));
    expect(line).toMatchObject({ reason: "ACTIONQ_LISTEN_URL=none", interval_ms: FALLBACK_MS });
    expect(logA.lines.find((entry) => entry.msg === "actionq is serving")).toMatchObject({ wakeups: `polling every ${FALLBACK_MS} ms` });
    expect(a.server.stats).toMatchObject({ listening: false, wakeups: "poll" });
  });

  it("shows the polling mode and the pool's saturation in the metrics", async () => {
    const body = await metrics(a.server.metricsPort!);
    expect(body).toContain('actionq_wakeup_mode{mode="listen"} 0');
    expect(body).toContain('actionq_wakeup_mode{mode="poll"} 1');
    expect(body).toContain("actionq_listen_connected 0");
    expect(body).toMatch(/actionq_db_pool_max_connections 9\b/);
    expect(body).toMatch(/actionq_db_pool_connections\{state="waiting"\} \d+/);
    expect(body).toMatch(/actionq_db_pool_wait_seconds_count [1-9]\d*/);
  });

  it("an enqueue on one server reaches a waiting stream on the other within the fallback poll", async () => {
    const stream = await waitingStream(b, { worker: "worker:lf1", actionTypes: ["lf_job"], maxInFlight: 2 });
    const started = Date.now();
    const action = await enqueue(a, { actionType: "lf_job", targetRef: "x/1" });
    const claim = await nthClaim(stream, 1, BOUND_MS);
    expect(claim.action.id).toBe(action.id);
    expect(Date.now() - started).toBeLessThan(BOUND_MS);
  });

  it("a cancel on one server ends the claim held by a stream on the other, whose freed slot gets the next action", async () => {
    const stream = await waitingStream(b, { worker: "worker:lf2", actionTypes: ["lf_slot"], maxInFlight: 1 });
    const first = await enqueue(a, { actionType: "lf_slot", targetRef: "x/2" });
    const claim = await nthClaim(stream, 1, BOUND_MS);
    await b.grpc.unary("AckClaim", { id: first.id, claimToken: claim.claimToken });
    const second = await enqueue(a, { actionType: "lf_slot", targetRef: "x/3" });
    // The stream is full: the second action waits for the first's slot.
    await sleep(3 * FALLBACK_MS);
    expect(claimsOf(stream)).toHaveLength(1);
    const cancelledAt = Date.now();
    await a.grpc.unary("CancelAction", { id: first.id, actor: "human:ann", reason: "not needed" });
    const next = await nthClaim(stream, 2, BOUND_MS);
    expect(next.action.id).toBe(second.id);
    expect(Date.now() - cancelledAt).toBeLessThan(BOUND_MS);
  });

  it("events committed through one server reach a watcher on the other", async () => {
    const watch = await liveWatch(b);
    const started = Date.now();
    const action = await enqueue(a, { actionType: "lf_watched", targetRef: "x/4" });
    await eventOf(watch, action.id, BOUND_MS);
    expect(Date.now() - started).toBeLessThan(BOUND_MS);
  });

  it("a webhook notification committed through one server is sent by the other's sender", async () => {
    const started = Date.now();
    const action = await enqueue(a, { actionType: "lf_change", targetRef: "x/5" });
    expect(action.status).toBe("ACTION_STATUS_PENDING");
    await eventually(() => receiver.received.some((request) => request.body.data?.action?.id === action.id), "the notification", BOUND_MS);
    expect(Date.now() - started).toBeLessThan(BOUND_MS);
  });
});

describe("a LISTEN URL other than ACTIONQ_URL", () => {
  let direct: TcpProxy;
  let listening: TestServer;
  let other: TestServer;
  beforeAll(async () => {
    // The LISTEN connection goes through a proxy of its own, so that the
    // test sees which connection is the LISTEN one and can cut it.
    other = await startTestServer({ ACTIONQ_POLL_INTERVAL_SECONDS: "3600" });
    const base = new URL(other.databaseUrl);
    direct = await TcpProxy.start(Number(base.port || 5432));
    base.hostname = "127.0.0.1";
    base.port = String(direct.port);
    listening = await startTestServer(
      { ACTIONQ_LISTEN_URL: base.toString(), ACTIONQ_POLL_INTERVAL_SECONDS: "3600", ACTIONQ_FALLBACK_POLL_SECONDS: "0.2", ACTIONQ_HEARTBEAT_SECONDS: "0.5" },
      other.schema,
    );
  });
  afterAll(async () => {
    await closeWithin(listening);
    await closeWithin(other);
    await direct?.close();
  });

  it("listens over that URL: one connection, named actionq-listen, and notifications arrive over it", async () => {
    expect(direct.stats.accepted).toBe(1);
    expect(listening.server.stats).toMatchObject({ listening: true, wakeups: "listen" });
    // The one connection through the proxy is the LISTEN connection.
    const { rows } = await other.db.query<{ application_name: string }>(
      "SELECT application_name FROM pg_stat_activity WHERE client_port = ANY($1::int[]) AND client_addr = '127.0.0.1'",
      [direct.upstreamPorts()],
    );
    expect(rows.map((row) => row.application_name)).toEqual(["actionq-listen"]);
    const stream = await waitingStream(listening, { worker: "worker:lu1", actionTypes: ["lu_job"], maxInFlight: 1 });
    const action = await enqueue(other, { actionType: "lu_job", targetRef: "y/1" });
    expect((await nthClaim(stream, 1, BOUND_MS)).action.id).toBe(action.id);
  });

  it("polls while that connection is lost, and listens again once it is back", async () => {
    const stream = await waitingStream(listening, { worker: "worker:lu2", actionTypes: ["lu_cut"], maxInFlight: 4 });
    direct.refuse(true);
    expect(direct.cut()).toBe(1);
    await eventually(() => listening.server.stats.wakeups === "poll", "the fallback to polling");
    const action = await enqueue(other, { actionType: "lu_cut", targetRef: "y/2" });
    expect((await nthClaim(stream, 1, BOUND_MS)).action.id).toBe(action.id);
    direct.refuse(false);
    // The reconnection backs off up to 5 s between attempts.
    await eventually(() => listening.server.stats.wakeups === "listen", "LISTEN restored", 20_000);
    const again = await enqueue(other, { actionType: "lu_cut", targetRef: "y/3" });
    expect((await nthClaim(stream, 2, BOUND_MS)).action.id).toBe(again.id);
  });
});

describe("a polling server's own commits", () => {
  /** Generous, and still well under the 60 s poll: what arrives within it
   * was woken by the commit itself. */
  const OWN_BOUND_MS = 10_000;
  let t: TestServer;
  beforeAll(async () => {
    // A one-minute poll (the longest allowed), and no handoff: only the
    // commit itself can be prompt.
    t = await startTestServer({
      ACTIONQ_LISTEN_URL: "none",
      ACTIONQ_FALLBACK_POLL_SECONDS: "60",
      ACTIONQ_POLL_INTERVAL_SECONDS: "3600",
      ACTIONQ_HANDOFF: "off",
      ACTIONQ_HEARTBEAT_SECONDS: "0.5",
    });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("wake its own streams and watchers at once, without waiting for the poll", async () => {
    const stream = await waitingStream(t, { worker: "worker:own", actionTypes: ["own_job"], maxInFlight: 2 });
    const watch = await liveWatch(t);
    const started = Date.now();
    const action = await enqueue(t, { actionType: "own_job", targetRef: "z/1" });
    expect((await nthClaim(stream, 1, OWN_BOUND_MS)).action.id).toBe(action.id);
    await eventOf(watch, action.id, OWN_BOUND_MS);
    expect(Date.now() - started).toBeLessThan(OWN_BOUND_MS);
  });

  it("show its watchers an import of finished actions at once, though nothing will claim them", async () => {
    const watch = await liveWatch(t);
    const started = Date.now();
    const externalId = crypto.randomUUID();
    const { results } = await t.grpc.unary<{ results: { ok: { action: WireAction } }[] }>("ImportActions", {
      actor: "human:ops",
      actions: [
        {
          externalId,
          status: "ACTION_STATUS_COMPLETED",
          createTime: { seconds: String(Math.floor(Date.now() / 1000) - 3600) },
          createdBy: "supervisor",
          actionType: "own_import",
          riskLevel: "RISK_LEVEL_SAFE",
        },
      ],
    });
    const id = results[0]!.ok.action.id;
    await eventOf(watch, id, OWN_BOUND_MS);
    expect(Date.now() - started).toBeLessThan(OWN_BOUND_MS);
  });
});

describe("behind a transaction pooler with no ACTIONQ_LISTEN_URL", () => {
  it("polls, saying why, since a LISTEN through the pooler would never hear anything", async () => {
    const { log, lines } = capturingLogger();
    // The pooler setting only drops startup options and named statements,
    // so PostgreSQL itself stands in for the pooler here.
    const t = await startTestServer({ ACTIONQ_DATABASE_POOLER: "transaction" }, undefined, log);
    try {
      expect(t.server.stats).toMatchObject({ listening: false, wakeups: "poll" });
      const line = lines.find((entry) => String(entry.msg).startsWith("no direct LISTEN connection"));
      expect(String(line?.reason)).toContain("ACTIONQ_DATABASE_POOLER=transaction and no ACTIONQ_LISTEN_URL");
      expect(line?.interval_ms).toBe(250);
    } finally {
      await closeWithin(t);
    }
  });
});
