// Approvals over the wire: quorums (the built-in 1/1/2 and a policy's own),
// each approval as an event, no self-approval, one approver counted once,
// concurrent approvers reaching the quorum exactly once, approvals that
// expire (failing closed), superseding a proposal, and proposals that cannot
// change after enqueue.
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, grpcError, snapshot, startTestServer } from "./support/harness.js";
import {
  STATUS,
  type WireAction,
  type WireClaim,
  claimNext,
  enqueue,
  errorInfoOf,
  expectRefused,
  fromStruct,
  getAction,
  millis,
  toStruct,
} from "./support/wire.js";
import { RISK, eventTypes, getPolicy, removePolicyDirs, unique, writePolicy } from "./support/safety.js";
import { eventually, sleep } from "./support/wait.js";

afterAll(async () => {
  await removePolicyDirs();
});

const approve = (t: TestServer, id: string, approver: string, note = "") => t.grpc.unary<{ action: WireAction }>("ApproveAction", { id, approver, note });

/** Enqueues an action of a type of its own that waits for approvals. */
async function pendingAction(t: TestServer, risk: string, extra: Record<string, unknown> = {}): Promise<WireAction> {
  const { action } = await enqueue(t, { actionType: unique("needs_approval"), riskLevel: risk, createdBy: "agent:proposer", ...extra });
  expect(action.status).toBe(STATUS.pending);
  return action;
}

async function claimable(t: TestServer, actionType: string): Promise<WireClaim | null> {
  return claimNext(t, { worker: "worker:approvals", actionTypes: [actionType] });
}

