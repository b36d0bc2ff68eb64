// Scenario 5: three replicas over one database, workers spread across
// them, everything enqueued through the first one only. The backstop poll
// is 30 s, so a prompt delivery on another replica can only come from the
// NOTIFY wakeup reaching it. No action is claimed twice at once. Then one
// replica is killed with -9: its workers move to the others and finish
// what they had acknowledged there; what its streams had not acknowledged
// comes back after the ack timeout; nothing is lost.
import { afterEach, describe, expect, it } from "vitest";
import { verify, waitForAll } from "./lib/check.js";
import { Watcher } from "./lib/load.js";
import { beginScenario, endScenario, serverEnv, unlessCrashed, until } from "./lib/scenario.js";

afterEach(endScenario);

describe("scenario 5: three replicas over one database", () => {
  it("no double claims, wakeups reach every replica, a replica's kill -9 moves its work to the others", async () => {
    const scenario = beginScenario("5 three replicas");
    const { crew } = scenario;
    const { url, schema, db } = scenario.database("replicas");

    // Handoff off: with it, replica-0 hands most actions straight to its own
    // waiting streams, and this scenario is about the NOTIFY wakeup reaching
    // the others (handoff across replicas: test/handoff.test.ts, scenario 9).
    const env = serverEnv(url, schema, { ACTIONQ_POLL_INTERVAL_SECONDS: "30", ACTIONQ_POOL_SIZE: "4", ACTIONQ_HANDOFF: "off" });
    const replicas = [await scenario.server("replica-0", env), await scenario.server("replica-1", env), await scenario.server("replica-2", env)];
    const addresses = replicas.map((r) => r.address);

    // Two workers per replica; each falls back to the others in turn.
    const homeOf = new Map<string, number>();
    for (let r = 0; r < 3; r++) {
      for (let k = 0; k < 2; k++) {
        const name = `worker-r${r}-${k}`;
        homeOf.set(name, r);
        crew.add({
          name,
          addresses: [addresses[r]!, addresses[(r + 1) % 3]!, addresses[(r + 2) % 3]!],
          actionTypes: ["replica_job"],
          maxInFlight: 3,
          leaseSeconds: 60,
          workMs: 40,
        });
      }
    }
    const watcher = new Watcher([addresses[2]!, addresses[0]!]);
    const count = 360;
    const producer = scenario.produce({ addresses: [addresses[0]!], prefix: "rep", count, actionType: "replica_job", spreadMs: 9000, flakyEvery: 12 });

    // Before the kill: every replica's workers get work promptly.
    await until("120 executions", () => crew.finished >= 120, 60_000);
    const beforeKill = crew.records.filter((r) => r.ev === "start");
    const perReplica = [0, 1, 2].map((r) => beforeKill.filter((rec) => homeOf.get(rec.worker) === r).length);
    const { rows: latency } = await db.query<{ p95: number; max: number }>(
      `SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) AS p95, max(ms) AS max FROM (
         SELECT (extract(epoch FROM c.created_at - e.created_at) * 1000)::float8 AS ms
         FROM events c JOIN events e ON e.action_id = c.action_id AND e.event_type = 'action_enqueued'
         WHERE c.event_type = 'action_claimed' AND (c.payload->>'attempt')::int = 1) x`,
    );
    const victim = replicas[1]!;
    victim.kill9();
    const killedAt = Date.now();
    await victim.exitWithin(5000);

    await unlessCrashed(producer.done, "the producer");
    await waitForAll(db, count, 60_000);
    const afterKill = crew.records.filter((r) => r.ev === "start" && r.t > killedAt && homeOf.get(r.worker) === 1).length;
    await crew.stop();
    const { rows } = await db.query<{ id: string }>("SELECT max(id)::text AS id FROM events");
    await watcher.finish(rows[0]!.id);

    const report = await verify(db, { keys: producer.keys, records: crew.records, watched: watcher.events });
    scenario.summarize(
      report,
      `executions_before_kill_per_replica=${perReplica.join("/")} claim_latency_p95=${Math.round(latency[0]!.p95)}ms max=${Math.round(latency[0]!.max)}ms ` +
        `killed_replica_workers_after_kill=${afterKill}`,
    );
    expect(report.problems).toEqual([]);
    expect(report.completed).toBe(count);
    // Wakeups reach every replica: each one's workers had work, promptly,
    // though only replica-0 was enqueued to and the poll is 30 s.
    for (const executed of perReplica) expect(executed).toBeGreaterThan(10);
    expect(latency[0]!.max).toBeLessThan(5000);
    // The killed replica's workers carried on elsewhere.
    expect(afterKill).toBeGreaterThan(0);
    for (const replica of [replicas[0]!, replicas[2]!]) replica.sigterm();
    for (const replica of [replicas[0]!, replicas[2]!]) expect(await replica.exitWithin(20_000)).toEqual({ code: 0, signal: null });
  });
});
