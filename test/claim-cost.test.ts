// The claim statement on a large backlog: PostgreSQL plans it with an
// estimated cost far past its JIT thresholds, and JIT code is compiled anew
// on every execution (about 1.2 s a claim, against 3 ms to run it). The
// server's connections turn JIT off; this checks it on the plan of a claim
// over 200,000 waiting actions, made on a connection configured exactly as
// the server's are. Asserted on what PostgreSQL reports, not on time.
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ActionClaimMany } from "../src/store/action-queries.js";
import { createClient } from "../src/store/db.js";
import { type TestServer, closeWithin, startTestServer } from "./support/harness.js";
import { enqueue } from "./support/wire.js";

const BACKLOG = 200_000;

describe("the claim statement on a large backlog", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_POLL_INTERVAL_SECONDS: "3600", ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600" });
  }, 120_000);
  afterAll(async () => {
    await closeWithin(t);
  });

  it("is planned and run without JIT on the server's connections", { timeout: 120_000 }, async () => {
    const template = (await enqueue(t, { actionType: "backlog_job" })).action;
    await t.db.query(
      `INSERT INTO actions (action_type, project, target_ref, source_refs, payload, priority, status, risk_level, created_by, correlation_id,
         node, service, policy_version, approved_by, approved_at)
       SELECT action_type, project, target_ref, source_refs, payload, priority, status, risk_level, created_by, correlation_id,
         node, service, policy_version, approved_by, approved_at
       FROM actions, generate_series(1, $2) WHERE id = $1`,
      [template.id, BACKLOG - 1],
    );
    await t.db.query("ANALYZE actions");
    const explain = async (client: pg.ClientBase) => {
      await client.query("BEGIN");
      try {
        const { rows } = await client.query<{ "QUERY PLAN": [Record<string, unknown>] }>(`EXPLAIN (ANALYZE, FORMAT JSON) ${ActionClaimMany.any}`, [
          Array(64).fill(null),
          Array(64).fill("w"),
          Array(64).fill(30_000),
          64,
          30_000,
        ]);
        return rows[0]!["QUERY PLAN"][0];
      } finally {
        await client.query("ROLLBACK");
      }
    };

    const server = createClient({ url: t.databaseUrl, schema: t.schema, pooler: "none" }, "actionq-test-claim-cost");
    await server.connect();
    try {
      expect((await server.query("SHOW jit")).rows[0].jit).toBe("off");
      const plan = await explain(server);
      expect(plan.JIT, "no JIT in the claim on the server's connections").toBeUndefined();
      expect((plan.Plan as { "Actual Rows": number })["Actual Rows"]).toBe(64);
    } finally {
      await server.end();
    }

    // The same statement on a connection with PostgreSQL's defaults
    // compiles with JIT, where this PostgreSQL has it: the check above is
    // about something real.
    const plain = await t.db.connect();
    try {
      const available = (await plain.query("SELECT pg_jit_available() AND current_setting('jit') = 'on' AS on")).rows[0].on;
      if (available) expect((await explain(plain)).JIT, "JIT with PostgreSQL's defaults").toBeDefined();
    } finally {
      plain.release();
    }
  });
});
