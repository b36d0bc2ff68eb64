// What a schedule's tick does around it: the overlap policies with a slow
// worker (one that claims the tick's action and holds it), catch-up after
// a time when no scheduler ran, the approval policy and the owner's rate
// limit applied to scheduled actions as to any other, and backfills over
// the 2026 daylight-saving changes.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, closeWithin, startTestServer } from "./support/harness.js";
import { type WireTick, actionsPerTick, backfill, createSchedule, getSchedule, pauseSchedule, retrying, seconds, ticksOf } from "./support/schedules.js";
import { type WireClaim, type WireEvent, fromStruct, getAction, millis } from "./support/wire.js";

const template = (actionType: string, extra: Record<string, unknown> = {}) => ({ actionType, project: "ops", ...extra });

/** A slow worker: claims the schedule's next action and holds it. */
async function claimHeld(t: TestServer, actionType: string): Promise<WireClaim> {
  return retrying(async () => {
    const res = await t.grpc.unary<{ claim: WireClaim | null }>("ClaimAction", { worker: "worker:slow", actionTypes: [actionType] });
    if (!res.claim) throw new Error(`nothing of ${actionType} to claim yet`);
    return res.claim;
  }, `an action of ${actionType}`);
}

const complete = (t: TestServer, claim: WireClaim) => t.grpc.unary("CompleteAction", { id: claim.action.id, claimToken: claim.claimToken, resultRef: "done" });

async function outcomes(t: TestServer, id: string): Promise<string[]> {
  return (await ticksOf(t, id)).map((tick) => tick.outcome);
}

