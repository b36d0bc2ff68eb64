// Scenario 10: a schedule on three replicas, then on none. Three servers run
// the scheduler over one database and a 1-second interval schedule ticks for
// 60 s: every tick has exactly one action and one ENQUEUED record, no tick
// is missing, and every replica enqueued some of them (so the unique
// (schedule, tick) index was contended, not fed by one lone scheduler).
// Then all three are killed with -9 at once and, 20 s later, one restarts:
// the ticks missed inside the 8 s catch-up window are enqueued once each,
// oldest first; the older ones are recorded as SKIPPED_CATCH_UP; and the
// schedule carries on once a second.
//
// The overlap policy is ALLOW_ALL and no worker runs: every tick must then
// enqueue, whatever became of the earlier actions, so a tick without an
// action can only be the scheduler's fault, never a worker's timing.
import { afterEach, describe, expect, it } from "vitest";
import { createClient, unary } from "./worker.mjs";
import type { ServerProcess } from "./lib/processes.js";
import { beginScenario, endScenario, serverEnv, serverProblems, unlessCrashed, until } from "./lib/scenario.js";
import { sleep } from "../support/wait.js";

afterEach(endScenario);

const SCHEDULE = "fault-every-second";
const ACTION_TYPE = "schedule_job";
const CATCH_UP_SECONDS = 8;
const RUN_SECONDS = 60;
const DOWN_SECONDS = 20;

interface TickRow {
  tick_ms: number;
  outcome: string;
  action_id: string | null;
  recorded_ms: number;
}

interface ActionRow {
  id: string;
  tick_ms: number;
}

/** The ticks this server acted on, by outcome (actionq_schedule_ticks_total,
 * counted after each commit), from its /metrics. */
async function ticksActedOn(server: ServerProcess): Promise<Record<string, number>> {
  const admin = server.notable.find((line) => line.msg === "admin endpoint serving /metrics, /healthz, /readyz");
  if (!admin) throw new Error(`${server.name} has no admin endpoint`);
  const text = await (await fetch(`http://${String(admin.address)}/metrics`)).text();
  const tally: Record<string, number> = {};
  for (const [, outcome, n] of text.matchAll(/^actionq_schedule_ticks_total\{outcome="(\w+)"\} (\d+)$/gm)) tally[outcome!] = Number(n);
  return tally;
}

const total = (tally: Record<string, number>) => Object.values(tally).reduce((a, b) => a + b, 0);
const percentile = (values: number[], p: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(p * values.length))] ?? 0;
const midSecond = () => sleep(((1500 - (Date.now() % 1000)) % 1000) + 1);

