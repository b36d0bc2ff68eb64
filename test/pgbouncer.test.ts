// actionq through a real PgBouncer 1.18 in transaction mode
// (ACTIONQ_DATABASE_POOLER=transaction), three replicas on one schema. Every
// statement may run on a different server connection, whose search_path is
// `public` (PgBouncer's connect_query sets it): nothing may rely on startup
// options, session settings, named prepared statements or session
// advisory locks. The three replicas start at once, so their migrations
// race through the pooler too. LISTEN needs a direct connection: with
// ACTIONQ_LISTEN_URL (the listen branch) it goes straight to PostgreSQL;
// before that setting exists the polling backstop carries the wakeups.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SETTINGS } from "../src/config.js";
import { databaseUrl, freshSchema } from "./support/database.js";
import { type TestServer, closeWithin, startTestServer } from "./support/harness.js";
import { requireBuiltCli, runToEnd } from "./support/processes.js";
import { PGBOUNCER_MISSING, type PgBouncer, startPgBouncer } from "./support/pgbouncer.js";
import { actionsPerTick, createSchedule, deleteSchedule, seconds } from "./support/schedules.js";
import { type ClaimStreamMessage, type GrpcStream, cancelAfterEach, nthClaim, openClaimStream, openWatch, waitingFor } from "./support/streams.js";
import { eventually, sleep } from "./support/wait.js";
import { type Received, Receiver, newSecret } from "./support/webhook-receiver.js";
import type { WireAction, WireClaim } from "./support/wire.js";

if (PGBOUNCER_MISSING) console.warn(PGBOUNCER_MISSING);

/** Whether this build has ACTIONQ_LISTEN_URL (the listen branch). */
const DIRECT_LISTEN = SETTINGS.some((setting) => setting.env === "ACTIONQ_LISTEN_URL");
const SECRET = newSecret();

