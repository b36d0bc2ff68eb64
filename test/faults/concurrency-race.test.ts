// Scenario 7: concurrency keys under a race. Three replicas over one
// database, 24 streaming workers spread over them, 2,000 actions on 20
// keys (ten with a limit of 1, ten with a limit of 3). A sampler reads
// the database continuously: the number of CLAIMED actions of a key never
// exceeds its limit, and every action completes once. Then a worker
// holding two keys is killed with -9: the key whose claim it had not
// acknowledged frees at once, the one it had frees when the lease runs out.
import type pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import { verify, waitForAll } from "./lib/check.js";
import { WorkerProcess } from "./lib/processes.js";
import { beginScenario, endScenario, serverEnv, unlessCrashed, until } from "./lib/scenario.js";
import { createClient, unary } from "./worker.mjs";

afterEach(endScenario);

const KEYS = 20;
const limitOf = (key: number) => (key < 10 ? 1 : 3);

/** Reads the CLAIMED count of every key, again and again, until stopped;
 * keeps the highest seen per key. Each read is one statement, one
 * snapshot: what it counts was true at once. */
class Sampler {
  readonly max = new Map<string, number>();
  samples = 0;
  private stopped = false;
  readonly done: Promise<void>;

  constructor(private readonly db: pg.Pool) {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const { rows } = await this.db.query<{ key: string; n: number }>(
        "SELECT concurrency_key AS key, count(*)::int AS n FROM actions WHERE status = 'claimed' AND concurrency_key IS NOT NULL GROUP BY 1",
      );
      this.samples++;
      for (const row of rows) this.max.set(row.key, Math.max(this.max.get(row.key) ?? 0, row.n));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

describe("scenario 7: concurrency keys across replicas", () => {
  it("never more CLAIMED actions of a key than its limit, every action once; a killed holder's keys free", async () => {
    const scenario = beginScenario("7 concurrency keys");
    const { crew } = scenario;
    const { url, schema, db } = scenario.database("keys");
    const env = serverEnv(url, schema, { ACTIONQ_POOL_SIZE: "6", ACTIONQ_SWEEP_INTERVAL_SECONDS: "0.25", ACTIONQ_ACK_TIMEOUT_SECONDS: "30" });
    const replicas = [await scenario.server("replica-0", env), await scenario.server("replica-1", env), await scenario.server("replica-2", env)];
    const addresses = replicas.map((replica) => replica.address);

    const count = 2000;
    const producer = scenario.produce({
      addresses,
      prefix: "keyed",
      count,
      actionType: "keyed_job",
      concurrency: 6,
      spreadMs: 0,
      flakyEvery: 25,
      keyOf: (i) => ({ key: `key-${i % KEYS}`, limit: limitOf(i % KEYS) }),
    });
    // The whole backlog first, then every worker at once: each key has
    // more waiting than its limit, and 24 workers race for it.
    await unlessCrashed(producer.done, "the producer");
    const sampler = new Sampler(db);
    const producedAt = Date.now();
    for (let w = 0; w < 24; w++) {
      const home = w % 3;
      crew.add({
        name: `worker-${w}`,
        addresses: [addresses[home]!, addresses[(home + 1) % 3]!, addresses[(home + 2) % 3]!],
        actionTypes: ["keyed_job"],
        maxInFlight: 2,
        leaseSeconds: 60,
        workMs: 15,
      });
    }

    await waitForAll(db, count, 150_000);
    const drainedMs = Date.now() - producedAt;
    await sampler.stop();

    const report = await verify(db, { keys: producer.keys, records: crew.records });
    const byLimit = (limit: number) => Math.max(...[...sampler.max].filter(([key]) => limitOf(Number(key.slice("key-".length))) === limit).map(([, n]) => n));
    const over = [...sampler.max].filter(([key, n]) => n > limitOf(Number(key.slice("key-".length))));
    const { rows: counters } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM concurrency_keys WHERE claimed <> 0");

    // Part 2: a holder of two keys killed with -9.
    const client = createClient(addresses[0]!);
    try {
      for (const key of ["held-acked", "held-unacked"]) {
        for (let i = 0; i < 2; i++) {
          await unary(client, "EnqueueAction", {
            actionType: "victim_keyed",
            createdBy: "human:victim-setup",
            idempotencyKey: `${key}-${i}`,
            concurrencyKey: key,
          });
        }
      }
    } finally {
      client.close();
    }
    const leaseSeconds = 3;
    const victim = new WorkerProcess({
      name: "victim",
      addresses: [addresses[1]!],
      actionTypes: ["victim_keyed"],
      maxInFlight: 2,
      leaseSeconds,
      ackLimit: 1,
      hang: true,
    });
    await victim.until(
      "one execution and one unacknowledged claim",
      () => victim.records.some((r) => r.ev === "start") && victim.records.some((r) => r.ev === "held_unacked"),
    );
    const { rows: held } = await db.query<{ key: string; acked: boolean; deadline: Date }>(
      "SELECT concurrency_key AS key, acked_at IS NOT NULL AS acked, claim_deadline AS deadline FROM actions WHERE claimed_by = 'victim' AND status = 'claimed'",
    );
    expect(held.map((row) => row.acked).sort()).toEqual([false, true]);
    const ackedKey = held.find((row) => row.acked)!;
    const unackedKey = held.find((row) => !row.acked)!;
    // Nothing else of these keys may run while the victim holds them.
    const waiting = async (key: string) => (await db.query<{ n: number }>("SELECT claimed AS n FROM concurrency_keys WHERE key = $1", [key])).rows[0]!.n;
    expect([await waiting(ackedKey.key), await waiting(unackedKey.key)]).toEqual([1, 1]);

    const killedAt = Date.now();
    victim.kill9();
    await victim.exitWithin(5000);
    await until("the unacknowledged key freed", async () => (await waiting(unackedKey.key)) === 0, 10_000);
    const unackedFreedMs = Date.now() - killedAt;
    expect(await waiting(ackedKey.key), "the acknowledged claim holds its key until the lease ends").toBe(1);
    await until("the acknowledged key freed", async () => (await waiting(ackedKey.key)) === 0, leaseSeconds * 1000 + 10_000);
    const ackedFreedAt = Date.now();
    // The next action of each key is claimable at once: a worker takes both.
    const taker = crew.add({ name: "taker", addresses, actionTypes: ["victim_keyed"], maxInFlight: 4, leaseSeconds: 60, workMs: 5 });
    await waitForAll(db, count + 4, 30_000);
    await crew.stop();

    scenario.summarize(
      report,
      `drained_in=${drainedMs}ms max_claimed_per_key limit1=${byLimit(1)} limit3=${byLimit(3)} samples=${sampler.samples} ` +
        `unacked_key_freed_after=${unackedFreedMs}ms acked_key_freed_after_lease_end=${ackedFreedAt - ackedKey.deadline.getTime()}ms taker_completed=${taker.stats.completed}`,
    );
    expect(over, "keys seen above their limit").toEqual([]);
    expect(report.problems).toEqual([]);
    expect(report.completed).toBe(count);
    expect(report.duplicates).toBe(0);
    expect(sampler.samples).toBeGreaterThan(100);
    // Under load every key reached its limit at some point: the sampler saw
    // the keys full, not a queue that never raced.
    expect(byLimit(3)).toBe(3);
    expect(byLimit(1)).toBe(1);
    expect(counters[0]!.n, "every key's count back to zero").toBe(0);
    expect(unackedFreedMs).toBeLessThan(leaseSeconds * 1000);
    expect(ackedFreedAt).toBeGreaterThanOrEqual(ackedKey.deadline.getTime());
  });
});