describe("schedules under their policies", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_RATE_LIMIT_PER_HOUR: "2", ACTIONQ_METRICS_LISTEN: "127.0.0.1:0" });
  });
  afterAll(() => closeWithin(t));

  it("SKIP: ticks pass while the previous action is unfinished, and enqueue again once it is done", async () => {
    await createSchedule(t, { id: "skip", template: template("slow.skip"), interval: seconds(1), overlapPolicy: "SCHEDULE_POLICY_OVERLAP_SKIP" });
    const held = await claimHeld(t, "slow.skip");
    await retrying(async () => expect(await outcomes(t, "skip")).toContain("skipped_overlap"), "a skipped tick");
    const skipped = (await ticksOf(t, "skip")).find((tick) => tick.outcome === "skipped_overlap")!;
    expect(skipped.reason).toBe(`action ${held.action.id} is still CLAIMED`);
    expect((await actionsPerTick(t, "skip")).size).toBe(1);
    await complete(t, held);
    await retrying(async () => expect((await actionsPerTick(t, "skip")).size).toBe(2), "the next tick enqueued");
    await pauseSchedule(t, "skip");
    const ticks = await ticksOf(t, "skip");
    expect(ticks.filter((tick) => tick.outcome === "enqueued")).toHaveLength(2);
  });

  it("BUFFER_ONE: one tick waits for the running action and is enqueued when it finishes; further ticks are skipped", async () => {
    await createSchedule(t, { id: "buffer", template: template("slow.buffer"), interval: seconds(1), overlapPolicy: "SCHEDULE_POLICY_OVERLAP_BUFFER_ONE" });
    const held = await claimHeld(t, "slow.buffer");
    await retrying(
      async () => expect(await outcomes(t, "buffer")).toEqual(expect.arrayContaining(["buffered", "skipped_overlap"])),
      "buffered and skipped ticks",
    );
    const buffered = (await ticksOf(t, "buffer")).find((tick) => tick.outcome === "buffered")!;
    expect((await getSchedule(t, "buffer")).recentTicks.map((tick) => tick.outcome)).toContain("SCHEDULE_TICK_OUTCOME_BUFFERED");
    // The commit seam wakes this server's scheduler at once; the
    // one-second poll is the backstop for other servers.
    await complete(t, held);
    const next = await retrying(async () => {
      const tick = (await ticksOf(t, "buffer")).find((row) => row.tick_time.getTime() === buffered.tick_time.getTime())!;
      expect(tick.outcome).toBe("enqueued");
      return tick;
    }, "the buffered tick enqueued");
    const { action } = await getAction(t, next.action_id!);
    expect(millis((action as unknown as { scheduleTickTime: never }).scheduleTickTime)).toBe(buffered.tick_time.getTime());
    await pauseSchedule(t, "buffer");
    expect([...(await actionsPerTick(t, "buffer")).values()].every((n) => n === 1)).toBe(true);
  });

  it("CANCEL_OTHER: a tick cancels the unfinished action, its event naming the schedule and tick, and enqueues its own", async () => {
    await createSchedule(t, { id: "cancel", template: template("slow.cancel"), interval: seconds(1), overlapPolicy: "SCHEDULE_POLICY_OVERLAP_CANCEL_OTHER" });
    const held = await claimHeld(t, "slow.cancel");
    const cancelled = await retrying(async () => {
      const { action, events } = await getAction(t, held.action.id);
      expect(action.status).toBe("ACTION_STATUS_CANCELLED");
      return events.find((event) => event.eventType === "action_cancelled")!;
    }, "the held action cancelled");
    await pauseSchedule(t, "cancel");
    const payload = fromStruct(cancelled.payload);
    expect(payload).toMatchObject({ schedule_id: "cancel", from_status: "claimed" });
    const ticks = await ticksOf(t, "cancel");
    const cancelling = ticks.find((tick) => tick.tick_time.toISOString().replace(".000Z", "Z") === payload.schedule_tick_time)!;
    expect(cancelling.outcome).toBe("enqueued");
    expect(cancelled.actor).toBe("server:scheduler");
  });

  it("catch-up: after a time with no scheduler, missed ticks inside the window are enqueued once each, older ones recorded as skipped", async () => {
    // Created to start in an hour, then moved 30 s into the past in one
    // statement: as if every server had been down since then.
    await createSchedule(t, {
      id: "caught-up",
      template: template("catch.up"),
      interval: seconds(1),
      overlapPolicy: "SCHEDULE_POLICY_OVERLAP_ALLOW_ALL",
      catchUpWindow: seconds(10),
      startTime: { seconds: String(Math.floor(Date.now() / 1000) + 3600), nanos: 0 },
    });
    await t.db.query(
      `UPDATE schedules SET start_time = NULL, anchor_time = date_trunc('second', now()) - interval '30 seconds',
         next_tick_time = date_trunc('second', now()) - interval '30 seconds' WHERE id = 'caught-up'`,
    );
    await retrying(async () => expect(await outcomes(t, "caught-up")).toContain("enqueued"), "the catch-up pass");
    await pauseSchedule(t, "caught-up");
    const ticks = await ticksOf(t, "caught-up");
    const skipped = ticks.filter((tick) => tick.outcome === "skipped_catch_up");
    const enqueued = ticks.filter((tick) => tick.outcome === "enqueued");
    // 30 s missed, a 10 s window, and the pass a moment after the move.
    expect(skipped.length).toBeGreaterThanOrEqual(19);
    expect(skipped.length).toBeLessThanOrEqual(25);
    expect(enqueued.length).toBeGreaterThanOrEqual(10);
    expect(enqueued.length).toBeLessThanOrEqual(13);
    // Every tick accounted for once, the skipped ones oldest.
    const times = ticks.map((tick) => tick.tick_time.getTime());
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBe(1000);
    expect(Math.max(...skipped.map((tick) => tick.tick_time.getTime()))).toBeLessThan(Math.min(...enqueued.map((tick) => tick.tick_time.getTime())));
    expect([...(await actionsPerTick(t, "caught-up")).values()].every((n) => n === 1)).toBe(true);
    // Enqueued oldest first.
    const { rows } = await t.db.query<{ tick: Date }>("SELECT schedule_tick_time AS tick FROM actions WHERE schedule_id = 'caught-up' ORDER BY id");
    expect(rows.map((row) => row.tick.getTime())).toEqual(enqueued.map((tick) => tick.tick_time.getTime()));
    const events = (await t.grpc.unary<{ events: WireEvent[] }>("ListEvents", { eventTypes: ["schedule_tick_skipped"], pageSize: 100 })).events;
    const summary = events.map((event) => fromStruct(event.payload)).find((payload) => payload.schedule_id === "caught-up")!;
    expect(summary).toMatchObject({ reason: "catch_up_window", count: skipped.length, recorded: skipped.length });
  });

  it("a DANGEROUS template's actions wait PENDING for their approvers", async () => {
    await createSchedule(t, {
      id: "dangerous",
      template: template("restart.db", { riskLevel: "RISK_LEVEL_DANGEROUS" }),
      interval: seconds(1),
      overlapPolicy: "SCHEDULE_POLICY_OVERLAP_ALLOW_ALL",
    });
    const tick = await retrying(async () => {
      const [first] = await ticksOf(t, "dangerous");
      if (!first) throw new Error("no tick yet");
      return first;
    }, "a tick");
    await pauseSchedule(t, "dangerous");
    const { action } = await getAction(t, tick.action_id!);
    expect(action).toMatchObject({ status: "ACTION_STATUS_PENDING", riskLevel: "RISK_LEVEL_DANGEROUS", createdBy: "human:owner" });
    expect(action.approvalsRequired).toBe(2);
  });

  it("the owner's rate limit applies: a refused tick is recorded FAILED with the reason, and later ticks go on", async () => {
    await createSchedule(
      t,
      { id: "limited", template: template("limited.run"), interval: seconds(1), overlapPolicy: "SCHEDULE_POLICY_OVERLAP_ALLOW_ALL" },
      "agent:cron",
    );
    await retrying(
      async () => expect((await outcomes(t, "limited")).filter((o) => o === "failed").length).toBeGreaterThanOrEqual(2),
      "two refused ticks",
      8000,
    );
    await pauseSchedule(t, "limited");
    const ticks = await ticksOf(t, "limited");
    expect(ticks.filter((tick) => tick.outcome === "enqueued")).toHaveLength(2);
    const failed = ticks.find((tick) => tick.outcome === "failed")!;
    expect(failed.reason).toContain("agent:cron has enqueued 2 actions in the last hour");
    const got = await getSchedule(t, "limited");
    expect(got.recentTicks[0]).toMatchObject({ outcome: "SCHEDULE_TICK_OUTCOME_FAILED", actionId: "0" } satisfies Partial<WireTick>);
    const metrics = await (await fetch(`http://127.0.0.1:${t.server.metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/^actionq_schedule_ticks_total\{outcome="failed"\} [1-9]/m);
    expect(metrics).toMatch(/^actionq_schedule_ticks_total\{outcome="enqueued"\} [1-9]/m);
  });

  it("backfills through the 2026 daylight-saving changes with exactly the documented ticks", async () => {
    await createSchedule(t, { id: "berlin", template: template("dst.berlin"), cron: "30 2 * * *", timeZone: "Europe/Berlin" });
    const when = (ticks: WireTick[]) => ticks.map((tick) => new Date(millis(tick.tickTime)).toISOString().replace(".000Z", "Z"));
    // Spring: 02:30 does not exist on 29 March; it runs at 03:00 CEST.
    expect(when((await backfill(t, "berlin", "2026-03-27T12:00:00Z", "2026-03-31T00:00:00Z")).ticks)).toEqual([
      "2026-03-28T01:30:00Z",
      "2026-03-29T01:00:00Z",
      "2026-03-30T00:30:00Z",
    ]);
    // Fall: 02:30 happens twice on 25 October; it runs at the first.
    expect(when((await backfill(t, "berlin", "2026-10-23T12:00:00Z", "2026-10-27T00:00:00Z")).ticks)).toEqual([
      "2026-10-24T00:30:00Z",
      "2026-10-25T00:30:00Z",
      "2026-10-26T01:30:00Z",
    ]);
    await createSchedule(t, { id: "new-york", template: template("dst.ny"), cron: "*/30 1,2 * * *", timeZone: "America/New_York" });
    // 1 November: 01:00 and 01:30 once (EDT), then 02:00 and 02:30 EST.
    expect(when((await backfill(t, "new-york", "2026-11-01T04:00:00Z", "2026-11-01T08:00:00Z")).ticks)).toEqual([
      "2026-11-01T05:00:00Z",
      "2026-11-01T05:30:00Z",
      "2026-11-01T07:00:00Z",
      "2026-11-01T07:30:00Z",
    ]);
    // 8 March: 02:00 and 02:30 do not exist; they run once at 03:00 EDT.
    expect(when((await backfill(t, "new-york", "2026-03-08T05:00:00Z", "2026-03-08T08:00:00Z")).ticks)).toEqual([
      "2026-03-08T06:00:00Z",
      "2026-03-08T06:30:00Z",
      "2026-03-08T07:00:00Z",
    ]);
    expect([...(await actionsPerTick(t, "new-york")).values()].every((n) => n === 1)).toBe(true);
  });
});
