// Schedules over the wire: creating, reading, listing, changing, pausing,
// resuming, deleting and backfilling them; the refusals that write nothing;
// and a one-second schedule enqueuing each tick once.
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, closeWithin, startTestServer } from "./support/harness.js";
import {
  actionsPerTick,
  at,
  backfill,
  createSchedule,
  deleteSchedule,
  getSchedule,
  pauseSchedule,
  resumeSchedule,
  retrying,
  seconds,
  ticksOf,
} from "./support/schedules.js";
import { eventually, sleep } from "./support/wait.js";
import { type WireEvent, expectRefused, fromStruct, getAction, millis, toStruct } from "./support/wire.js";

const template = (actionType: string, extra: Record<string, unknown> = {}) => ({ actionType, project: "ops", targetRef: "host:web-1", ...extra });

async function scheduleRows(t: TestServer): Promise<number> {
  const { rows } = await t.db.query<{ n: number }>("SELECT (SELECT count(*) FROM schedules) + (SELECT count(*) FROM schedule_ticks) AS n");
  return Number(rows[0]!.n);
}

async function scheduleEvents(t: TestServer, types: string[]): Promise<WireEvent[]> {
  return (await t.grpc.unary<{ events: WireEvent[] }>("ListEvents", { eventTypes: types, pageSize: 1000 })).events;
}

