// A long queue on one concurrency key must not slow claims of other work:
// with 100,000 approved actions waiting on one key (whose holder is still
// running), the claim statement reads that key's head through its index
// and never walks the backlog. Asserted on the rows each node of the plan
// handled, as PostgreSQL reports them, not on time or buffers (buffers
// count catalog reads, which grow with whatever else the database holds).
// Set ACTIONQ_PRINT_PLAN=1 to print the plan.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ActionClaimMany } from "../src/store/action-queries.js";
import { type TestServer, closeWithin, startTestServer } from "./support/harness.js";
import { claimNext, enqueue } from "./support/wire.js";

const BACKLOG = 100_000;

interface PlanNode {
  "Node Type": string;
  "Index Name"?: string;
  "Actual Rows"?: number;
  "Actual Loops"?: number;
  "Rows Removed by Filter"?: number;
  Plans?: PlanNode[];
}

function* nodes(node: PlanNode): Generator<PlanNode> {
  yield node;
  for (const child of node.Plans ?? []) yield* nodes(child);
}

describe("the claim statement with a long queue on one key", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_POLL_INTERVAL_SECONDS: "3600", ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600" });
  }, 120_000);
  afterAll(async () => {
    await closeWithin(t);
  });

  it("reads the busy key's head, not its backlog, and claims the other work", { timeout: 120_000 }, async () => {
    // The busy key: one action running, then 100,000 behind it, copied in
    // one statement from one enqueued through the API.
    await enqueue(t, { actionType: "busy", concurrencyKey: "node-1" });
    const template = (await enqueue(t, { actionType: "busy", concurrencyKey: "node-1" })).action;
    expect((await claimNext(t, { actionTypes: ["busy"] }))?.action.concurrencyKey).toBe("node-1");
    await t.db.query(
      `INSERT INTO actions (action_type, project, target_ref, source_refs, payload, priority, status, risk_level, created_by, correlation_id,
         node, service, policy_version, approved_by, approved_at, concurrency_key, concurrency_limit)
       SELECT action_type, project, target_ref, source_refs, payload, priority, status, risk_level, created_by, correlation_id,
         node, service, policy_version, approved_by, approved_at, concurrency_key, concurrency_limit
       FROM actions, generate_series(1, $2) WHERE id = $1`,
      [template.id, BACKLOG - 1],
    );
    await t.db.query("ANALYZE actions");
    const other = (await enqueue(t, { actionType: "busy", concurrencyKey: "node-2" })).action;
    const plain = (await enqueue(t, { actionType: "other" })).action;

    const client = await t.db.connect();
    try {
      await client.query("BEGIN");
      if (process.env.ACTIONQ_PRINT_PLAN) {
        await client.query("SAVEPOINT before_print");
        const { rows: text } = await client.query<{ "QUERY PLAN": string }>(`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ${ActionClaimMany.any}`, [
          [null, null],
          ["w", "w"],
          [30_000, 30_000],
          2,
          30_000,
        ]);
        console.log(text.map((row) => row["QUERY PLAN"]).join("\n"));
        await client.query("ROLLBACK TO SAVEPOINT before_print");
      }
      const { rows } = await client.query<{ "QUERY PLAN": [{ Plan: PlanNode }] }>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${ActionClaimMany.any}`, [
        [null, null],
        ["w", "w"],
        [30_000, 30_000],
        2,
        30_000,
      ]);
      const plan = rows[0]!["QUERY PLAN"][0].Plan;
      const { rows: claimed } = await client.query<{ id: string; status: string }>(
        "SELECT id::text, status FROM actions WHERE status = 'claimed' AND id = ANY($1) ORDER BY id",
        [[other.id, plain.id]],
      );
      await client.query("ROLLBACK");

      // Both claimable actions were claimed; the busy key gave nothing.
      expect(claimed.map((row) => row.id)).toEqual([other.id, plain.id]);
      const all = [...nodes(plan)];
      const keyScans = all.filter((node) => node["Index Name"] === "actions_ready_by_key");
      expect(keyScans.length).toBeGreaterThan(0);
      // No node of the plan handled anything like the backlog.
      for (const node of all) {
        const handled = (node["Actual Rows"] ?? 0) * (node["Actual Loops"] ?? 1) + (node["Rows Removed by Filter"] ?? 0);
        expect(handled, `${node["Node Type"]} ${node["Index Name"] ?? ""}`).toBeLessThan(100);
      }
    } finally {
      client.release();
    }
  });
});
