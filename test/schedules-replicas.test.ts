// Several servers on one database, each running the scheduler (or not):
// every tick of a one-second schedule is enqueued exactly once, none is
// missed, and when one scheduler stops the others carry on without a gap.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, closeWithin, startTestServer } from "./support/harness.js";
import { actionsPerTick, backfill, createSchedule, pauseSchedule, seconds, ticksOf } from "./support/schedules.js";
import { eventually } from "./support/wait.js";

describe("schedules on three servers of one database", () => {
  let a: TestServer;
  let b: TestServer;
  let off: TestServer;
  beforeAll(async () => {
    a = await startTestServer();
    b = await startTestServer({}, a.schema);
    off = await startTestServer({ ACTIONQ_SCHEDULER: "off", ACTIONQ_METRICS_LISTEN: "127.0.0.1:0" }, a.schema);
  });
  afterAll(async () => {
    // a last: closing a test server drops the shared schema.
    await closeWithin(off);
    await closeWithin(b);
    await closeWithin(a);
  });

  it("enqueues each tick of a one-second schedule once, with no gap, also after one scheduler stops", { timeout: 30_000 }, async () => {
    // Created on the server that does not schedule: the others find it.
    await createSchedule(off, {
      id: "replicated",
      template: { actionType: "replica.tick" },
      interval: seconds(1),
      overlapPolicy: "SCHEDULE_POLICY_OVERLAP_ALLOW_ALL",
    });
    // Waiting for ticks, not for time: a loaded machine may act on them late.
    await eventually(async () => (await actionsPerTick(b, "replicated")).size >= 3, "three ticks while both schedulers run");
    // One scheduler stops (its database connections with it); the other goes on.
    await a.server.close();
    const stoppedAt = Date.now();
    await eventually(
      async () => [...(await actionsPerTick(b, "replicated")).keys()].filter((tick) => tick > stoppedAt).length >= 2,
      "two ticks after one scheduler stopped",
    );
    await pauseSchedule(b, "replicated");
    const perTick = await actionsPerTick(b, "replicated");
    expect(perTick.size).toBeGreaterThanOrEqual(5);
    expect(
      [...perTick.entries()].filter(([, n]) => n !== 1),
      "ticks with other than one action",
    ).toEqual([]);
    const ticks = [...perTick.keys()];
    for (let i = 1; i < ticks.length; i++) expect(ticks[i]! - ticks[i - 1]!, `gap after tick ${i}`).toBe(1000);
    // Every tick recorded once, each with its action, each on time.
    const recorded = await ticksOf(b, "replicated");
    expect(recorded.map((tick) => tick.outcome)).toEqual(ticks.map(() => "enqueued"));
    const { rows } = await b.db.query<{ late_ms: number }>(
      "SELECT (extract(epoch FROM created_at - schedule_tick_time) * 1000)::float8 AS late_ms FROM actions WHERE schedule_id = 'replicated'",
    );
    // Enqueued when due, not caught up: under the 5 s after which a tick
    // counts as missed.
    expect(Math.max(...rows.map((row) => row.late_ms))).toBeLessThan(5000);
    // The server with ACTIONQ_SCHEDULER=off acted on none of them.
    const metrics = await (await fetch(`http://127.0.0.1:${off.server.metricsPort}/metrics`)).text();
    expect(metrics).not.toMatch(/^actionq_schedule_ticks_total\{/m);
  });

  it("backfills of one interval racing on two servers enqueue each tick once, and both answer with the same actions", async () => {
    await createSchedule(b, { id: "raced", template: { actionType: "replica.backfill" }, cron: "*/10 * * * *", timeZone: "UTC" });
    const [fromB, fromOff] = await Promise.all([
      backfill(b, "raced", "2026-06-01T00:00:00Z", "2026-06-01T02:00:00Z"),
      backfill(off, "raced", "2026-06-01T00:00:00Z", "2026-06-01T02:00:00Z"),
    ]);
    expect(fromB.ticks).toHaveLength(12);
    expect(fromB.ticks.map((tick) => tick.actionId)).toEqual(fromOff.ticks.map((tick) => tick.actionId));
    const perTick = await actionsPerTick(b, "raced");
    expect(perTick.size).toBe(12);
    expect([...perTick.values()].every((n) => n === 1)).toBe(true);
  });

  it("the database itself refuses a second action for the same schedule and tick", async () => {
    const { rows } = await b.db.query<{ id: string }>("SELECT id::text FROM actions WHERE schedule_id = 'raced' ORDER BY id LIMIT 1");
    // The same row under a new id: only the tick makes it a duplicate.
    const copy = b.db.query(
      `INSERT INTO actions SELECT (jsonb_populate_record(NULL::actions, to_jsonb(a) || jsonb_build_object('id', nextval('actions_id_seq')))).*
       FROM actions a WHERE id = $1`,
      [rows[0]!.id],
    );
    await expect(copy).rejects.toThrow(/actions_one_per_tick/);
  });
});
