// The database itself guards the history and the lifecycle: the event log
// refuses UPDATE, DELETE and TRUNCATE from any connection, the actions
// table refuses impossible states, and the events recorded for an action
// replay to exactly the status the action is in.
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, grpcError, snapshot, startTestServer } from "./support/harness.js";
import { STATUS, type WireAction, type WireEvent, claimNext, enqueue, enqueueAndClaim, getAction } from "./support/wire.js";
import { eventually } from "./support/wait.js";

let t: TestServer;
beforeAll(async () => {
  // The background sweeper stays out of the way, so that the test's own
  // SweepClaims call is the one that requeues an expired lease.
  t = await startTestServer({ ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600" });
});
afterAll(async () => {
  await t?.close();
});

/** The error a statement fails with, or throws if it succeeded. */
async function sqlError(sql: string, params: unknown[] = []): Promise<{ code?: string; message: string; constraint?: string }> {
  try {
    await t.db.query(sql, params);
  } catch (error) {
    return error as { code?: string; message: string; constraint?: string };
  }
  throw new Error(`the statement succeeded; it should have been refused: ${sql}`);
}

const types = (events: WireEvent[]) => events.map((e) => e.eventType);

describe("the event log is append-only", () => {
  beforeAll(async () => {
    await enqueue(t, { actionType: "history_seed" });
  });

  it.each([
    ["UPDATE", "UPDATE events SET actor = 'human:mallory'"],
    ["UPDATE of one row", "UPDATE events SET payload = '{}'::jsonb WHERE id = (SELECT min(id) FROM events)"],
    ["DELETE", "DELETE FROM events"],
    ["DELETE of one row", "DELETE FROM events WHERE id = (SELECT max(id) FROM events)"],
    ["TRUNCATE", "TRUNCATE events"],
  ])("%s on events is refused by the database", async (_name, sql) => {
    const before = await snapshot(t.db);
    const { rows } = await t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM events");
    expect(rows[0]!.n).toBeGreaterThan(0);
    const error = await sqlError(sql);
    expect(error.code).toBe("42501");
    expect(error.message).toContain("append-only");
    expect(await snapshot(t.db)).toBe(before);
  });

  it("appending is still allowed", async () => {
    const { rows } = await t.db.query<{ id: string }>(
      "INSERT INTO events (action_id, event_type, actor) VALUES (NULL, 'coordinator_cycle', 'test:direct') RETURNING id::text AS id",
    );
    expect(rows[0]!.id).toMatch(/^[1-9][0-9]*$/);
  });
});

describe("the actions table refuses impossible states", () => {
  let approved: WireAction;
  let claimedId: string;
  beforeAll(async () => {
    approved = (await enqueue(t, { actionType: "constraint_target" })).action;
    claimedId = (await enqueueAndClaim(t, "constraint_claimed")).action.id;
  });

  it.each([
    ["claimed with no claim token or deadline", "UPDATE actions SET status = 'claimed' WHERE id = $1", "claim_only_while_claimed"],
    [
      "claimed with a deadline but no token",
      "UPDATE actions SET status = 'claimed', claim_deadline = now() + interval '1 minute' WHERE id = $1",
      "claim_only_while_claimed",
    ],
    ["completed with no finish time", "UPDATE actions SET status = 'completed', result_ref = 'r' WHERE id = $1", "finished_when_final"],
    ["completed with no result", "UPDATE actions SET status = 'completed', finished_at = now() WHERE id = $1", "completed_has_result"],
    ["approved with no approver", "UPDATE actions SET approved_by = NULL WHERE id = $1", "approved_before_claimed"],
    [
      "waiting yet holding a claim token",
      "UPDATE actions SET claim_token = gen_random_uuid(), claimed_by = 'worker:ghost' WHERE id = $1",
      "token_cleared_when_waiting",
    ],
    ["an unknown status", "UPDATE actions SET status = 'paused' WHERE id = $1", "actions_status_check"],
    ["a quorum met while still PENDING", "UPDATE actions SET status = 'pending', approvers = '{human:x}' WHERE id = $1", "pending_until_approvals_complete"],
  ])("an APPROVED action cannot be made %s", async (_name, sql, constraint) => {
    const before = await snapshot(t.db);
    const error = await sqlError(sql, [approved.id]);
    expect(error.code).toBe("23514");
    expect(error.constraint).toBe(constraint);
    expect(await snapshot(t.db)).toBe(before);
    expect((await getAction(t, approved.id)).action.status).toBe(STATUS.approved);
  });

  // Approvals bind to exactly what was reviewed.
  it.each([
    ["its payload", "UPDATE actions SET payload = '{\"replicas\": 0}'::jsonb WHERE id = $1"],
    ["its target", "UPDATE actions SET target_ref = 'prod/db' WHERE id = $1"],
    ["its type", "UPDATE actions SET action_type = 'drop_database' WHERE id = $1"],
    ["its risk level", "UPDATE actions SET risk_level = 'dangerous' WHERE id = $1"],
    ["its confidence", "UPDATE actions SET confidence = 0.1 WHERE id = $1"],
    ["its producer", "UPDATE actions SET created_by = 'human:mallory' WHERE id = $1"],
    ["its quorum", "UPDATE actions SET approvals_required = 5 WHERE id = $1"],
  ])("an enqueued action cannot change %s", async (_name, sql) => {
    const before = await snapshot(t.db);
    const error = await sqlError(sql, [approved.id]);
    expect(error.code).toBe("42501");
    expect(error.message).toMatch(/cannot change after enqueue/);
    expect(await snapshot(t.db)).toBe(before);
  });

  it.each([
    ["approved while keeping its lease", "UPDATE actions SET status = 'approved' WHERE id = $1", "claim_only_while_claimed"],
    ["claimed with no deadline", "UPDATE actions SET claim_deadline = NULL WHERE id = $1", "claim_only_while_claimed"],
    ["finished while still claimed", "UPDATE actions SET finished_at = now() WHERE id = $1", "finished_when_final"],
  ])("a CLAIMED action cannot be made %s", async (_name, sql, constraint) => {
    const before = await snapshot(t.db);
    const error = await sqlError(sql, [claimedId]);
    expect(error.code).toBe("23514");
    expect(error.constraint).toBe(constraint);
    expect(await snapshot(t.db)).toBe(before);
  });
});

describe("the events of an action record its transitions", () => {
  /** The status an action must be in after its events, replayed in order. */
  function replay(events: { event_type: string; payload: Record<string, unknown> }[]): string | undefined {
    let state: string | undefined;
    for (const event of events) {
      switch (event.event_type) {
        case "action_enqueued":
          state = String(event.payload.status);
          break;
        case "action_approved":
          state = "approved";
          break;
        case "action_claimed":
          state = "claimed";
          break;
        case "claim_timed_out":
        case "claim_released":
          state = "approved";
          break;
        case "action_completed":
          state = "completed";
          break;
        case "action_failed":
          state = "failed";
          break;
        case "action_rejected":
          state = "rejected";
          break;
        case "action_cancelled":
          state = "cancelled";
          break;
        case "claim_extended":
          if (state !== "claimed") return `claim_extended while ${state}`;
          break;
        default:
          return `unexpected ${event.event_type}`;
      }
    }
    return state;
  }

  it("driven actions record exactly the expected sequence of events", async () => {
    const expectations: [string, string[], string][] = [];

    const done = await enqueueAndClaim(t, "seq_complete");
    await t.grpc.unary("CompleteAction", { id: done.action.id, claimToken: done.claimToken, resultRef: "ok" });
    expectations.push([done.action.id, ["action_enqueued", "action_approved", "action_claimed", "action_completed"], STATUS.completed]);

    const guarded = (await enqueue(t, { actionType: "seq_guarded", riskLevel: "RISK_LEVEL_GUARDED" })).action;
    await t.grpc.unary("ApproveAction", { id: guarded.id, approver: "human:bob" });
    const guardedClaim = await claimNext(t, { actionTypes: ["seq_guarded"] });
    expect(guardedClaim?.action.id).toBe(guarded.id);
    await t.grpc.unary("ExtendClaim", { id: guarded.id, claimToken: guardedClaim!.claimToken, leaseDuration: { seconds: 600, nanos: 0 } });
    await t.grpc.unary("FailAction", { id: guarded.id, claimToken: guardedClaim!.claimToken, reason: "broken" });
    expectations.push([guarded.id, ["action_enqueued", "action_approved", "action_claimed", "claim_extended", "action_failed"], STATUS.failed]);

    const denied = (await enqueue(t, { actionType: "seq_denied", riskLevel: "RISK_LEVEL_DANGEROUS" })).action;
    await t.grpc.unary("RejectAction", { id: denied.id, actor: "human:carol", reason: "no" });
    expectations.push([denied.id, ["action_enqueued", "action_rejected"], STATUS.rejected]);

    const withdrawn = (await enqueue(t, { actionType: "seq_withdrawn" })).action;
    await t.grpc.unary("CancelAction", { id: withdrawn.id, actor: "human:carol", reason: "changed my mind" });
    expectations.push([withdrawn.id, ["action_enqueued", "action_approved", "action_cancelled"], STATUS.cancelled]);

    const refused = await enqueueAndClaim(t, "seq_refused");
    await t.grpc.unary("RejectAction", { id: refused.action.id, actor: "worker:test", reason: "invalid target", claimToken: refused.claimToken });
    expectations.push([refused.action.id, ["action_enqueued", "action_approved", "action_claimed", "action_rejected"], STATUS.rejected]);

    const waiting = (await enqueue(t, { actionType: "seq_waiting", approvalRequired: true })).action;
    expectations.push([waiting.id, ["action_enqueued"], STATUS.pending]);

    for (const [id, expected, finalStatus] of expectations) {
      const { action, events } = await getAction(t, id);
      expect(types(events), `events of action ${id}`).toEqual(expected);
      expect(action.status, `status of action ${id}`).toBe(finalStatus);
    }
  });

  it("a lease that runs out is requeued with claim_timed_out, and the next claim is attempt 2", async () => {
    const short = (await enqueue(t, { actionType: "seq_short_lease" })).action;
    const claim = await claimNext(t, { actionTypes: ["seq_short_lease"], leaseDuration: { seconds: 1, nanos: 0 } });
    expect(claim?.action.id).toBe(short.id);
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    // eventually() only returns a truthy value.
    const requeued = (await eventually(async () => {
      const res = await t.grpc.unary<{ requeuedActions: WireAction[] }>("SweepClaims", { actor: "human:ops" });
      return res.requeuedActions.find((a) => a.id === short.id);
    }, "the expired lease to be requeued"))!;
    expect(requeued.status).toBe(STATUS.approved);
    expect(requeued.claimedBy).toBe("");
    expect(requeued.attempt).toBe(1);

    // The old token no longer works.
    const stale = await grpcError(t.grpc.unary("CompleteAction", { id: short.id, claimToken: claim!.claimToken, resultRef: "late" }));
    expect(status[stale.code]).toBe(status[status.FAILED_PRECONDITION]);

    const again = await claimNext(t, { actionTypes: ["seq_short_lease"] });
    expect(again?.action.id).toBe(short.id);
    expect(again!.action.attempt).toBe(2);
    expect(again!.claimToken).not.toBe(claim!.claimToken);
    await t.grpc.unary("CompleteAction", { id: short.id, claimToken: again!.claimToken, resultRef: "second" });

    const { events } = await getAction(t, short.id);
    expect(types(events)).toEqual(["action_enqueued", "action_approved", "action_claimed", "claim_timed_out", "action_claimed", "action_completed"]);
    expect(events[3]!.actor).toBe("human:ops");
  });

  it("for every action in the database, replaying its events gives its current status", async () => {
    const { rows: actions } = await t.db.query<{ id: string; status: string }>("SELECT a.id::text AS id, a.status FROM actions a ORDER BY a.id");
    expect(actions.length).toBeGreaterThan(5);
    const { rows: events } = await t.db.query<{ action_id: string; event_type: string; payload: Record<string, unknown> }>(
      "SELECT e.action_id::text AS action_id, e.event_type, e.payload FROM events e WHERE e.action_id IS NOT NULL ORDER BY e.id",
    );
    const byAction = new Map<string, typeof events>();
    for (const event of events) byAction.set(event.action_id, [...(byAction.get(event.action_id) ?? []), event]);
    const mismatches = actions
      .map((action) => ({ id: action.id, status: action.status, replayed: replay(byAction.get(action.id) ?? []) }))
      .filter((row) => row.replayed !== row.status);
    expect(mismatches).toEqual([]);
  });
});