describe("schedules on one server", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_POLL_INTERVAL_SECONDS: "30", ACTIONQ_RETENTION_SECONDS: "60", ACTIONQ_SWEEP_INTERVAL_SECONDS: "0.2" });
  });
  afterAll(() => closeWithin(t));

  it("creates a schedule, shows it with its next ticks, and lists it", async () => {
    const created = await createSchedule(t, {
      id: "nightly-diagnostics",
      template: template("diagnostics.run", { payload: toStruct({ depth: "full" }) }),
      cron: "30 2 * * *",
      timeZone: "Europe/Berlin",
      description: "diagnostics every night",
    });
    expect(created.schedule).toMatchObject({
      id: "nightly-diagnostics",
      cron: "30 2 * * *",
      timeZone: "Europe/Berlin",
      owner: "human:owner",
      paused: false,
      revision: "1",
    });
    expect(created.schedule.overlapPolicy).toBe("SCHEDULE_POLICY_OVERLAP_SKIP");
    const got = await getSchedule(t, "nightly-diagnostics");
    expect(got.upcomingTickTimes).toHaveLength(5);
    const next = millis(got.schedule.nextTickTime);
    expect(next).toBe(millis(got.upcomingTickTimes[0]));
    expect(new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/Berlin", hour: "2-digit", minute: "2-digit" }).format(next)).toBe("02:30");
    expect(fromStruct(got.schedule.template.payload as never)).toEqual({ depth: "full" });
    const list = await t.grpc.unary<{ schedules: { id: string }[]; nextPageToken: string }>("ListSchedules", { project: "ops" });
    expect(list.schedules.map((s) => s.id)).toContain("nightly-diagnostics");
    const [event] = await scheduleEvents(t, ["schedule_created"]);
    expect(event).toMatchObject({ actionId: "0", actor: "human:owner" });
    expect(fromStruct(event!.payload)).toMatchObject({ schedule_id: "nightly-diagnostics", cron: "30 2 * * *" });
  });

  it("refuses a second schedule with the same id, and lets the id be used again after delete", async () => {
    await createSchedule(t, { id: "reused", template: template("noop"), interval: seconds(3600) });
    await expectRefused(t, () => createSchedule(t, { id: "reused", template: template("noop"), interval: seconds(3600) }), {
      code: status.ALREADY_EXISTS,
      reason: "SCHEDULE_EXISTS",
    });
    const deleted = await deleteSchedule(t, "reused");
    expect(deleted.schedule.id).toBe("reused");
    await expectRefused(t, () => getSchedule(t, "reused"), { code: status.NOT_FOUND, reason: "SCHEDULE_NOT_FOUND" });
    await createSchedule(t, { id: "reused", template: template("noop"), interval: seconds(7200) });
    expect((await getSchedule(t, "reused")).schedule.interval).toEqual({ seconds: "7200", nanos: 0 });
    expect((await scheduleEvents(t, ["schedule_deleted"])).length).toBeGreaterThanOrEqual(1);
  });

  it("refuses bad clocks, zones and templates with INVALID_ARGUMENT naming the field, writing nothing", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ id: "bad", template: template("noop"), cron: "61 * * * *" }, "schedule.cron"],
      [{ id: "bad", template: template("noop"), cron: "* * *" }, "schedule.cron"],
      [{ id: "bad", template: template("noop"), cron: "0 3 * * *", timeZone: "Mars/Olympus_Mons" }, "schedule.time_zone"],
      [{ id: "bad", template: template("noop") }, "schedule.cron"],
      [{ id: "bad", template: template("noop"), interval: seconds(0.5) }, "schedule.interval"],
      [{ id: "bad", template: template("noop"), interval: seconds(10), jitter: seconds(11) }, "schedule.jitter"],
      [{ id: "bad", template: template("noop"), cron: "*/5 * * * *", jitter: seconds(301) }, "schedule.jitter"],
      [{ id: "bad", template: template("not a type!"), interval: seconds(10) }, "schedule.template.action_type"],
      [{ id: "bad", template: template("noop", { createdBy: "human:mallory" }), interval: seconds(10) }, "schedule.template.created_by"],
      [{ id: "bad", template: template("noop", { idempotencyKey: "k" }), interval: seconds(10) }, "schedule.template.idempotency_key"],
      [{ id: "bad", template: template("noop", { confidence: 2 }), interval: seconds(10) }, "schedule.template.confidence"],
      [{ id: "bad", interval: seconds(10) }, "schedule.template"],
      [{ id: "no spaces", template: template("noop"), interval: seconds(10) }, "schedule.id"],
    ];
    const before = await scheduleRows(t);
    for (const [schedule, field] of cases) {
      await expectRefused(t, () => createSchedule(t, schedule), { code: status.INVALID_ARGUMENT, reason: "INVALID_FIELD", field });
    }
    expect(await scheduleRows(t)).toBe(before);
  });

  it("updates a schedule, refusing a stale revision, and records what changed", async () => {
    const { schedule } = await createSchedule(t, { id: "updated", template: template("noop"), interval: seconds(3600) });
    const updated = await t.grpc.unary<{ schedule: { revision: string; cron: string } }>("UpdateSchedule", {
      schedule: { id: "updated", template: template("noop", { priority: 5 }), cron: "0 * * * *" },
      expectedRevision: schedule.revision,
      actor: "human:owner",
    });
    expect(updated.schedule).toMatchObject({ revision: "2", cron: "0 * * * *" });
    await expectRefused(
      t,
      () =>
        t.grpc.unary("UpdateSchedule", {
          schedule: { id: "updated", template: template("noop"), cron: "0 * * * *" },
          expectedRevision: schedule.revision,
          actor: "human:owner",
        }),
      { code: status.FAILED_PRECONDITION, reason: "SCHEDULE_REVISION_MISMATCH" },
    );
    const events = await scheduleEvents(t, ["schedule_updated"]);
    expect(fromStruct(events.at(-1)!.payload)).toMatchObject({ schedule_id: "updated", changed: ["template", "cron", "interval"] });
  });

  it("enqueues one action per tick of a one-second schedule, naming the schedule and tick", async () => {
    await createSchedule(t, {
      id: "every-second",
      template: template("health.check"),
      interval: seconds(1),
      overlapPolicy: "SCHEDULE_POLICY_OVERLAP_ALLOW_ALL",
    });
    // Three ticks, however long a loaded machine takes to act on them.
    await eventually(async () => (await actionsPerTick(t, "every-second")).size >= 3, "three ticks of the schedule");
    await pauseSchedule(t, "every-second");
    const perTick = await actionsPerTick(t, "every-second");
    expect(perTick.size).toBeGreaterThanOrEqual(3);
    expect([...perTick.values()].every((n) => n === 1)).toBe(true);
    const ticks = [...perTick.keys()];
    for (let i = 1; i < ticks.length; i++) expect(ticks[i]! - ticks[i - 1]!).toBe(1000);
    const { rows } = await t.db.query<{ id: string; created_at: Date; tick: Date }>(
      "SELECT id::text, created_at, schedule_tick_time AS tick FROM actions WHERE schedule_id = 'every-second' ORDER BY id",
    );
    // Enqueued when due, not caught up later: under the 5 s after which a
    // tick counts as missed (a loaded CI machine may be slow; how late a
    // tick is, is for the bench to say).
    for (const row of rows) expect(row.created_at.getTime() - row.tick.getTime()).toBeLessThan(5000);
    const { action, events } = await getAction(t, rows[0]!.id);
    expect(action).toMatchObject({ scheduleId: "every-second", createdBy: "human:owner" });
    expect(millis((action as unknown as { scheduleTickTime: never }).scheduleTickTime)).toBe(rows[0]!.tick.getTime());
    expect(fromStruct(events[0]!.payload)).toMatchObject({
      schedule_id: "every-second",
      schedule_tick_time: rows[0]!.tick.toISOString().replace(".000Z", "Z"),
    });
    const got = await getSchedule(t, "every-second");
    expect(got.recentTicks[0]).toMatchObject({ outcome: "SCHEDULE_TICK_OUTCOME_ENQUEUED" });
    expect(got.schedule.lastTick?.outcome).toBe("SCHEDULE_TICK_OUTCOME_ENQUEUED");
  });

  it("jitter delays each action's run_after by up to the jitter, leaving the tick time nominal", async () => {
    await createSchedule(t, {
      id: "jittered",
      template: template("noop.jitter"),
      interval: seconds(1),
      jitter: seconds(0.9),
      overlapPolicy: "SCHEDULE_POLICY_OVERLAP_ALLOW_ALL",
    });
    await eventually(
      async () => (await t.db.query("SELECT 1 FROM actions WHERE schedule_id = 'jittered'")).rowCount! >= 2,
      "two ticks of the jittered schedule",
    );
    await pauseSchedule(t, "jittered");
    const { rows } = await t.db.query<{ tick: Date; run_after: Date | null }>(
      "SELECT schedule_tick_time AS tick, run_after FROM actions WHERE schedule_id = 'jittered' ORDER BY id",
    );
    expect(rows.length).toBeGreaterThanOrEqual(2);
    for (const row of rows) {
      expect(row.tick.getTime() % 1000, "ticks stay on the clock").toBe(rows[0]!.tick.getTime() % 1000);
      const delay = row.run_after === null ? 0 : row.run_after.getTime() - row.tick.getTime();
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThanOrEqual(900);
    }
  });

  it("a paused schedule enqueues nothing and resumes on its next tick", async () => {
    await createSchedule(t, { id: "pausable", template: template("noop.pausable"), interval: seconds(1), overlapPolicy: "SCHEDULE_POLICY_OVERLAP_ALLOW_ALL" });
    const paused = await pauseSchedule(t, "pausable");
    expect(paused).toMatchObject({ changed: true, schedule: { paused: true, pauseReason: "maintenance", nextTickTime: null } });
    expect((await pauseSchedule(t, "pausable")).changed).toBe(false);
    await sleep(2200);
    expect((await actionsPerTick(t, "pausable")).size).toBe(0);
    const resumedAt = Date.now();
    const resumed = await resumeSchedule(t, "pausable");
    expect(resumed.changed).toBe(true);
    const next = millis(resumed.schedule.nextTickTime);
    // Not in the past (the ticks missed while paused are not caught up):
    // after the call was sent, however long its answer took.
    expect(next).toBeGreaterThan(resumedAt - 50);
    expect(next).toBeLessThanOrEqual(Date.now() + 1000);
    const perTick = await eventually(async () => {
      const found = await actionsPerTick(t, "pausable");
      return found.size > 0 ? found : undefined;
    }, "the first tick after the resume");
    expect([...perTick!.keys()][0]).toBe(next);
    await pauseSchedule(t, "pausable");
    expect(await ticksOf(t, "pausable")).not.toContainEqual(expect.objectContaining({ outcome: "skipped_catch_up" }));
  });

  it("backfills the ticks of a past interval once each, however often it is asked", async () => {
    await createSchedule(t, { id: "backfilled", template: template("noop.backfill"), cron: "0 */15 * * * *", timeZone: "UTC" });
    const start = "2026-01-01T00:00:00Z";
    const end = "2026-01-01T01:00:00Z";
    const first = await backfill(t, "backfilled", start, end);
    expect(first.ticks.map((tick) => new Date(millis(tick.tickTime)).toISOString())).toEqual([
      "2026-01-01T00:00:00.000Z",
      "2026-01-01T00:15:00.000Z",
      "2026-01-01T00:30:00.000Z",
      "2026-01-01T00:45:00.000Z",
    ]);
    expect(first.ticks.every((tick) => tick.outcome === "SCHEDULE_TICK_OUTCOME_ENQUEUED" && tick.backfill)).toBe(true);
    const again = await backfill(t, "backfilled", start, end);
    expect(again.ticks.map((tick) => tick.actionId)).toEqual(first.ticks.map((tick) => tick.actionId));
    expect([...(await actionsPerTick(t, "backfilled")).values()]).toEqual([1, 1, 1, 1]);
    await expectRefused(t, () => backfill(t, "backfilled", end, start), { code: status.INVALID_ARGUMENT, reason: "INVALID_FIELD", field: "end_time" });
    await expectRefused(t, () => backfill(t, "backfilled", start, new Date(Date.now() + 3_600_000)), {
      code: status.INVALID_ARGUMENT,
      reason: "INVALID_FIELD",
      field: "end_time",
    });
    await expectRefused(t, () => backfill(t, "missing", start, end), { code: status.NOT_FOUND, reason: "SCHEDULE_NOT_FOUND" });
  });

  it("start and end times bound the ticks", async () => {
    const start = new Date(Math.ceil(Date.now() / 1000) * 1000 + 3_600_000);
    const { schedule } = await createSchedule(t, {
      id: "bounded",
      template: template("noop"),
      interval: seconds(600),
      startTime: at(start),
      endTime: at(new Date(start.getTime() + 1_500_000)),
    });
    expect(millis(schedule.nextTickTime)).toBe(start.getTime());
    const got = await getSchedule(t, "bounded");
    expect(got.upcomingTickTimes.map(millis)).toEqual([start.getTime(), start.getTime() + 600_000, start.getTime() + 1_200_000]);
  });

  it("prunes tick records that enqueued nothing after the retention age, keeping those with an action", async () => {
    await createSchedule(t, { id: "pruned", template: template("noop.pruned"), cron: "0 0 * * * *" });
    await backfill(t, "pruned", "2026-02-01T00:00:00Z", "2026-02-01T02:00:00Z");
    const key = "(SELECT key FROM schedules WHERE id = 'pruned' AND deleted_at IS NULL)";
    await t.db.query(
      `INSERT INTO schedule_ticks (schedule_key, tick_time, outcome, reason, recorded_at)
       VALUES (${key}, '2026-02-01T05:00:00Z', 'skipped_overlap', 'old', now() - interval '2 minutes'),
              (${key}, '2026-02-01T06:00:00Z', 'skipped_overlap', 'recent', now())`,
    );
    await t.db.query(`UPDATE schedule_ticks SET recorded_at = now() - interval '2 minutes' WHERE schedule_key = ${key} AND outcome = 'enqueued'`);
    await retrying(async () => expect((await ticksOf(t, "pruned")).map((tick) => tick.reason)).not.toContain("old"), "the old skipped tick pruned");
    expect((await ticksOf(t, "pruned")).map((tick) => tick.outcome)).toEqual(["enqueued", "enqueued", "skipped_overlap"]);
  });
});