describe("the built-in quorum", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600", ACTIONQ_RATE_LIMIT_PER_HOUR: "100000" });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("a GUARDED action needs one approver: action_approved by them, with {note, approvers, approvals_required}", async () => {
    const action = await pendingAction(t, RISK.guarded);
    expect(action.approvalsRequired).toBe(1);
    expect(await claimable(t, action.actionType)).toBeNull();

    const res = await approve(t, action.id, "human:bob", "checked the diff");
    expect(res.action).toMatchObject({ status: STATUS.approved, approvedBy: "human:bob", approvers: ["human:bob"], approvalsRequired: 1 });
    expect(res.action.approveTime).not.toBeNull();
    const { events } = await getAction(t, action.id);
    expect(eventTypes(events)).toEqual(["action_enqueued", "action_approved"]);
    expect(events[1]!.actor).toBe("human:bob");
    expect(fromStruct(events[1]!.payload)).toMatchObject({ note: "checked the diff", approvers: ["human:bob"], approvals_required: 1 });
    expect((await claimable(t, action.actionType))?.action.id).toBe(action.id);
  });

  it("a DANGEROUS action needs two distinct approvers: approval_granted, then action_approved; not claimable in between", async () => {
    const action = await pendingAction(t, RISK.dangerous);
    expect(action.approvalsRequired).toBe(2);

    const first = await approve(t, action.id, "human:bob", "first look");
    expect(first.action).toMatchObject({ status: STATUS.pending, approvedBy: "", approvers: ["human:bob"], approvalsRequired: 2 });
    expect(first.action.approveTime).toBeNull();
    expect(await claimable(t, action.actionType)).toBeNull();
    let { events } = await getAction(t, action.id);
    expect(eventTypes(events)).toEqual(["action_enqueued", "approval_granted"]);
    expect(events[1]!.actor).toBe("human:bob");
    expect(fromStruct(events[1]!.payload)).toMatchObject({ note: "first look", approvers: ["human:bob"], approvals_required: 2 });

    const second = await approve(t, action.id, "human:carol", "second look");
    expect(second.action).toMatchObject({ status: STATUS.approved, approvedBy: "human:carol", approvers: ["human:bob", "human:carol"] });
    ({ events } = await getAction(t, action.id));
    expect(eventTypes(events)).toEqual(["action_enqueued", "approval_granted", "action_approved"]);
    expect(events[2]!.actor).toBe("human:carol");
    expect(fromStruct(events[2]!.payload)).toMatchObject({ note: "second look", approvers: ["human:bob", "human:carol"], approvals_required: 2 });
    expect((await claimable(t, action.actionType))?.action.id).toBe(action.id);
  });

  it("the producer cannot approve its own action: PERMISSION_DENIED SELF_APPROVAL, nothing changes", async () => {
    const guarded = await pendingAction(t, RISK.guarded, { createdBy: "human:alice" });
    await expectRefused(t, () => approve(t, guarded.id, "human:alice"), { code: status.PERMISSION_DENIED, reason: "SELF_APPROVAL" });
    expect((await getAction(t, guarded.id)).action).toMatchObject({ status: STATUS.pending, approvers: [] });

    // Not as the quorum's last approver either.
    const dangerous = await pendingAction(t, RISK.dangerous, { createdBy: "human:alice" });
    await approve(t, dangerous.id, "human:bob");
    await expectRefused(t, () => approve(t, dangerous.id, "human:alice"), { code: status.PERMISSION_DENIED, reason: "SELF_APPROVAL" });
    expect((await getAction(t, dangerous.id)).action).toMatchObject({ status: STATUS.pending, approvers: ["human:bob"] });
  });

  it("one approver counts once: a second approval by them is FAILED_PRECONDITION DUPLICATE_APPROVAL, nothing changes", async () => {
    const action = await pendingAction(t, RISK.dangerous);
    await approve(t, action.id, "human:bob");
    await expectRefused(t, () => approve(t, action.id, "human:bob", "again"), { code: status.FAILED_PRECONDITION, reason: "DUPLICATE_APPROVAL" });
    expect((await getAction(t, action.id)).action).toMatchObject({ status: STATUS.pending, approvers: ["human:bob"] });
  });

  it("approving an action that is not PENDING is INVALID_TRANSITION with its current status", async () => {
    const approved = (await enqueue(t, { actionType: unique("already_ok") })).action;
    expect(approved.status).toBe(STATUS.approved);
    await expectRefused(t, () => approve(t, approved.id, "human:bob"), {
      code: status.FAILED_PRECONDITION,
      reason: "INVALID_TRANSITION",
      currentStatus: "APPROVED",
    });
    const rejected = await pendingAction(t, RISK.guarded);
    await t.grpc.unary("RejectAction", { id: rejected.id, actor: "human:carol", reason: "no" });
    await expectRefused(t, () => approve(t, rejected.id, "human:bob"), {
      code: status.FAILED_PRECONDITION,
      reason: "INVALID_TRANSITION",
      currentStatus: "REJECTED",
    });
  });

  it("ApproveAction without an approver is INVALID_ARGUMENT naming approver", async () => {
    const action = await pendingAction(t, RISK.guarded);
    await expectRefused(t, () => approve(t, action.id, ""), { code: status.INVALID_ARGUMENT, reason: "INVALID_FIELD", field: "approver" });
  });

  it("concurrent approvals by distinct approvers reach the quorum exactly once", async () => {
    for (let round = 0; round < 8; round++) {
      const action = await pendingAction(t, RISK.dangerous);
      const approvers = Array.from({ length: 6 }, (_, i) => `human:racer-${i}`);
      const results = await Promise.allSettled(approvers.map((approver) => approve(t, action.id, approver)));
      const accepted = results.filter((r) => r.status === "fulfilled");
      const refusals = results.flatMap((r) => (r.status === "rejected" ? [r.reason as Parameters<typeof errorInfoOf>[0]] : []));
      expect(accepted, `round ${round}`).toHaveLength(2);
      for (const error of refusals) {
        expect(status[error.code]).toBe("FAILED_PRECONDITION");
        expect(errorInfoOf(error)).toMatchObject({ reason: "INVALID_TRANSITION", metadata: { current_status: "APPROVED" } });
      }
      const { action: stored, events } = await getAction(t, action.id);
      expect(stored.status).toBe(STATUS.approved);
      expect(stored.approvers).toHaveLength(2);
      expect(new Set(stored.approvers).size).toBe(2);
      expect(stored.approvedBy).toBe(stored.approvers[1]);
      expect(eventTypes(events)).toEqual(["action_enqueued", "approval_granted", "action_approved"]);
      expect(events.slice(1).map((e) => e.actor)).toEqual(stored.approvers);
    }
  });

  it("concurrent approvals by one approver count once", async () => {
    const action = await pendingAction(t, RISK.dangerous);
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => approve(t, action.id, "human:eager")));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    for (const r of results) {
      if (r.status === "rejected") expect(errorInfoOf(r.reason)).toMatchObject({ reason: "DUPLICATE_APPROVAL" });
    }
    const { action: stored, events } = await getAction(t, action.id);
    expect(stored).toMatchObject({ status: STATUS.pending, approvers: ["human:eager"] });
    expect(eventTypes(events)).toEqual(["action_enqueued", "approval_granted"]);
  });

  it("any actor may still reject a PENDING action, the producer included, after a partial approval", async () => {
    const action = await pendingAction(t, RISK.dangerous);
    await approve(t, action.id, "human:bob");
    const res = await t.grpc.unary<{ action: WireAction }>("RejectAction", { id: action.id, actor: "agent:proposer", reason: "withdrawn" });
    expect(res.action).toMatchObject({ status: STATUS.rejected, failureReason: "withdrawn" });
  });

  it("what an action proposes cannot change after enqueue: the database refuses such UPDATEs", async () => {
    const action = await pendingAction(t, RISK.guarded, {
      payload: toStruct({ image: "api:1.0" }),
      targetRef: "svc/api",
      project: "p",
      node: "n",
      service: "s",
    });
    const changes: [string, string][] = [
      ["payload", `payload = '{"image": "api:evil"}'::jsonb`],
      ["target_ref", "target_ref = 'svc/other'"],
      ["action_type", "action_type = 'something_else'"],
      ["project", "project = 'q'"],
      ["node", "node = 'm'"],
      ["service", "service = 't'"],
      ["risk_level", "risk_level = 'safe'"],
      ["created_by", "created_by = 'human:mallory'"],
    ];
    for (const [column, set] of changes) {
      const before = await snapshot(t.db);
      const error = await t.db.query(`UPDATE actions SET ${set} WHERE id = $1`, [action.id]).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(error, `UPDATE of ${column} was accepted`).toBeInstanceOf(Error);
      expect(await snapshot(t.db)).toBe(before);
    }
    // Approving still works on what was proposed.
    const res = await approve(t, action.id, "human:bob");
    expect(fromStruct(res.action.payload)).toEqual({ image: "api:1.0" });
  });
});

