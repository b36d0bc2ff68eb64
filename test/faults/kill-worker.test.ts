// Scenario 3: kill -9 a worker in the middle of its work. The claims it had
// not acknowledged go back to the queue at once (its connection closed);
// the ones it acknowledged and was executing come back when their lease
// runs out, not before. Then, under load, a worker process is killed while
// others keep going and a replacement starts: everything completes, and
// only what the killed worker was executing runs again.
import { afterEach, describe, expect, it } from "vitest";
import { verify, waitForAll } from "./lib/check.js";
import { WorkerProcess } from "./lib/processes.js";
import { beginScenario, endScenario, serverEnv, unlessCrashed, until } from "./lib/scenario.js";
import { createClient, unary } from "./worker.mjs";

afterEach(endScenario);

interface ClaimRow {
  id: string;
  status: string;
  acked: boolean;
  claim_deadline: Date | null;
}

describe("scenario 3: kill -9 a worker mid-action", () => {
  it("its unacknowledged claims come back at once, its acknowledged ones after the lease; under load nothing else runs twice", async () => {
    const scenario = beginScenario("3 kill -9 worker");
    const { url, schema, db } = scenario.database("worker");

    // A long ack timeout: only the closed connection can explain a release
    // within seconds.
    const server = await scenario.server("server", serverEnv(url, schema, { ACTIONQ_ACK_TIMEOUT_SECONDS: "30", ACTIONQ_SWEEP_INTERVAL_SECONDS: "0.25" }));
    const address = server.address;

    // Part 1, exact: the victim holds two acknowledged claims (executing,
    // for ever) and two it has not acknowledged.
    const client = createClient(address);
    const leaseSeconds = 3;
    try {
      for (let i = 0; i < 4; i++)
        await unary(client, "EnqueueAction", { actionType: "victim_job", createdBy: "human:victim-setup", idempotencyKey: `victim-${i}` });
    } finally {
      client.close();
    }
    const victim = new WorkerProcess({
      name: "victim",
      addresses: [address],
      actionTypes: ["victim_job"],
      maxInFlight: 4,
      leaseSeconds,
      ackLimit: 2,
      hang: true,
    });
    await victim.until(
      "two executions and two unacknowledged claims",
      () => victim.records.filter((r) => r.ev === "start").length === 2 && victim.records.filter((r) => r.ev === "held_unacked").length === 2,
    );
    const held = (
      await db.query<ClaimRow>("SELECT id::text, status, acked_at IS NOT NULL AS acked, claim_deadline FROM actions WHERE claimed_by = 'victim' ORDER BY id")
    ).rows;
    expect(held.map((row) => [row.status, row.acked]).sort()).toEqual([
      ["claimed", false],
      ["claimed", false],
      ["claimed", true],
      ["claimed", true],
    ]);
    const killedAt = Date.now();
    victim.kill9();
    await victim.exitWithin(5000);

    const unacked = held.filter((row) => !row.acked).map((row) => row.id);
    const acked = held.filter((row) => row.acked);
    await until(
      "the unacknowledged claims released",
      async () => {
        const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM actions WHERE id = ANY($1) AND status = 'approved'", [unacked]);
        return rows[0]!.n === 2;
      },
      10_000,
    );
    const releasedAfter = Date.now() - killedAt;
    // At once: well within the lease and far from the 30 s ack timeout.
    expect(releasedAfter).toBeLessThan(2000);
    const { rows: releases } = await db.query<{ event_type: string; reason: string }>(
      "SELECT event_type, payload->>'reason' AS reason FROM events WHERE action_id = ANY($1) AND event_type = 'claim_released'",
      [unacked],
    );
    expect(releases).toHaveLength(2);
    // The acknowledged ones are still the dead worker's until the lease ends.
    const { rows: still } = await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM actions WHERE id = ANY($1) AND status = 'claimed' AND claimed_by = 'victim'",
      [acked.map((row) => row.id)],
    );
    expect(still[0]!.n).toBe(2);
    await until(
      "the acknowledged claims timed out",
      async () => {
        const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM events WHERE action_id = ANY($1) AND event_type = 'claim_timed_out'", [
          acked.map((row) => row.id),
        ]);
        return rows[0]!.n === 2;
      },
      leaseSeconds * 1000 + 10_000,
    );
    const { rows: timeouts } = await db.query<{ id: string; at: Date }>(
      "SELECT action_id::text AS id, created_at AS at FROM events WHERE action_id = ANY($1) AND event_type = 'claim_timed_out'",
      [acked.map((row) => row.id)],
    );
    for (const timeout of timeouts) {
      const deadline = acked.find((row) => row.id === timeout.id)!.claim_deadline!.getTime();
      expect(timeout.at.getTime(), "not before the lease ran out").toBeGreaterThanOrEqual(deadline);
      expect(timeout.at.getTime() - deadline, "soon after (sweeps every 0.25 s)").toBeLessThan(2000);
    }

    // Part 2, under load: three worker processes; one is killed mid-run and
    // replaced. The victim's four actions are part of the work to finish.
    // A lease long enough for a busy machine, short enough that the killed
    // worker's acknowledged claims come back soon.
    const workerOptions = (name: string) => ({
      name,
      addresses: [address],
      actionTypes: ["victim_job", "load_job"],
      maxInFlight: 4,
      leaseSeconds: 6,
      workMs: 120,
    });
    const workers = [new WorkerProcess(workerOptions("worker-a")), new WorkerProcess(workerOptions("worker-b")), new WorkerProcess(workerOptions("worker-c"))];
    const count = 240;
    const producer = scenario.produce({ addresses: [address], prefix: "load", count, actionType: "load_job", spreadMs: 6000, flakyEvery: 12 });
    const executions = () => workers.flatMap((w) => w.records).filter((r) => r.ev === "done").length;
    await until("80 executions done", () => executions() >= 80, 60_000);
    const killed = new Map<string, number>([["victim", killedAt]]);
    const target = workers[1]!;
    target.kill9();
    killed.set(target.name, Date.now());
    await target.exitWithin(5000);
    const replacement = new WorkerProcess(workerOptions("worker-d"));
    workers.push(replacement);
    await unlessCrashed(producer.done, "the producer");
    await waitForAll(db, count + 4, 60_000);
    for (const worker of workers) if (worker.alive) worker.sigterm();
    for (const worker of workers) await worker.exitWithin(15_000);

    const records = [...victim.records, ...workers.flatMap((w) => w.records)];
    const report = await verify(db, { keys: [...producer.keys, ...[0, 1, 2, 3].map((i) => `victim-${i}`)], records, killed });
    // What the killed load worker was executing: it may run again, nothing else.
    const interrupted = target.records.filter(
      (r) => r.ev === "start" && !target.records.some((d) => d.token === r.token && d.ev !== "start" && d.ev !== "claim"),
    ).length;
    scenario.summarize(report, `victim_released_in=${releasedAfter}ms victim_timeouts_after_lease=${timeouts.length} interrupted_in_killed=${2 + interrupted}`);
    expect(report.problems).toEqual([]);
    expect(report.completed).toBe(count + 4);
    expect(report.reruns).toBeLessThanOrEqual(2 + interrupted);
    expect(report.reruns).toBeGreaterThanOrEqual(2);
  });
});