describe("scenario 10: a schedule on three replicas, all killed with -9", () => {
  it("each tick enqueued exactly once under contention; after the outage, the catch-up window is enqueued once, oldest first, the rest skipped", async () => {
    const scenario = beginScenario("10 schedules");
    const { url, schema, db } = scenario.database("schedules");
    const env = serverEnv(url, schema, { ACTIONQ_POOL_SIZE: "4", ACTIONQ_METRICS_LISTEN: "127.0.0.1:0" });
    const replicas = [await scenario.server("replica-0", env), await scenario.server("replica-1", env), await scenario.server("replica-2", env)];

    // Ticks on whole seconds, from a little ahead: each tick is a second.
    const startMs = Math.ceil(Date.now() / 1000) * 1000 + 2000;
    const client = createClient(replicas[1]!.address);
    await unary(client, "CreateSchedule", {
      owner: "service:faults",
      schedule: {
        id: SCHEDULE,
        template: { actionType: ACTION_TYPE, targetRef: "faults/schedules" },
        interval: { seconds: "1", nanos: 0 },
        startTime: { seconds: String(startMs / 1000), nanos: 0 },
        overlapPolicy: "SCHEDULE_POLICY_OVERLAP_ALLOW_ALL",
        catchUpWindow: { seconds: String(CATCH_UP_SECONDS), nanos: 0 },
        description: "fault scenario 10",
      },
    });
    client.close();

    const ticks = async (): Promise<TickRow[]> =>
      (
        await db.query<TickRow>(
          `SELECT (extract(epoch FROM tick_time) * 1000)::float8 AS tick_ms, outcome, action_id::text,
                  (extract(epoch FROM recorded_at) * 1000)::float8 AS recorded_ms
           FROM schedule_ticks WHERE schedule_key = (SELECT key FROM schedules WHERE id = $1 AND deleted_at IS NULL)
           ORDER BY tick_time, recorded_at`,
          [SCHEDULE],
        )
      ).rows;
    const actions = async (): Promise<ActionRow[]> =>
      (
        await db.query<ActionRow>(
          // By the bigint: the text id would sort "10" before "9".
          "SELECT a.id::text, (extract(epoch FROM a.schedule_tick_time) * 1000)::float8 AS tick_ms FROM actions a WHERE a.schedule_id = $1 ORDER BY a.id",
          [SCHEDULE],
        )
      ).rows;

    // 60 s of ticks on three schedulers; the kill falls between two ticks.
    await unlessCrashed(sleep(startMs + RUN_SECONDS * 1000 + 500 - Date.now()), "60 s of ticks");
    const tallies = await Promise.all(replicas.map(ticksActedOn));
    const perReplica = tallies.map(total);
    for (const replica of replicas) replica.kill9();
    const killedMs = Date.now();
    for (const replica of replicas) expect((await replica.exitWithin(5000)).signal).toBe("SIGKILL");

    const problems: string[] = [];
    const before = await ticks();
    const beforeActions = await actions();
    const lastBeforeMs = Math.max(...before.map((t) => t.tick_ms));
    const expectEnqueued = (from: number, to: number, rows: TickRow[], acts: ActionRow[], phase: string) => {
      for (let t = from; t <= to; t += 1000) {
        const outcomes = rows.filter((row) => row.tick_ms === t);
        const acted = acts.filter((row) => row.tick_ms === t);
        const at = new Date(t).toISOString();
        if (outcomes.length !== 1 || outcomes[0]!.outcome !== "enqueued")
          problems.push(`${phase}: tick ${at} has outcomes ${JSON.stringify(outcomes.map((o) => o.outcome))}`);
        if (acted.length !== 1) problems.push(`${phase}: tick ${at} has ${acted.length} actions`);
        else if (outcomes[0]?.action_id !== acted[0]!.id)
          problems.push(`${phase}: tick ${at} records action ${outcomes[0]?.action_id}, its action is ${acted[0]!.id}`);
      }
    };
    expectEnqueued(startMs, lastBeforeMs, before, beforeActions, "before the kill");
    const ticksBefore = (lastBeforeMs - startMs) / 1000 + 1;
    expect(ticksBefore, "about a minute of ticks before the kill").toBeGreaterThanOrEqual(RUN_SECONDS - 2);
    // The replicas' own tallies add up to the ticks, all enqueued (one may
    // have committed between the scrape and the kill).
    const perReplicaSum = perReplica.reduce((a, b) => a + b, 0);
    if (perReplicaSum < ticksBefore - 1 || perReplicaSum > ticksBefore)
      problems.push(`the replicas counted ${perReplicaSum} ticks acted on for ${ticksBefore} ticks: ${JSON.stringify(tallies)}`);
    if (tallies.some((tally) => total(tally) !== (tally.enqueued ?? 0)))
      problems.push(`a replica acted on a tick without enqueuing: ${JSON.stringify(tallies)}`);
    const lagsBefore = before.map((t) => t.recorded_ms - t.tick_ms);

    // Nobody runs the scheduler for 20 s; then one server comes back.
    await sleep(killedMs + DOWN_SECONDS * 1000 - Date.now());
    const restarted = await scenario.server("replica-0-restarted", env);
    const restartedMs = Date.now();
    await until("the restarted scheduler to tick on time", async () => (await ticks()).some((t) => t.tick_ms > restartedMs + 4000), 20_000);
    await unlessCrashed(midSecond(), "the last ticks");

    const after = await ticks();
    const afterActions = await actions();
    const restartedTally = await ticksActedOn(restarted);
    const resumed = after.filter((t) => t.tick_ms > lastBeforeMs);
    const resumedMs = Math.min(...resumed.map((t) => t.recorded_ms));
    // Missed: every tick due before the restarted scheduler first acted.
    const missed = resumed.filter((t) => t.tick_ms <= resumedMs);
    const caughtUp = missed.filter((t) => t.outcome === "enqueued");
    const skipped = missed.filter((t) => t.outcome === "skipped_catch_up");
    const live = resumed.filter((t) => t.tick_ms > resumedMs);
    const lastMs = Math.max(...after.map((t) => t.tick_ms));

    // Every tick of the outage has exactly one record: skipped or enqueued.
    for (let t = lastBeforeMs + 1000; t <= lastMs; t += 1000) {
      const n = after.filter((row) => row.tick_ms === t).length;
      if (n !== 1) problems.push(`after the restart: tick ${new Date(t).toISOString()} has ${n} records`);
    }
    if (caughtUp.length + skipped.length !== missed.length)
      problems.push(`missed ticks recorded as ${JSON.stringify([...new Set(missed.map((t) => t.outcome))])}, not only enqueued or skipped_catch_up`);
    // The window decides, by the tick's age when the scheduler acted (the
    // transaction's now(), which recorded_at keeps): at most 8 s, enqueued.
    const windowMs = CATCH_UP_SECONDS * 1000;
    for (const t of caughtUp)
      if (t.recorded_ms - t.tick_ms > windowMs + 1) problems.push(`tick ${new Date(t.tick_ms).toISOString()} caught up ${t.recorded_ms - t.tick_ms} ms late`);
    for (const t of skipped)
      if (t.recorded_ms - t.tick_ms <= windowMs - 1)
        problems.push(`tick ${new Date(t.tick_ms).toISOString()} skipped though only ${t.recorded_ms - t.tick_ms} ms old`);
    // One schedule_tick_skipped event counts the skipped range.
    const { rows: skipEvents } = await db.query<{ payload: { schedule_id: string; count: number; recorded: number; from: string } }>(
      "SELECT payload FROM events WHERE event_type = 'schedule_tick_skipped' ORDER BY id",
    );
    const skipEvent = skipEvents[0]?.payload;
    if (skipEvents.length !== 1) problems.push(`${skipEvents.length} schedule_tick_skipped events, expected one`);
    else if (
      skipEvent!.schedule_id !== SCHEDULE ||
      skipEvent!.count !== skipped.length ||
      skipEvent!.recorded !== skipped.length ||
      Date.parse(skipEvent!.from) !== skipped[0]?.tick_ms
    )
      problems.push(`the schedule_tick_skipped event ${JSON.stringify(skipEvent)} does not describe the ${skipped.length} skipped ticks`);
    if (skipped.length > 0 && caughtUp.length > 0 && Math.max(...skipped.map((t) => t.tick_ms)) > Math.min(...caughtUp.map((t) => t.tick_ms)))
      problems.push("a skipped tick is newer than a caught-up one");
    // Oldest first: the caught-up actions were created in tick order.
    const caughtUpActions = afterActions.filter((a) => caughtUp.some((t) => t.tick_ms === a.tick_ms));
    const order = caughtUpActions.map((a) => a.tick_ms);
    if (order.some((t, i) => i > 0 && t < order[i - 1]!))
      problems.push(`caught-up actions created out of tick order: ${order.map((t) => new Date(t).toISOString()).join(", ")}`);
    expectEnqueued(Math.min(...(caughtUp.length > 0 ? caughtUp : live).map((t) => t.tick_ms)), lastMs, after, afterActions, "after the restart");

    // Across the whole run: one action per tick, one action_enqueued per action.
    const { rows: duplicated } = await db.query<{ tick: string; n: number }>(
      "SELECT schedule_tick_time::text AS tick, count(*)::int AS n FROM actions WHERE schedule_id = $1 GROUP BY schedule_key, 1 HAVING count(*) > 1",
      [SCHEDULE],
    );
    for (const d of duplicated) problems.push(`tick ${d.tick} has ${d.n} actions`);
    const { rows: histories } = await db.query<{ id: string; n: number }>(
      `SELECT a.id::text, count(e.id)::int AS n FROM actions a LEFT JOIN events e ON e.action_id = a.id AND e.event_type = 'action_enqueued'
       WHERE a.schedule_id = $1 GROUP BY a.id HAVING count(e.id) <> 1`,
      [SCHEDULE],
    );
    for (const h of histories) problems.push(`action ${h.id} has ${h.n} action_enqueued events`);
    // Under the schedule's row lock, ticks are acted on in order: action ids
    // follow tick times over the whole run, not only in the catch-up.
    const inversions = afterActions.filter((a, i) => i > 0 && a.tick_ms <= afterActions[i - 1]!.tick_ms).length;
    if (inversions > 0) problems.push(`${inversions} actions were created before the action of an earlier tick`);
    const lags = live.map((t) => t.recorded_ms - t.tick_ms);
    if (lags.some((lag) => lag > 1500)) problems.push(`live ticks after the restart acted on late: ${lags.map(Math.round).join(", ")} ms`);
    // The restarted server's own tally says the same as the database.
    const tallyEnqueued = restartedTally.enqueued ?? 0;
    if (
      tallyEnqueued < caughtUp.length + live.length ||
      tallyEnqueued > caughtUp.length + live.length + 1 ||
      restartedTally.skipped_catch_up !== skipped.length
    )
      problems.push(
        `the restarted server counted ${JSON.stringify(restartedTally)}; the database has ${caughtUp.length + live.length} enqueued, ${skipped.length} skipped`,
      );
    problems.push(...serverProblems(scenario.servers));

    const enqueued = afterActions.length;
    const replicasEnqueued = perReplica.filter((n) => n > 0).length;
    console.log(
      `FAULT 10 schedules: ticks=${after.length} enqueued=${enqueued} before_kill=${ticksBefore} per_replica=${perReplica.join("/")} ` +
        `replicas_enqueued=${replicasEnqueued}/3 missed=${missed.length} caught_up=${caughtUp.length} skipped_catch_up=${skipped.length} ` +
        `live_after=${live.length} lag_p50=${Math.round(percentile(lagsBefore, 0.5))}ms lag_max=${Math.round(Math.max(...lagsBefore))}ms ` +
        `live_lag_max=${Math.round(Math.max(...lags))}ms duplicates=${duplicated.length} problems=${problems.length} ` +
        `time=${((Date.now() - scenario.started) / 1000).toFixed(1)}s`,
    );
    for (const problem of problems.slice(0, 10)) console.log(`  problem: ${problem}`);
    expect(problems).toEqual([]);
    expect(duplicated).toEqual([]);
    // Contention, not one lone scheduler: every replica enqueued ticks.
    expect(replicasEnqueued).toBe(3);
    // 20 s down with an 8 s window: about 8 caught up, the rest skipped.
    expect(caughtUp.length).toBeGreaterThanOrEqual(CATCH_UP_SECONDS - 1);
    expect(caughtUp.length).toBeLessThanOrEqual(CATCH_UP_SECONDS + 1);
    expect(skipped.length).toBeGreaterThanOrEqual(DOWN_SECONDS - CATCH_UP_SECONDS - 1);
    expect(live.length).toBeGreaterThanOrEqual(4);

    restarted.sigterm();
    expect(await restarted.exitWithin(20_000)).toEqual({ code: 0, signal: null });
  });
});