describe("supersede", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600" });
  });
  afterAll(async () => {
    await t?.close();
  });

  const xmin = async (table: "actions" | "events", id: string) =>
    (await t.db.query<{ x: string }>(`SELECT xmin::text AS x FROM ${table} WHERE id = $1`, [id])).rows[0]!.x;

  it("a new action supersedes a PENDING one: linked by supersedes_id, the old one CANCELLED in the same transaction", async () => {
    const type = unique("supersede_me");
    const old = (await enqueue(t, { actionType: type, riskLevel: RISK.dangerous, createdBy: "agent:proposer", payload: toStruct({ image: "v1" }) })).action;
    await approve(t, old.id, "human:bob", "v1 looked fine");
    const res = await enqueue(t, {
      actionType: type,
      riskLevel: RISK.dangerous,
      createdBy: "agent:proposer",
      payload: toStruct({ image: "v2" }),
      supersedesId: old.id,
    });
    expect(res.created).toBe(true);
    const replacement = res.action;
    expect(replacement).toMatchObject({ supersedesId: old.id, status: STATUS.pending, approvers: [], approvalsRequired: 2 });
    expect(fromStruct(replacement.payload)).toEqual({ image: "v2" });

    const { action: cancelled, events } = await getAction(t, old.id);
    expect(cancelled.status).toBe(STATUS.cancelled);
    expect(cancelled.failureReason).toBe(`superseded by action ${replacement.id}`);
    expect(cancelled.finishTime).not.toBeNull();
    const cancelEvent = events.at(-1)!;
    expect(cancelEvent.eventType).toBe("action_cancelled");
    expect(String(fromStruct(cancelEvent.payload).superseded_by)).toBe(replacement.id);

    // One transaction wrote the new action, its enqueue event, and the
    // old action's cancellation.
    const enqueued = (await getAction(t, replacement.id)).events[0]!;
    const tx = await xmin("actions", replacement.id);
    expect(await xmin("actions", old.id)).toBe(tx);
    expect(await xmin("events", enqueued.id)).toBe(tx);
    expect(await xmin("events", cancelEvent.id)).toBe(tx);

    // The approval given to v1 does not carry over, and v1 can no longer be approved.
    await expectRefused(t, () => approve(t, old.id, "human:carol"), {
      code: status.FAILED_PRECONDITION,
      reason: "INVALID_TRANSITION",
      currentStatus: "CANCELLED",
    });
  });

  it("an APPROVED action can be superseded too, and is no longer claimable", async () => {
    const type = unique("supersede_approved");
    const old = (await enqueue(t, { actionType: type })).action;
    expect(old.status).toBe(STATUS.approved);
    const replacement = (await enqueue(t, { actionType: type, priority: 5, supersedesId: old.id })).action;
    expect(replacement.supersedesId).toBe(old.id);
    expect((await getAction(t, old.id)).action.status).toBe(STATUS.cancelled);
    expect((await claimNext(t, { actionTypes: [type] }))?.action.id).toBe(replacement.id);
    expect(await claimNext(t, { actionTypes: [type] })).toBeNull();
  });

  it("superseding a CLAIMED or finished action is refused with its current status, and nothing is written", async () => {
    const type = unique("supersede_late");
    const claimedAction = (await enqueue(t, { actionType: type })).action;
    const claim = (await claimNext(t, { actionTypes: [type] }))!;
    expect(claim.action.id).toBe(claimedAction.id);
    await expectRefused(t, () => enqueue(t, { actionType: type, supersedesId: claimedAction.id }), {
      code: status.FAILED_PRECONDITION,
      reason: "INVALID_TRANSITION",
      currentStatus: "CLAIMED",
    });

    await t.grpc.unary("CompleteAction", { id: claim.action.id, claimToken: claim.claimToken, resultRef: "done" });
    await expectRefused(t, () => enqueue(t, { actionType: type, supersedesId: claimedAction.id }), {
      code: status.FAILED_PRECONDITION,
      reason: "INVALID_TRANSITION",
      currentStatus: "COMPLETED",
    });

    const rejected = (await enqueue(t, { actionType: type, approvalRequired: true })).action;
    await t.grpc.unary("RejectAction", { id: rejected.id, actor: "human:carol", reason: "no" });
    await expectRefused(t, () => enqueue(t, { actionType: type, supersedesId: rejected.id }), {
      code: status.FAILED_PRECONDITION,
      reason: "INVALID_TRANSITION",
      currentStatus: "REJECTED",
    });

    const once = (await enqueue(t, { actionType: type, approvalRequired: true })).action;
    await enqueue(t, { actionType: type, approvalRequired: true, supersedesId: once.id });
    await expectRefused(t, () => enqueue(t, { actionType: type, supersedesId: once.id }), {
      code: status.FAILED_PRECONDITION,
      reason: "INVALID_TRANSITION",
      currentStatus: "CANCELLED",
    });
  });

  it("a retry of a superseding enqueue with its idempotency key returns the replacement (created=false) instead of failing", async () => {
    const type = unique("supersede_retry");
    const old = (await enqueue(t, { actionType: type, approvalRequired: true })).action;
    const request = { actionType: type, approvalRequired: true, targetRef: "v2", supersedesId: old.id, idempotencyKey: unique("key") };
    const first = await enqueue(t, request);
    expect(first.created).toBe(true);
    const before = await snapshot(t.db);
    const retry = await enqueue(t, request);
    expect(await snapshot(t.db)).toBe(before);
    expect(retry).toMatchObject({ created: false, action: { id: first.action.id, supersedesId: old.id } });
  });

  it("superseding an action that does not exist is NOT_FOUND, and nothing is written", async () => {
    const error = await grpcError(enqueue(t, { actionType: "whatever", supersedesId: "987654" }));
    expect(status[error.code]).toBe("NOT_FOUND");
    expect(errorInfoOf(error)?.metadata.field ?? "supersedes_id").toBe("supersedes_id");
    const before = await snapshot(t.db);
    await grpcError(enqueue(t, { actionType: "whatever", supersedesId: "987654" }));
    expect(await snapshot(t.db)).toBe(before);
  });

  it("when two proposals race to supersede one action, exactly one wins", async () => {
    for (let round = 0; round < 5; round++) {
      const type = unique("supersede_race");
      const old = (await enqueue(t, { actionType: type, approvalRequired: true })).action;
      const results = await Promise.allSettled(
        Array.from({ length: 4 }, (_, i) => enqueue(t, { actionType: type, approvalRequired: true, targetRef: `v${i}`, supersedesId: old.id })),
      );
      const won = results.flatMap((r) => (r.status === "fulfilled" ? [r.value.action] : []));
      expect(won, `round ${round}`).toHaveLength(1);
      for (const r of results) {
        if (r.status === "rejected") expect(errorInfoOf(r.reason)).toMatchObject({ reason: "INVALID_TRANSITION", metadata: { current_status: "CANCELLED" } });
      }
      const { rows } = await t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM actions WHERE action_type = $1", [type]);
      expect(rows[0]!.n).toBe(2);
      expect((await getAction(t, old.id)).action.failureReason).toBe(`superseded by action ${won[0]!.id}`);
    }
  });
});

