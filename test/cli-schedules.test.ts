// actionctl schedule ..., the built command against a real server: what a
// schedule's owner and an operator see on stdout, stderr and in the exit
// code when they create, change, pause, resume, backfill, read and delete
// schedules.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Json, actionctlAt, hasScript, killChildren, runInTerminal } from "./support/actionctl.js";
import { type TestServer, startTestServer } from "./support/harness.js";
import { eventually, sleep } from "./support/wait.js";

const HOUR_MS = 3_600_000;

describe("actionctl schedule", () => {
  let t: TestServer;
  const { actionctl, ok, okLines, refused, usageError } = actionctlAt(() => t.address);
  const terminal = (args: string[]) => runInTerminal(args, { ACTIONQ_ADDR: t.address });

  beforeAll(async () => {
    t = await startTestServer();
  });
  afterEach(killChildren);
  afterAll(async () => {
    await t?.close();
  });

  /** An hourly schedule that will not tick by itself during the test
   * unless the hour turns; backfills give it ticks on demand. */
  const createHourly = (id: string, extra: string[] = []) =>
    ok(["schedule", "create", id, "--type", "collect_diagnostics", "--target", `node/${id}`, "--cron", "0 * * * *", "--owner", "agent:nightly", ...extra]);

  it("create takes add's flags as the template, a clock and a policy; get and list show them back", async () => {
    const created = await ok([
      "schedule",
      "create",
      "nightly-diag",
      ...[
        ["--type", "collect_diagnostics"],
        ["--project", "cli-sched"],
        ["--target", "node/7"],
        ["--payload", '{"depth":2}'],
        ["--risk", "guarded"],
        ["--priority", "-2"],
        ["--max-attempts", "3"],
        ["--cron", "30 3 * * MON-FRI"],
        ["--time-zone", "Europe/Berlin"],
        ["--jitter", "30s"],
        ["--overlap", "buffer-one"],
        ["--catch-up", "10m"],
        ["--description", "diagnostics before the morning"],
        ["--owner", "agent:nightly"],
      ].flat(),
    ]);
    expect(created.schedule).toMatchObject({
      id: "nightly-diag",
      template: {
        action_type: "collect_diagnostics",
        project: "cli-sched",
        target_ref: "node/7",
        payload: { depth: 2 },
        risk_level: "RISK_LEVEL_GUARDED",
        priority: -2,
        max_attempts: 3,
      },
      cron: "30 3 * * MON-FRI",
      time_zone: "Europe/Berlin",
      jitter: "30s",
      overlap_policy: "SCHEDULE_POLICY_OVERLAP_BUFFER_ONE",
      catch_up_window: "600s",
      description: "diagnostics before the morning",
      owner: "agent:nightly",
    });
    expect(created.schedule.paused ?? false).toBe(false);
    expect(Date.parse(created.schedule.next_tick_time)).toBeGreaterThan(Date.now());

    const got = await ok(["schedule", "get", "nightly-diag"]);
    expect(got.schedule).toEqual(created.schedule);
    expect(got.recent_ticks).toEqual([]);
    expect(got.upcoming_tick_times.length).toBeGreaterThan(0);
    // Weekdays at 03:30 in Berlin: 02:30 UTC in winter, 01:30 in summer.
    for (const tick of got.upcoming_tick_times as string[]) {
      const at = new Date(tick);
      expect([1, 2, 3, 4, 5]).toContain(at.getUTCDay());
      expect([1, 2]).toContain(at.getUTCHours());
      expect(at.getUTCMinutes()).toBe(30);
    }

    const taken = await refused(["schedule", "create", "nightly-diag", "--type", "other", "--every", "1h", "--owner", "agent:nightly"]);
    expect(taken).toMatchObject({ code: "already_exists", reason: "SCHEDULE_EXISTS" });

    const listed = await ok(["schedule", "list", "--project", "cli-sched"]);
    expect(listed.schedules.map((s: Json) => s.id)).toEqual(["nightly-diag"]);
    expect(listed.next_page_token).toBe("");
    expect((await okLines(["-o", "jsonl", "schedule", "list", "--project", "cli-sched"])).map((s) => s.id)).toEqual(["nightly-diag"]);
  });

  it("update changes only the flags given and keeps the rest; an unknown schedule is NOT_FOUND", async () => {
    const before = (await createHourly("update-me", ["--project", "cli-update", "--payload", '{"keep":true}', "--jitter", "5s", "--end", "720h"])).schedule;
    expect(Date.parse(before.end_time)).toBeGreaterThan(Date.now() + 719 * 3_600_000);
    const updated = await ok(["schedule", "update", "update-me", "--every", "15m", "--description", "now every quarter", "--actor", "agent:nightly"]);
    expect(updated.schedule).toMatchObject({
      id: "update-me",
      interval: "900s",
      description: "now every quarter",
      jitter: "5s",
      template: { action_type: "collect_diagnostics", project: "cli-update", target_ref: "node/update-me", payload: { keep: true } },
    });
    expect(updated.schedule.cron).toBeUndefined();
    expect(BigInt(updated.schedule.revision)).toBeGreaterThan(BigInt(before.revision));

    const retargeted = await ok(["schedule", "update", "update-me", "--target", "node/8", "--no-end", "--actor", "agent:nightly"]);
    expect(retargeted.schedule.template).toMatchObject({ target_ref: "node/8", project: "cli-update", payload: { keep: true } });
    expect(retargeted.schedule.interval).toBe("900s");
    expect(updated.schedule.end_time).toBe(before.end_time);
    expect(retargeted.schedule.end_time).toBeUndefined();

    const missing = await refused(["schedule", "update", "no-such-schedule", "--every", "1m", "--actor", "agent:nightly"]);
    expect(missing.code).toBe("not_found");
    expect((await refused(["schedule", "get", "no-such-schedule"])).code).toBe("not_found");
  });

  it("pause needs a reason, shows it, and resume lifts it; doing either twice says so", async () => {
    await createHourly("pause-me");
    await usageError(["schedule", "pause", "pause-me", "--actor", "human:olga"]);
    const paused = await ok(["schedule", "pause", "pause-me", "--reason", "INC-42: node is down", "--actor", "human:olga"]);
    expect(paused).toMatchObject({ changed: true, schedule: { paused: true, pause_reason: "INC-42: node is down" } });
    expect(paused.schedule.next_tick_time).toBeUndefined();
    expect((await ok(["schedule", "pause", "pause-me", "--reason", "again", "--actor", "human:olga"])).changed).toBe(false);

    if (hasScript()) {
      const shown = await terminal(["schedule", "get", "pause-me"]);
      expect(shown.code, shown.stdout).toBe(0);
      expect(shown.stdout).toMatch(/^schedule +pause-me +PAUSED$/m);
      expect(shown.stdout).toMatch(/^paused +INC-42: node is down$/m);
      expect(shown.stdout).toMatch(/^clock +cron 0 \* \* \* \* \(UTC\)$/m);
    }

    const resumed = await ok(["schedule", "resume", "pause-me", "--reason", "node is back", "--actor", "human:olga"]);
    expect(resumed.changed).toBe(true);
    expect(resumed.schedule.paused ?? false).toBe(false);
    expect(resumed.schedule.next_tick_time).toBeDefined();
    expect((await ok(["schedule", "resume", "pause-me", "--actor", "human:olga"])).changed).toBe(false);
  });

  it("backfill enqueues each past tick once, and get shows the ticks with their outcomes and actions", { timeout: 120_000 }, async () => {
    // The schedule's own tick at the turn of the hour would join the
    // backfilled ones: close to the turn, let it pass before creating it.
    const toTurn = HOUR_MS - (Date.now() % HOUR_MS);
    if (toTurn < 45_000) await sleep(toTurn + 1_000);
    await createHourly("backfill-me", ["--project", "cli-backfill"]);
    // Ends half an hour before the last full hour: exactly three hourly
    // ticks, whatever the minute the test runs.
    const end = Math.floor(Date.now() / HOUR_MS) * HOUR_MS - HOUR_MS / 2;
    const [from, to] = [end - 3 * HOUR_MS, end].map((ms) => new Date(ms).toISOString());
    const first = await ok(["schedule", "backfill", "backfill-me", "--from", from!, "--to", to!, "--actor", "agent:nightly"]);
    expect(first.ticks).toHaveLength(3);
    for (const tick of first.ticks as Json[]) {
      expect(tick).toMatchObject({ outcome: "SCHEDULE_TICK_OUTCOME_ENQUEUED", backfill: true });
      expect(new Date(tick.tick_time).getUTCMinutes()).toBe(0);
    }
    const actionIds = first.ticks.map((tick: Json) => tick.action_id);
    // Oldest first.
    expect([...first.ticks].map((tick: Json) => tick.tick_time)).toEqual([...first.ticks.map((tick: Json) => tick.tick_time)].sort());

    // Again: the same ticks keep their actions, none is enqueued twice.
    const again = await ok(["schedule", "backfill", "backfill-me", "--from", from!, "--to", to!, "--actor", "agent:nightly"]);
    expect(again.ticks.map((tick: Json) => tick.action_id)).toEqual(actionIds);
    expect((await ok(["ls", "--project", "cli-backfill"])).actions).toHaveLength(3);

    const shown = await ok(["show", actionIds[0]]);
    expect(shown.action).toMatchObject({
      schedule_id: "backfill-me",
      schedule_tick_time: first.ticks[0].tick_time,
      created_by: "agent:nightly",
      action_type: "collect_diagnostics",
      target_ref: "node/backfill-me",
    });

    const got = await ok(["schedule", "get", "backfill-me"]);
    // Newest first.
    expect(got.recent_ticks.map((tick: Json) => tick.action_id)).toEqual([...actionIds].reverse());
    expect(got.recent_ticks[0]).toMatchObject({ outcome: "SCHEDULE_TICK_OUTCOME_ENQUEUED", action_status: "ACTION_STATUS_APPROVED", backfill: true });
    expect(got.schedule.last_tick).toBeDefined();

    if (hasScript()) {
      const table = await terminal(["schedule", "get", "backfill-me"]);
      expect(table.code, table.stdout).toBe(0);
      expect(table.stdout).toContain("recent ticks, newest first:");
      expect(table.stdout).toMatch(/^TICK +OUTCOME +ACTION +RESULT +BY +RECORDED$/m);
      for (const id of actionIds) expect(table.stdout).toMatch(new RegExp(`enqueued +${id} +action ${id} \\(APPROVED\\) +backfill`));
      const list = await terminal(["schedule", "list", "--project", "cli-backfill"]);
      const [header, row] = list.stdout.trimEnd().split("\n");
      expect(header).toMatch(/^ID +TYPE +CLOCK +NEXT TICK +LAST TICK +STATE +OWNER$/);
      expect(row).toMatch(/^backfill-me +collect_diagnostics +cron 0 \* \* \* \* \(UTC\) +\S+Z +\S+Z enqueued \d+ +active +agent:nightly$/);
    }
  });

  it("delete ends the schedule and keeps its actions; the id may be used again", async () => {
    await createHourly("delete-me", ["--project", "cli-delete"]);
    const end = Math.floor(Date.now() / HOUR_MS) * HOUR_MS - HOUR_MS / 2;
    const [from, to] = [end - HOUR_MS, end].map((ms) => new Date(ms).toISOString());
    const backfilled = await ok(["schedule", "backfill", "delete-me", "--from", from!, "--to", to!, "--actor", "agent:nightly"]);
    expect(backfilled.ticks).toHaveLength(1);
    const deleted = await ok(["schedule", "delete", "delete-me", "--reason", "no longer needed", "--actor", "agent:nightly"]);
    expect(deleted.schedule.id).toBe("delete-me");
    const gone = await refused(["schedule", "get", "delete-me"]);
    expect(gone.code).toBe("not_found");
    expect((await ok(["ls", "--project", "cli-delete"])).actions.map((a: Json) => a.id)).toEqual([backfilled.ticks[0].action_id]);
    expect((await createHourly("delete-me")).schedule.id).toBe("delete-me");
  });

  it("a bad clock is a usage error before any call, or the server's refusal naming the flag", async () => {
    const base = ["schedule", "create", "bad-clock", "--type", "t", "--owner", "agent:nightly"];
    expect(await usageError(base)).toMatch(/--cron <expression> or --every <duration>/);
    expect(await usageError([...base, "--cron", "* * * * *", "--every", "1m"])).toMatch(/one of --cron and --every/);
    expect(await usageError([...base, "--every", "1m", "--overlap", "sometimes"])).toMatch(/skip, buffer-one, allow-all, cancel-other/);
    expect(await usageError([...base, "--every", "often"])).toMatch(/duration/);
    expect(await usageError(["schedule", "backfill", "x", "--from", "yesterday", "--to", "now", "--actor", "a"])).toMatch(/RFC 3339/);

    const badCron = await refused([...base, "--cron", "61 * * * *"]);
    expect(badCron.code).toBe("invalid_argument");
    expect(badCron.hint).toMatch(/--cron/);
    const badZone = await refused([...base, "--cron", "0 3 * * *", "--time-zone", "Mars/Olympus_Mons"]);
    expect(badZone.hint).toMatch(/--time-zone/);

    const sentence = await actionctl(["-o", "table", ...base, "--cron", "0 3 * * *", "--time-zone", "Mars/Olympus_Mons"]);
    expect(sentence.code).toBe(1);
    expect(sentence.stderr).toMatch(/^actionctl: .*fix --time-zone \(field schedule\.time_zone\)\n$/);
  });

  it("an every-second schedule enqueues by itself, each action naming its schedule and tick; paused, it stops", async () => {
    await ok([
      "schedule",
      "create",
      "every-second",
      "--type",
      "ping",
      "--project",
      "cli-clock",
      "--every",
      "1s",
      "--overlap",
      "allow-all",
      "--owner",
      "agent:clock",
    ]);
    const ticked = (await eventually(
      async () => {
        const got = await ok(["schedule", "get", "every-second"]);
        return got.recent_ticks.filter((tick: Json) => tick.outcome === "SCHEDULE_TICK_OUTCOME_ENQUEUED").length >= 2 ? got : undefined;
      },
      "two ticks of the clock",
      20_000,
    )) as Json;
    for (const tick of ticked.recent_ticks as Json[]) {
      expect(tick.backfill ?? false).toBe(false);
      const { action } = await ok(["show", tick.action_id]);
      expect(action).toMatchObject({ schedule_id: "every-second", schedule_tick_time: tick.tick_time, created_by: "agent:clock", action_type: "ping" });
    }
    await ok(["schedule", "pause", "every-second", "--reason", "enough", "--actor", "agent:clock"]);
    const count = async () => (await ok(["ls", "--project", "cli-clock", "--limit", "1000"])).actions.length;
    const atPause = await count();
    await sleep(2_500);
    // At most a tick already being acted on when the pause committed.
    expect(await count()).toBeLessThanOrEqual(atPause + 1);
    await ok(["schedule", "delete", "every-second", "--actor", "agent:clock"]);
  });
});
