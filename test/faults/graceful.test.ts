// Scenario 6: graceful shutdown (SIGTERM) under load, as in a rolling
// deploy over two replicas: replica A is stopped while B serves, then A is
// started again and B is stopped, and B comes back. Every stream open on a
// stopping server gets Drain(SHUTDOWN) and ends; the server exits 0 having
// put back what was not acknowledged; workers finish what they had
// acknowledged through the other replica; nothing is lost or run twice.
import { afterEach, describe, expect, it } from "vitest";
import { verify, waitForAll } from "./lib/check.js";
import { Watcher } from "./lib/load.js";
import type { ServerProcess } from "./lib/processes.js";
import { beginScenario, endScenario, serverEnv, unlessCrashed, until } from "./lib/scenario.js";

afterEach(endScenario);

describe("scenario 6: graceful shutdown under load", () => {
  it("a rolling restart with SIGTERM drains every stream (cause SHUTDOWN), exits 0 and loses nothing", async () => {
    const scenario = beginScenario("6 graceful shutdown");
    const { crew } = scenario;
    const { url, schema, db } = scenario.database("graceful");

    const env = serverEnv(url, schema);
    let a = await scenario.server("replica-a", env);
    let b = await scenario.server("replica-b", env);
    const addressA = a.address;
    const addressB = b.address;
    const envA = { ...env, ACTIONQ_LISTEN: addressA };
    const envB = { ...env, ACTIONQ_LISTEN: addressB };

    for (let i = 0; i < 4; i++) {
      const order = i % 2 === 0 ? [addressA, addressB] : [addressB, addressA];
      crew.add({ name: `worker-${i}`, addresses: order, actionTypes: ["graceful_job"], maxInFlight: 4, leaseSeconds: 60, workMs: 50 });
    }
    const watcher = new Watcher([addressA, addressB]);
    const count = 320;
    const producer = scenario.produce({ addresses: [addressA, addressB], prefix: "grace", count, actionType: "graceful_job", spreadMs: 9000, flakyEvery: 10 });

    const stops: { name: string; ms: number; unackedLeft: number }[] = [];
    const workers = [...crew.workers];
    const drains = (cause = "DRAIN_CAUSE_SHUTDOWN") => workers.reduce((sum, w) => sum + (w.stats.drains[cause] ?? 0), 0);
    const stop = async (server: ServerProcess) => {
      const before = drains();
      const at = Date.now();
      server.sigterm();
      expect(await server.exitWithin(20_000), `${server.name} exits cleanly`).toEqual({ code: 0, signal: null });
      expect(server.logged("stopped"), `${server.name} logged its stop`).toHaveLength(1);
      // Nothing that this server delivered and nobody acknowledged stays held.
      const { rows } = await db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM actions WHERE status = 'claimed' AND acked_at IS NULL AND claim_session IS NOT NULL AND claimed_at < $1",
        [new Date(at)],
      );
      stops.push({ name: server.name, ms: Date.now() - at, unackedLeft: rows[0]!.n });
      // Every worker had a stream on it or not; those that did were drained.
      expect(drains()).toBeGreaterThan(before);
    };

    await until("60 executions", () => crew.finished >= 60, 60_000);
    await stop(a);
    await until("140 executions", () => crew.finished >= 140, 60_000);
    a = await scenario.server("replica-a-again", envA);
    await stop(b);
    await until("220 executions", () => crew.finished >= 220, 60_000);
    b = await scenario.server("replica-b-again", envB);

    await unlessCrashed(producer.done, "the producer");
    await waitForAll(db, count, 60_000);
    await crew.stop();
    const { rows } = await db.query<{ id: string }>("SELECT max(id)::text AS id FROM events");
    await watcher.finish(rows[0]!.id);

    const report = await verify(db, { keys: producer.keys, records: crew.records, watched: watcher.events });
    scenario.summarize(
      report,
      `stops=${stops.map((s) => `${s.name}:${s.ms}ms`).join(",")} shutdown_drains=${drains()} unacked_left_after_stop=${stops.map((s) => s.unackedLeft).join(",")} producer_retries=${producer.stats.retries}`,
    );
    expect(report.problems).toEqual([]);
    expect(report.completed).toBe(count);
    for (const s of stops) expect(s.unackedLeft, `unacknowledged claims left by ${s.name}`).toBe(0);
    // A shutdown is not an old stream.
    expect(drains("DRAIN_CAUSE_MAX_AGE")).toBe(0);
    for (const server of [a, b]) server.sigterm();
    for (const server of [a, b]) expect(await server.exitWithin(20_000)).toEqual({ code: 0, signal: null });
  });
});