describe.skipIf(PGBOUNCER_MISSING !== undefined)("three replicas through PgBouncer in transaction mode", () => {
  let bouncer: PgBouncer;
  let receiver: Receiver;
  let dir: string;
  const schema = freshSchema("pgbouncer");
  const replicas: TestServer[] = [];
  const track = cancelAfterEach();

  beforeAll(async () => {
    bouncer = await startPgBouncer(databaseUrl(), { connectQuery: "SET search_path TO public" });
    receiver = await Receiver.start(SECRET);
    dir = await mkdtemp(path.join(tmpdir(), "actionq-pgbouncer-test-"));
    const webhooks = path.join(dir, "webhooks.yaml");
    await writeFile(
      webhooks,
      `retry: { initial: 100ms, max: 1s }\nendpoints:\n  - { name: pooled, url: "${receiver.url("/pooled")}", secret: "${SECRET}", events: [approval_requested, action_failed] }\n`,
    );
    const env = {
      ACTIONQ_URL: bouncer.url,
      ACTIONQ_DATABASE_POOLER: "transaction",
      ...(DIRECT_LISTEN ? { ACTIONQ_LISTEN_URL: databaseUrl() } : { ACTIONQ_POLL_INTERVAL_SECONDS: "0.2" }),
      ACTIONQ_WEBHOOKS_FILE: webhooks,
      ACTIONQ_SWEEP_INTERVAL_SECONDS: "0.2",
      ACTIONQ_RETRY_BACKOFF_SECONDS: "0.05",
      ACTIONQ_POOL_SIZE: "4",
    };
    const started = await Promise.allSettled([0, 1, 2].map(() => startTestServer(env, schema)));
    for (const result of started) if (result.status === "fulfilled") replicas.push(result.value);
    const failed = started.find((result) => result.status === "rejected");
    if (failed) throw new Error(`a replica did not start through PgBouncer: ${(failed.reason as Error).message}\n${bouncer.log()}`);
  }, 60_000);

  afterAll(async () => {
    for (const replica of replicas) await replica.server.close();
    for (const replica of replicas) await closeWithin(replica);
    await receiver?.close();
    await bouncer?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const a = () => replicas[0]!;
  const b = () => replicas[1]!;
  const c = () => replicas[2]!;
  const unary = <T>(t: TestServer, method: string, request: Record<string, unknown>) => t.grpc.unary<T>(method, request);
  const enqueue = (t: TestServer, request: Record<string, unknown>) =>
    unary<{ action: WireAction }>(t, "EnqueueAction", { project: "pooled", createdBy: "human:ann", ...request }).then((response) => response.action);

  /** A claim stream that has looked once and found nothing. */
  async function waitingStream(t: TestServer, actionTypes: string[]): Promise<GrpcStream<ClaimStreamMessage>> {
    const worker = `worker:${actionTypes[0]}`;
    const stream = track(openClaimStream(t, { worker, actionTypes, maxInFlight: 4, leaseDuration: { seconds: 60 } }));
    await stream.until("the first heartbeat", () => stream.received.length > 0);
    await waitingFor(t, worker);
    return stream;
  }

  it("PgBouncer refuses the startup option the server used to send, and its connections search elsewhere", async () => {
    const withOptions = new pg.Client({ connectionString: bouncer.url, options: "-c jit=off" });
    withOptions.on("error", () => {});
    await expect(withOptions.connect()).rejects.toThrow(/unsupported startup parameter: options/);
    await withOptions.end().catch(() => {});
    const plain = new pg.Client({ connectionString: bouncer.url });
    await plain.connect();
    try {
      expect((await plain.query("SHOW search_path")).rows[0].search_path).toBe("public");
      // Every migration once, though three servers migrated at once.
      const { rows } = await plain.query(`SELECT count(*)::int AS n, count(DISTINCT id)::int AS d FROM "${schema}".schema_migrations`);
      expect(rows[0].n).toBe(rows[0].d);
      expect(rows[0].n).toBeGreaterThanOrEqual(12);
    } finally {
      await plain.end();
    }
  });

  it("actionq migrate through the pooler: without the setting it says which to set, with it the schema is brought up to date", async () => {
    requireBuiltCli();
    const other = freshSchema("pgbouncer_migrate");
    const env = { ACTIONQ_URL: bouncer.url, ACTIONQ_SCHEMA: other };
    const refused = await runToEnd(["migrate"], env);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/unsupported startup parameter: options.*Set ACTIONQ_DATABASE_POOLER=transaction/);
    try {
      const migrated = await runToEnd(["migrate"], { ...env, ACTIONQ_DATABASE_POOLER: "transaction" });
      expect(migrated.code, migrated.stderr).toBe(0);
      expect(JSON.parse(migrated.stdout.trim().split("\n").at(-1)!)).toMatchObject({ schema: other, applied: expect.arrayContaining([1, 12]) });
    } finally {
      await a().db.query(`DROP SCHEMA IF EXISTS "${other}" CASCADE`);
    }
  });

  it("enqueue on one replica, stream claims on another, ack and complete on the third; watch sees it all in order", async () => {
    const watch = track(openWatch(c(), { afterId: 0 }));
    const stream = await waitingStream(b(), ["pooled_job"]);
    const action = await enqueue(a(), { actionType: "pooled_job", targetRef: "host:1" });
    const claim = await nthClaim(stream, 1, 15_000);
    expect(claim.action.id).toBe(action.id);
    await unary(c(), "AckClaim", { id: action.id, claimToken: claim.claimToken });
    const done = await unary<{ action: WireAction }>(a(), "CompleteAction", { id: action.id, claimToken: claim.claimToken, resultRef: "ok" });
    expect(done.action.status).toBe("ACTION_STATUS_COMPLETED");
    const mine = () => watch.received.flatMap((message) => (message.kind === "event" && message.event.actionId === action.id ? [message.event.eventType] : []));
    await watch.until("the completion in the watch", () => mine().includes("action_completed"), 15_000);
    const events = (await unary<{ events: { eventType: string }[] }>(b(), "GetAction", { id: action.id })).events.map((event) => event.eventType);
    expect(mine()).toEqual(events);
    expect(events[0]).toBe("action_enqueued");
    expect(events).toContain("action_claimed");
    expect(events.at(-1)).toBe("action_completed");
  });

  it("approval, a failure with a retry, and the final failure, across replicas; webhooks sent once by one replica", async () => {
    const stream = await waitingStream(c(), ["pooled_risky"]);
    const pending = await enqueue(a(), { actionType: "pooled_risky", riskLevel: "RISK_LEVEL_GUARDED", createdBy: "agent:bot", maxAttempts: 2 });
    expect(pending.status).toBe("ACTION_STATUS_PENDING");
    await unary(b(), "ApproveAction", { id: pending.id, approver: "human:alice", note: "fine" });
    const first = await nthClaim(stream, 1, 15_000);
    expect(first.action).toMatchObject({ id: pending.id, attempt: 1 });
    const retried = await unary<{ action: WireAction }>(a(), "FailAction", { id: pending.id, claimToken: first.claimToken, reason: "flaky", retryable: true });
    expect(retried.action.status).toBe("ACTION_STATUS_APPROVED");
    const second: WireClaim = await nthClaim(stream, 2, 15_000);
    expect(second.action).toMatchObject({ id: pending.id, attempt: 2 });
    const failed = await unary<{ action: WireAction }>(b(), "FailAction", { id: pending.id, claimToken: second.claimToken, reason: "again", retryable: true });
    expect(failed.action.status).toBe("ACTION_STATUS_FAILED");

    const about = () => receiver.delivered("/pooled").filter((r: Received) => String(r.body.data?.event.actionId) === pending.id);
    const deadline = Date.now() + 20_000;
    while (about().length < 2 && Date.now() < deadline) await sleep(50);
    expect(about().map((r) => r.body.type)).toEqual(["approval_requested", "action_failed"]);
    expect(new Set(receiver.delivered("/pooled").map((r) => r.id)).size).toBe(receiver.delivered("/pooled").length);
    // One replica holds the endpoint's lease.
    const { rows } = await a().db.query("SELECT lease_holder FROM webhook_endpoints WHERE name = 'pooled'");
    expect(rows[0].lease_holder).toEqual(expect.any(String));
  });

  it("a pause on one replica holds a stream on another until a third resumes", async () => {
    const scope = { kind: "PAUSE_KIND_ACTION_TYPE", value: "pooled_paused" };
    await unary(a(), "PauseClaims", { scope, actor: "human:ops", reason: "maintenance" });
    const stream = await waitingStream(b(), ["pooled_paused"]);
    const action = await enqueue(a(), { actionType: "pooled_paused" });
    await sleep(600);
    expect(stream.received.filter((message) => message.kind === "claim")).toEqual([]);
    await unary(c(), "ResumeClaims", { scope, actor: "human:ops", reason: "done" });
    expect((await nthClaim(stream, 1, 15_000)).action.id).toBe(action.id);
  });

  it("a one-second schedule run by three schedulers enqueues each tick once", async () => {
    await createSchedule(a(), {
      id: "pooled-every-second",
      template: { actionType: "pooled_tick", project: "pooled", targetRef: "host:1" },
      interval: seconds(1),
      overlapPolicy: "SCHEDULE_POLICY_OVERLAP_ALLOW_ALL",
    });
    // Ticks, not time: a loaded machine may act on them late.
    await eventually(async () => (await actionsPerTick(c(), "pooled-every-second")).size >= 3, "three ticks of the schedule");
    await deleteSchedule(b(), "pooled-every-second");
    const perTick = await actionsPerTick(c(), "pooled-every-second");
    expect(perTick.size).toBeGreaterThanOrEqual(3);
    expect([...perTick.values()].every((n) => n === 1)).toBe(true);
  });
});
