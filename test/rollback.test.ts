// RollbackAction over the wire: the reverse of a COMPLETED or FAILED action
// as a child action with its lineage, the policy applied to it, at most one
// live rollback per action, the refusals (status, no rollback_ref, chain
// depth), the enqueue-time checks of rollback_ref and rollback_payload; and
// the workers' action_progress events, which need the claim token.
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, grpcError, snapshot, startTestServer } from "./support/harness.js";
import {
  FOREIGN_TOKEN,
  STATUS,
  type WireAction,
  type WireClaim,
  type WireEvent,
  claimNext,
  enqueue,
  errorInfoOf,
  expectRefused,
  fromStruct,
  getAction,
  messageOf,
  toStruct,
} from "./support/wire.js";
import { nthClaim, openClaimStream } from "./support/streams.js";
import { RISK, eventTypes, unique } from "./support/safety.js";
import { sleep } from "./support/wait.js";

interface RollbackResponse {
  rollback: WireAction;
  created: boolean;
}

let t: TestServer;
beforeAll(async () => {
  // Streamed claims must be acknowledged within half a second here.
  t = await startTestServer({
    ACTIONQ_MAX_CHAIN_DEPTH: "2",
    ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600",
    ACTIONQ_ACK_TIMEOUT_SECONDS: "0.5",
    ACTIONQ_HEARTBEAT_SECONDS: "0.2",
  });
});
afterAll(async () => {
  await t?.close();
});

const rollback = (id: string, actor = "human:oncall", reason = "the change made things worse") =>
  t.grpc.unary<RollbackResponse>("RollbackAction", { id, actor, reason });

async function claimOf(action: WireAction): Promise<WireClaim> {
  const claim = await claimNext(t, { worker: "worker:rollback", actionTypes: [action.actionType] });
  if (!claim || claim.action.id !== action.id) throw new Error(`could not claim action ${action.id}`);
  return claim;
}

/** Enqueues a SAFE action of a type of its own, claims it and completes or fails it. */
async function finished(outcome: "completed" | "failed", extra: Record<string, unknown> = {}): Promise<WireAction> {
  const { action } = await enqueue(t, { actionType: unique("forward"), ...extra });
  expect(action.status).toBe(STATUS.approved);
  const claim = await claimOf(action);
  if (outcome === "completed") {
    return (await t.grpc.unary<{ action: WireAction }>("CompleteAction", { id: action.id, claimToken: claim.claimToken, resultRef: "done" })).action;
  }
  return (await t.grpc.unary<{ action: WireAction }>("FailAction", { id: action.id, claimToken: claim.claimToken, reason: "it broke" })).action;
}

