// Retention: finished actions past ACTIONQ_RETENTION_SECONDS leave the hot
// table for actions_archive, live ones never do, and nothing about them is
// lost: GetAction still answers with the whole history, an idempotency key
// still names its action, an archived parent can still have children, and
// the event log is untouched.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, closeWithin, startTestServer } from "./support/harness.js";
import { type WireAction, type WireClaim, enqueue } from "./support/wire.js";
import { eventually } from "./support/wait.js";

let t: TestServer;
beforeAll(async () => {
  // The shortest age allowed; the test moves finish times back instead of
  // waiting.
  t = await startTestServer({ ACTIONQ_RETENTION_SECONDS: "60", ACTIONQ_SWEEP_INTERVAL_SECONDS: "0.2" });
});
afterAll(async () => {
  await closeWithin(t);
});

const inTable = async (table: string, id: string) => Number((await t.db.query(`SELECT count(*) FROM ${table} WHERE id = $1`, [id])).rows[0].count);

describe("retention", () => {
  it("has the same columns, in the same order, in actions and actions_archive", async () => {
    const columns = async (table: string) =>
      (
        await t.db.query(
          "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
          [t.schema, table],
        )
      ).rows;
    expect(await columns("actions_archive")).toEqual(await columns("actions"));
  });

  it("moves finished actions past the age to the archive and keeps them answerable; live actions stay", async () => {
    const done = (await enqueue(t, { actionType: "kept_job", project: "ret", idempotencyKey: "ret-1" })).action;
    const live = (await enqueue(t, { actionType: "kept_job", project: "ret-live" })).action;
    const { claim } = await t.grpc.unary<{ claim: WireClaim }>("ClaimAction", { worker: "worker:ret", projects: ["ret"] });
    await t.grpc.unary("CompleteAction", { id: claim.action.id, claimToken: claim.claimToken, resultRef: "r" });
    const eventsBefore = (await t.db.query("SELECT id, event_type FROM events WHERE action_id = $1 ORDER BY id", [done.id])).rows;

    // Still young: nothing moves.
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(await inTable("actions", done.id)).toBe(1);

    // Age it (the hot table allows this column to change) and let the sweeper run.
    await t.db.query("UPDATE actions SET finished_at = now() - interval '2 minutes' WHERE id = $1", [done.id]);
    await eventually(async () => (await inTable("actions_archive", done.id)) === 1 || undefined, "the finished action is archived");
    expect(await inTable("actions", done.id)).toBe(0);
    expect(await inTable("actions", live.id)).toBe(1);

    const got = await t.grpc.unary<{ action: WireAction; events: { eventType: string }[] }>("GetAction", { id: done.id });
    expect(got.action.status).toBe("ACTION_STATUS_COMPLETED");
    expect(got.events.map((e) => e.eventType)).toEqual(eventsBefore.map((e) => e.event_type));
    expect((await t.db.query("SELECT id, event_type FROM events WHERE action_id = $1 ORDER BY id", [done.id])).rows).toEqual(eventsBefore);

    const again = await enqueue(t, { actionType: "kept_job", project: "ret", idempotencyKey: "ret-1" });
    expect(again.created).toBe(false);
    expect(again.action.id).toBe(done.id);

    const child = await enqueue(t, { actionType: "kept_job", project: "ret-child", parentId: done.id });
    expect(child.action.chainDepth).toBe(1);
  });
});