describe("a policy's own quorum, and the background sweeper expiring approvals", () => {
  let t: TestServer;
  beforeAll(async () => {
    const file = await writePolicy(
      "name: four-eyes\nmode: standard\nquorum:\n  safe: 2\n  guarded: 2\n  dangerous: 3\napproval_ttl:\n  safe: 1s\n  guarded: 24h\n  dangerous: 86400\n",
    );
    t = await startTestServer({ ACTIONQ_POLICY: file, ACTIONQ_SWEEP_INTERVAL_SECONDS: "0.2" });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("GetPolicy shows the quorum", async () => {
    expect((await getPolicy(t)).policy).toMatchObject({ quorum: { safe: 2, guarded: 2, dangerous: 3 } });
    expect((await getPolicy(t)).policy.name).toBe("four-eyes");
  });

  it("GUARDED needs 2 distinct approvers and DANGEROUS 3", async () => {
    const guarded = await pendingAction(t, RISK.guarded);
    expect(guarded.approvalsRequired).toBe(2);
    expect((await approve(t, guarded.id, "human:a")).action.status).toBe(STATUS.pending);
    expect((await approve(t, guarded.id, "human:b")).action.status).toBe(STATUS.approved);
    expect(eventTypes((await getAction(t, guarded.id)).events)).toEqual(["action_enqueued", "approval_granted", "action_approved"]);

    const dangerous = await pendingAction(t, RISK.dangerous);
    expect(dangerous.approvalsRequired).toBe(3);
    for (const approver of ["human:a", "human:b"]) expect((await approve(t, dangerous.id, approver)).action.status).toBe(STATUS.pending);
    const done = await approve(t, dangerous.id, "human:c");
    expect(done.action).toMatchObject({ status: STATUS.approved, approvers: ["human:a", "human:b", "human:c"], approvedBy: "human:c" });
    expect(eventTypes((await getAction(t, dangerous.id)).events)).toEqual(["action_enqueued", "approval_granted", "approval_granted", "action_approved"]);
    expect(Math.abs(millis(dangerous.approvalExpireTime) - millis(dangerous.createTime) - 86_400_000)).toBeLessThan(5_000);
  });

  it("the background sweeper rejects an approval left waiting past its level's TTL, as server:sweeper; other levels keep waiting", async () => {
    // A SAFE action that asks for an approval waits for quorum.safe approvers.
    const safe = await pendingAction(t, RISK.safe, { approvalRequired: true });
    expect(safe.approvalsRequired).toBe(2);
    expect(Math.abs(millis(safe.approvalExpireTime) - millis(safe.createTime) - 1000)).toBeLessThan(500);
    const guarded = await pendingAction(t, RISK.guarded);
    await eventually(async () => (await getAction(t, safe.id)).action.status === STATUS.rejected, "the SAFE approval to expire", 6_000, 100);
    const { action, events } = await getAction(t, safe.id);
    expect(action.failureReason).toBe("approval_expired");
    expect(events.at(-1)).toMatchObject({ eventType: "action_rejected", actor: "server:sweeper" });
    expect(fromStruct(events.at(-1)!.payload)).toMatchObject({ reason: "approval_expired" });
    expect((await getAction(t, guarded.id)).action.status).toBe(STATUS.pending);
  });
});

describe("approval expiry (approval_ttl 1s, sweeps on demand)", () => {
  let t: TestServer;
  beforeAll(async () => {
    const file = await writePolicy({ name: "short-ttl", approval_ttl: { safe: "1s", guarded: "1s", dangerous: 1 } });
    t = await startTestServer({ ACTIONQ_POLICY: file, ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600" });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("an expired approval fails closed: ApproveAction is APPROVAL_EXPIRED, SweepClaims rejects it, and it never proceeds", async () => {
    const guarded = await pendingAction(t, RISK.guarded);
    const dangerous = await pendingAction(t, RISK.dangerous);
    const inTime = await pendingAction(t, RISK.guarded);
    expect(Math.abs(millis(guarded.approvalExpireTime) - millis(guarded.createTime) - 1000)).toBeLessThan(500);
    await approve(t, dangerous.id, "human:bob");
    await approve(t, inTime.id, "human:bob");
    await sleep(1300);

    // Past the window but not yet swept: still PENDING, and approvals are refused.
    await expectRefused(t, () => approve(t, guarded.id, "human:bob"), { code: status.FAILED_PRECONDITION, reason: "APPROVAL_EXPIRED" });
    await expectRefused(t, () => approve(t, dangerous.id, "human:carol"), { code: status.FAILED_PRECONDITION, reason: "APPROVAL_EXPIRED" });
    expect((await getAction(t, guarded.id)).action.status).toBe(STATUS.pending);
    expect(await claimable(t, guarded.actionType)).toBeNull();

    const swept = await t.grpc.unary<{ requeuedActions: WireAction[]; expiredActions?: WireAction[] }>("SweepClaims", { actor: "human:janitor" });
    expect((swept.expiredActions ?? []).map((a) => a.id).sort()).toEqual([guarded.id, dangerous.id].sort());
    for (const id of [guarded.id, dangerous.id]) {
      const { action, events } = await getAction(t, id);
      expect(action).toMatchObject({ status: STATUS.rejected, failureReason: "approval_expired" });
      expect(action.finishTime).not.toBeNull();
      expect(events.at(-1)).toMatchObject({ eventType: "action_rejected", actor: "human:janitor" });
      expect(fromStruct(events.at(-1)!.payload)).toMatchObject({ reason: "approval_expired" });
      await expectRefused(t, () => approve(t, id, "human:dave"), { code: status.FAILED_PRECONDITION, reason: "INVALID_TRANSITION", currentStatus: "REJECTED" });
    }
    // The one approved in time is untouched.
    const { action: kept, events: keptEvents } = await getAction(t, inTime.id);
    expect(kept.status).toBe(STATUS.approved);
    expect(eventTypes(keptEvents)).toEqual(["action_enqueued", "action_approved"]);
    expect((await claimable(t, inTime.actionType))?.action.id).toBe(inTime.id);

    // A second sweep finds nothing more to expire.
    const again = await t.grpc.unary<{ expiredActions?: WireAction[] }>("SweepClaims", {});
    expect(again.expiredActions ?? []).toEqual([]);
  });

  it("SweepClaims with no actor records server:sweeper", async () => {
    const action = await pendingAction(t, RISK.guarded);
    await sleep(1200);
    await t.grpc.unary("SweepClaims", {});
    const { action: swept, events } = await getAction(t, action.id);
    expect(swept.status).toBe(STATUS.rejected);
    expect(events.at(-1)).toMatchObject({ eventType: "action_rejected", actor: "server:sweeper" });
  });
});

describe("pending actions are not claimable", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600", ACTIONQ_HEARTBEAT_SECONDS: "0.2" });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("neither ClaimAction nor StreamClaims hands out an action waiting for its quorum; the last approval makes it claimable", async () => {
    const action = await pendingAction(t, RISK.dangerous, { priority: -1000 });
    const stream = t.grpc.stream("StreamClaims", { worker: "worker:eager", actionTypes: [action.actionType], maxInFlight: 5 });
    const received: Record<string, unknown>[] = [];
    stream.on("data", (message: Record<string, unknown>) => received.push(message));
    stream.on("error", () => {});
    try {
      // Nothing else is in this server's queue.
      expect(await claimNext(t)).toBeNull();
      await approve(t, action.id, "human:bob");
      await sleep(600);
      expect(await claimable(t, action.actionType)).toBeNull();
      expect(received.filter((m) => m.kind === "claim")).toEqual([]);
      await approve(t, action.id, "human:carol");
      const claim = await eventually(() => received.find((m) => m.kind === "claim"), "the claim after the quorum", 5_000);
      expect((claim!.claim as WireClaim).action.id).toBe(action.id);
    } finally {
      stream.cancel();
    }
  });
});