describe("RollbackAction", () => {
  it("on a COMPLETED action creates the reverse as a child: rollback_ref's type, rollback_payload, the same scope, proposed by the actor", async () => {
    const revert = unique("revert_config");
    // The scope a rollback inherits from the action it reverses.
    const scope = { project: "web", node: "node-3", service: "api", targetRef: "svc/api", correlationId: "inc-7", priority: 7 };
    const forward = await finished("completed", {
      ...scope,
      sourceRefs: ["alert:1"],
      payload: toStruct({ version: 42 }),
      rollbackRef: revert,
      rollbackPayload: toStruct({ version: 41, force: true }),
      createdBy: "agent:deployer",
    });
    expect(fromStruct(forward.rollbackPayload)).toEqual({ version: 41, force: true });

    const res = await rollback(forward.id, "human:oncall", "error rate doubled");
    expect(res.created).toBe(true);
    const child = res.rollback;
    expect(child).toMatchObject({
      actionType: revert,
      ...scope,
      parentId: forward.id,
      rollbackOfId: forward.id,
      chainDepth: 1,
      createdBy: "human:oncall",
      sourceRefs: [`action:${forward.id}`],
      riskLevel: RISK.safe,
      // A SAFE type under the standard policy goes straight to the queue.
      status: STATUS.approved,
      approvedBy: "policy:standard",
    });
    expect(fromStruct(child.payload)).toEqual({ version: 41, force: true });
    expect(child.id).not.toBe(forward.id);

    const { events } = await getAction(t, child.id);
    expect(eventTypes(events)).toEqual(["action_enqueued", "action_approved"]);
    expect(events[0]!.actor).toBe("human:oncall");
    expect(JSON.stringify(fromStruct(events[0]!.payload))).toContain("error rate doubled");
    // The forward action itself is untouched.
    expect((await getAction(t, forward.id)).action.status).toBe(STATUS.completed);
    const children = await t.grpc.unary<{ actions: WireAction[] }>("ListActions", { parentId: forward.id });
    expect(children.actions.map((a) => a.id)).toEqual([child.id]);
  });

  it("on a FAILED action works too; no rollback_payload means an empty payload", async () => {
    const revert = unique("undo");
    const forward = await finished("failed", { rollbackRef: revert });
    const res = await rollback(forward.id);
    expect(res.created).toBe(true);
    expect(res.rollback).toMatchObject({ actionType: revert, parentId: forward.id, rollbackOfId: forward.id, status: STATUS.approved });
    expect(fromStruct(res.rollback.payload)).toEqual({});
  });

  it("the policy applies: a GUARDED rollback type waits in PENDING for its approver", async () => {
    const forward = await finished("completed", { rollbackRef: "redeploy_service", rollbackPayload: toStruct({ image: "api:1.4.1" }) });
    const res = await rollback(forward.id, "agent:remediator");
    expect(res.rollback).toMatchObject({
      actionType: "redeploy_service",
      riskLevel: RISK.guarded,
      status: STATUS.pending,
      approvalsRequired: 1,
      createdBy: "agent:remediator",
    });
    expect(eventTypes((await getAction(t, res.rollback.id)).events)).toEqual(["action_enqueued"]);
    expect(await claimNext(t, { actionTypes: ["redeploy_service"] })).toBeNull();
    // And the producer of the rollback cannot approve it.
    await expectRefused(t, () => t.grpc.unary("ApproveAction", { id: res.rollback.id, approver: "agent:remediator" }), {
      code: status.PERMISSION_DENIED,
      reason: "SELF_APPROVAL",
    });
  });

  it("a repeated call returns the live rollback with created=false and writes nothing; once it is rejected, a new one can be made", async () => {
    const forward = await finished("completed", { rollbackRef: "redeploy_service" });
    const first = await rollback(forward.id);
    const before = await snapshot(t.db);
    const again = await rollback(forward.id, "human:someone-else", "another reason");
    expect(await snapshot(t.db)).toBe(before);
    expect(again.created).toBe(false);
    expect(again.rollback).toEqual(first.rollback);

    await t.grpc.unary("RejectAction", { id: first.rollback.id, actor: "human:carol", reason: "not this way" });
    const second = await rollback(forward.id);
    expect(second.created).toBe(true);
    expect(second.rollback.id).not.toBe(first.rollback.id);
    expect(second.rollback.rollbackOfId).toBe(forward.id);
  });

  it("a COMPLETED rollback is still the rollback (created=false); a FAILED or CANCELLED one makes room for a new one", async () => {
    const revert = unique("revert");
    const forward = await finished("completed", { rollbackRef: revert });
    const first = (await rollback(forward.id)).rollback;
    const claim = await claimOf(first);
    await t.grpc.unary("FailAction", { id: first.id, claimToken: claim.claimToken, reason: "revert failed" });
    const second = await rollback(forward.id);
    expect(second.created).toBe(true);

    await t.grpc.unary("CancelAction", { id: second.rollback.id, actor: "human:carol", reason: "changed my mind" });
    const third = await rollback(forward.id);
    expect(third.created).toBe(true);
    const thirdClaim = await claimOf(third.rollback);
    await t.grpc.unary("CompleteAction", { id: third.rollback.id, claimToken: thirdClaim.claimToken, resultRef: "reverted" });
    const fourth = await rollback(forward.id);
    expect(fourth.created).toBe(false);
    expect(fourth.rollback).toMatchObject({ id: third.rollback.id, status: STATUS.completed });
  });

  it("concurrent calls create exactly one rollback, and every caller gets it", async () => {
    for (let round = 0; round < 6; round++) {
      const forward = await finished("completed", { rollbackRef: unique("revert_race") });
      const results = await Promise.allSettled(Array.from({ length: 6 }, () => rollback(forward.id)));
      const failures = results.flatMap((r) =>
        r.status === "rejected" ? [`${status[(r.reason as { code: number }).code]} ${(r.reason as Error).message}`] : [],
      );
      expect(failures, `round ${round}`).toEqual([]);
      const answers = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
      expect(answers.filter((r) => r.created)).toHaveLength(1);
      expect(new Set(answers.map((r) => r.rollback.id)).size).toBe(1);
      const { rows } = await t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM actions WHERE parent_id = $1", [forward.id]);
      expect(rows[0]!.n).toBe(1);
    }
  });

  it.each(["PENDING", "APPROVED", "CLAIMED", "REJECTED", "CANCELLED"])(
    "is refused for a %s action with INVALID_TRANSITION and its current status",
    async (current) => {
      const type = unique("not_finished");
      const request = { actionType: type, rollbackRef: unique("revert"), approvalRequired: current === "PENDING" || current === "REJECTED" };
      const { action } = await enqueue(t, request);
      if (current === "CLAIMED") await claimOf(action);
      if (current === "REJECTED") await t.grpc.unary("RejectAction", { id: action.id, actor: "human:carol", reason: "no" });
      if (current === "CANCELLED") await t.grpc.unary("CancelAction", { id: action.id, actor: "human:carol", reason: "no" });
      expect((await getAction(t, action.id)).action.status).toBe(`ACTION_STATUS_${current}`);
      await expectRefused(t, () => rollback(action.id), { code: status.FAILED_PRECONDITION, reason: "INVALID_TRANSITION", currentStatus: current });
    },
  );

  it("an action with no rollback_ref is FAILED_PRECONDITION NO_ROLLBACK_REF", async () => {
    const forward = await finished("completed");
    await expectRefused(t, () => rollback(forward.id), { code: status.FAILED_PRECONDITION, reason: "NO_ROLLBACK_REF" });
  });

  it("an unknown id is NOT_FOUND, and a missing actor INVALID_ARGUMENT naming actor", async () => {
    await expectRefused(t, () => rollback("99999999"), { code: status.NOT_FOUND, reason: "ACTION_NOT_FOUND" });
    const forward = await finished("completed", { rollbackRef: unique("revert") });
    await expectRefused(t, () => rollback(forward.id, ""), { code: status.INVALID_ARGUMENT, reason: "INVALID_FIELD", field: "actor" });
  });

  it("respects ACTIONQ_MAX_CHAIN_DEPTH (2 here): the rollback of an action at depth 2 is CHAIN_TOO_DEEP", async () => {
    const root = (await enqueue(t, { actionType: unique("root") })).action;
    const child = (await enqueue(t, { actionType: unique("child"), parentId: root.id })).action;
    // Depth 1: its rollback lands at depth 2, the limit.
    const atOne = await finished("completed", { parentId: root.id, rollbackRef: unique("revert") });
    expect(atOne.chainDepth).toBe(1);
    expect((await rollback(atOne.id)).rollback.chainDepth).toBe(2);
    // Depth 2: its rollback would be at depth 3.
    const atTwo = await finished("completed", { parentId: child.id, rollbackRef: unique("revert") });
    expect(atTwo.chainDepth).toBe(2);
    await expectRefused(t, () => rollback(atTwo.id), { code: status.FAILED_PRECONDITION, reason: "CHAIN_TOO_DEEP" });
  });
});

