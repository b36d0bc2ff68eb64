// Scenario 8: change windows across two replicas. Both run the same policy:
// a hold_claims window that opens some seconds after they start, and one
// that stays closed for hours. Actions are enqueued through replica-0 while
// the windows are closed; the workers stream from replica-1 only, and the
// backstop poll is 30 s. Nothing is claimed while closed; a BreakGlass
// through replica-0 reaches replica-1's streams at once (the trigger's
// NOTIFY); when the short window opens, every held action is delivered at
// once by replica-1's own timer, each claimed once; the long window's other
// actions stay held.
import { afterEach, describe, expect, it } from "vitest";
import { createClient, unary } from "./worker.mjs";
import { removePolicyDirs, writePolicy } from "../support/safety.js";
import { beginScenario, endScenario, serverEnv, serverProblems, until } from "./lib/scenario.js";

afterEach(async () => {
  await endScenario();
  await removePolicyDirs();
});

describe("scenario 8: change windows on two replicas", () => {
  it("held while closed on every replica, break-glass wakes the other replica at once, the opening delivers everything once", async () => {
    const scenario = beginScenario("8 change windows");
    const { crew } = scenario;
    const { url, schema, db } = scenario.database("windows");
    const hourAgo = new Date(Date.now() - 3600_000).toISOString();
    const opensAt = Date.now() + 25_000;
    const policy = await writePolicy(`
name: fault-windows
windows:
  - name: short-freeze
    effect: hold_claims
    time_zone: Europe/Berlin
    action_types: [win_job]
    once: [{ from: "${hourAgo}", to: "${new Date(opensAt).toISOString()}" }]
  - name: long-freeze
    effect: hold_claims
    time_zone: UTC
    action_types: [glass_job]
    once: [{ from: "${hourAgo}", to: "${new Date(Date.now() + 3 * 3600_000).toISOString()}" }]
`);
    const env = serverEnv(url, schema, { ACTIONQ_POLL_INTERVAL_SECONDS: "30", ACTIONQ_POOL_SIZE: "4", ACTIONQ_POLICY: policy });
    const replicas = [await scenario.server("replica-0", env), await scenario.server("replica-1", env)];
    const front = createClient(replicas[0]!.address);

    for (let k = 0; k < 2; k++) {
      crew.add({ name: `worker-${k}`, addresses: [replicas[1]!.address], actionTypes: ["win_job", "glass_job"], maxInFlight: 8, leaseSeconds: 60, workMs: 20 });
    }
    const count = 40;
    const ids: string[] = [];
    for (let i = 0; i < count; i++) {
      ids.push(
        (await unary<{ action: { id: string } }>(front, "EnqueueAction", { actionType: "win_job", project: "ops", createdBy: "human:faults" })).action.id,
      );
    }
    const glass: string[] = [];
    for (let i = 0; i < 3; i++) {
      glass.push(
        (await unary<{ action: { id: string } }>(front, "EnqueueAction", { actionType: "glass_job", project: "ops", createdBy: "human:faults" })).action.id,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(Date.now(), "the scenario started too slowly: the short window is already open").toBeLessThan(opensAt - 3000);
    expect(
      crew.records.filter((r) => r.ev === "start"),
      "nothing runs while the windows are closed",
    ).toEqual([]);

    // Break glass through replica-0: replica-1's streams hear of it.
    const brokenAt = Date.now();
    await unary(front, "BreakGlass", { id: glass[0], actor: "human:oncall", reason: "fault scenario" });
    await until("the broken-glass action to start on replica-1", () => crew.records.some((r) => r.ev === "start" && r.id === glass[0]), 10_000);
    const breakLatency = crew.records.find((r) => r.ev === "start" && r.id === glass[0])!.t - brokenAt;
    expect(
      crew.records.filter((r) => r.ev === "start" && ids.includes(r.id!)),
      "the short window still holds",
    ).toEqual([]);

    await until(
      `${count} held actions done after the window opens`,
      async () => {
        const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM actions WHERE action_type = 'win_job' AND status = 'completed'");
        return rows[0]!.n === count;
      },
      opensAt - Date.now() + 30_000,
    );
    const { rows: claims } = await db.query<{ action_id: string; n: number; first_ms: number }>(
      `SELECT action_id::text, count(*)::int AS n, (extract(epoch FROM min(created_at)) * 1000)::float8 AS first_ms
       FROM events WHERE event_type = 'action_claimed' AND action_id = ANY($1::bigint[]) GROUP BY action_id`,
      [ids],
    );
    expect(claims).toHaveLength(count);
    expect(
      claims.filter((c) => c.n !== 1),
      "each held action claimed once",
    ).toEqual([]);
    const firstClaim = Math.min(...claims.map((c) => c.first_ms));
    const lastClaim = Math.max(...claims.map((c) => c.first_ms));
    expect(firstClaim, "no claim before the window opens").toBeGreaterThanOrEqual(opensAt);
    // Far under the 30 s poll: the opening's own timer delivered them.
    expect(lastClaim - opensAt).toBeLessThan(5000);
    const { rows: still } = await db.query<{ status: string }>("SELECT status FROM actions WHERE id = ANY($1::bigint[]) ORDER BY id", [glass.slice(1)]);
    expect(still.map((r) => r.status)).toEqual(["approved", "approved"]);
    await crew.stop();
    expect(serverProblems(replicas)).toEqual([]);
    console.log(
      `FAULT 8 change windows: ok held=${count} first_claim_after_opening=${Math.round(firstClaim - opensAt)}ms last=${Math.round(lastClaim - opensAt)}ms break_glass_to_start=${breakLatency}ms`,
    );
    front.close();
  });
});