describe("rollback fields at enqueue", () => {
  it("rollback_payload without rollback_ref is INVALID_ARGUMENT, and nothing is written", async () => {
    const before = await snapshot(t.db);
    const error = await grpcError(enqueue(t, { actionType: "x", rollbackPayload: toStruct({ a: 1 }) }));
    expect(await snapshot(t.db)).toBe(before);
    expect(status[error.code]).toBe("INVALID_ARGUMENT");
    // Either field may be the one named: the pair is what is wrong.
    expect(["rollback_payload", "rollback_ref"]).toContain(errorInfoOf(error)?.metadata.field);
    expect(messageOf(error)).toMatch(/rollback_(payload|ref)/);
  });

  it("a rollback_ref that is not a valid action type name is INVALID_ARGUMENT naming rollback_ref", async () => {
    await expectRefused(t, () => enqueue(t, { actionType: "x", rollbackRef: "not a type!" }), {
      code: status.INVALID_ARGUMENT,
      reason: "INVALID_FIELD",
      field: "rollback_ref",
    });
  });

  it("rollback_ref and rollback_payload are kept on the action and read back", async () => {
    const { action } = await enqueue(t, {
      actionType: unique("with_rollback"),
      rollbackRef: "redeploy_service",
      rollbackPayload: toStruct({ image: "api:1.0", replicas: 3 }),
    });
    const { action: stored } = await getAction(t, action.id);
    expect(stored.rollbackRef).toBe("redeploy_service");
    expect(fromStruct(stored.rollbackPayload)).toEqual({ image: "api:1.0", replicas: 3 });
    expect(stored.rollbackOfId).toBe("0");
  });
});

/** A refused call that wrote nothing; the caller checks the code. */
async function expectRefusedAnyReason(call: () => Promise<unknown>) {
  const before = await snapshot(t.db);
  const error = await grpcError(call());
  expect(await snapshot(t.db)).toBe(before);
  return error;
}

describe("EmitEvent action_progress", () => {
  const progress = (id: string, claimToken: string, payload: Record<string, unknown> = { step: "drain" }) =>
    t.grpc.unary<{ event: WireEvent }>("EmitEvent", {
      eventType: "action_progress",
      actionId: id,
      claimToken,
      actor: "worker:rollback",
      payload: toStruct(payload as never),
    });

  it("records a worker's progress on the action it holds, with its token", async () => {
    const { action } = await enqueue(t, { actionType: unique("progressing") });
    const claim = await claimOf(action);
    const res = await progress(action.id, claim.claimToken, { step: "drain", done: 2, of: 5 });
    expect(res.event).toMatchObject({ eventType: "action_progress", actionId: action.id, actor: "worker:rollback" });
    expect(fromStruct(res.event.payload)).toMatchObject({ step: "drain", done: 2, of: 5 });
    const { action: stored, events } = await getAction(t, action.id);
    expect(stored.status).toBe(STATUS.claimed);
    expect(eventTypes(events)).toEqual(["action_enqueued", "action_approved", "action_claimed", "action_progress"]);
  });

  it("progress with the token acknowledges a streamed claim, as any call with its token does", async () => {
    const { action } = await enqueue(t, { actionType: unique("progress_ack") });
    const worker = openClaimStream(t, { worker: "worker:streamed", actionTypes: [action.actionType], maxInFlight: 1 });
    try {
      const claim = await nthClaim(worker, 1, 5000);
      expect(claim.action.claimAcked).toBe(false);
      await progress(action.id, claim.claimToken, { step: "started" });
      // Past the 0.5 s acknowledgement deadline, a sweep must leave the claim alone.
      await sleep(800);
      await t.grpc.unary("SweepClaims", {});
      const { action: stored, events } = await getAction(t, action.id);
      expect({ status: stored.status, claimAcked: stored.claimAcked, events: eventTypes(events) }).toEqual({
        status: STATUS.claimed,
        claimAcked: true,
        events: ["action_enqueued", "action_approved", "action_claimed", "action_progress"],
      });
      await t.grpc.unary("CompleteAction", { id: action.id, claimToken: claim.claimToken, resultRef: "ok" });
    } finally {
      await worker.cancel();
    }
  });

  it("a wrong or stale token is FAILED_PRECONDITION CLAIM_TOKEN_MISMATCH, and nothing is written", async () => {
    const { action } = await enqueue(t, { actionType: unique("progress_token") });
    const first = (
      await t.grpc.unary<{ claim: WireClaim }>("ClaimAction", { worker: "worker:slow", actionTypes: [action.actionType], leaseDuration: { seconds: 1 } })
    ).claim;
    await expectRefused(t, () => progress(action.id, FOREIGN_TOKEN), { code: status.FAILED_PRECONDITION, reason: "CLAIM_TOKEN_MISMATCH" });
    // The lease runs out and another worker claims: the first token is stale.
    await sleep(1200);
    await t.grpc.unary("SweepClaims", {});
    const second = await claimOf(action);
    expect(second.claimToken).not.toBe(first.claimToken);
    await expectRefused(t, () => progress(action.id, first.claimToken), { code: status.FAILED_PRECONDITION, reason: "CLAIM_TOKEN_MISMATCH" });
    await progress(action.id, second.claimToken);
  });

  it.each(["policy_reloaded", "coordinator_resumed", "approval_granted", "action_approved", "action_rejected"])(
    "EmitEvent cannot forge the server's own %s event",
    async (eventType) => {
      const error = await expectRefusedAnyReason(() =>
        t.grpc.unary("EmitEvent", { eventType, actor: "agent:forger", payload: toStruct({ to: "evil@000000000000" }) }),
      );
      expect(status[error.code]).toBe("INVALID_ARGUMENT");
      expect(errorInfoOf(error)?.metadata.field).toBe("event_type");
    },
  );

  it("is refused on an action that is not CLAIMED, and without a token", async () => {
    const { action } = await enqueue(t, { actionType: unique("progress_unclaimed") });
    const notClaimed = await expectRefusedAnyReason(() => progress(action.id, FOREIGN_TOKEN));
    expect(status[notClaimed.code]).toBe("FAILED_PRECONDITION");
    expect(errorInfoOf(notClaimed)?.metadata.current_status).toBe("APPROVED");
    const claim = await claimOf(action);
    await t.grpc.unary("CompleteAction", { id: action.id, claimToken: claim.claimToken, resultRef: "ok" });
    const afterDone = await expectRefusedAnyReason(() => progress(action.id, claim.claimToken));
    expect(status[afterDone.code]).toBe("FAILED_PRECONDITION");
    expect(errorInfoOf(afterDone)?.metadata.current_status).toBe("COMPLETED");
    const { events } = await getAction(t, action.id);
    expect(eventTypes(events)).not.toContain("action_progress");

    const other = (await enqueue(t, { actionType: unique("progress_no_token") })).action;
    await claimOf(other);
    const noToken = await expectRefusedAnyReason(() => progress(other.id, ""));
    expect(["INVALID_ARGUMENT", "FAILED_PRECONDITION"]).toContain(status[noToken.code]);
    expect(eventTypes((await getAction(t, other.id)).events)).not.toContain("action_progress");
  });
});
