// The action lifecycle over the wire, through @grpc/grpc-js: enqueue and the
// approval policy, approvals, rejections, cancellations, claims and their
// outcomes, idempotency keys, listing and reading back.
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, grpcError, snapshot, startTestServer } from "./support/harness.js";
import {
  type ListActionsResponse,
  STATUS,
  UUID_PATTERN,
  type WireAction,
  type WireClaim,
  type WireEvent,
  cancelAllApproved,
  claimNext,
  enqueue,
  enqueueAndClaim,
  fromStruct,
  getAction,
  millis,
  toStruct,
} from "./support/wire.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.close();
});

const types = (events: WireEvent[]) => events.map((e) => e.eventType);

describe("enqueue and the approval policy", () => {
  it("a SAFE action lands APPROVED, with action_enqueued then action_approved by policy:standard", async () => {
    // What the action must keep exactly as it was asked for.
    const asked = {
      actionType: "collect_diagnostics",
      project: "shop",
      targetRef: "node/web-1",
      sourceRefs: ["alert:123", "doc:runbook"],
      priority: 4,
      confidence: 0.75,
      createdBy: "human:alice",
      correlationId: "inc-42",
      node: "web-1",
      service: "nginx",
      rollbackRef: "noop",
    };
    const res = await enqueue(t, { ...asked, payload: toStruct({ depth: 2, verbose: true, hosts: ["a", "b"] }), riskLevel: "RISK_LEVEL_SAFE" });
    expect(res.created).toBe(true);
    const a = res.action;
    expect(a.status).toBe(STATUS.approved);
    expect(a.riskLevel).toBe("RISK_LEVEL_SAFE");
    expect(a.approvalRequired).toBe(false);
    expect(a.approvedBy).toBe("policy:standard");
    expect(a.approveTime).not.toBeNull();
    expect(a).toMatchObject({
      ...asked,
      parentId: "0",
      chainDepth: 0,
      attempt: 0,
      claimedBy: "",
      claimDeadline: null,
      finishTime: null,
    });
    expect(fromStruct(a.payload)).toEqual({ depth: 2, verbose: true, hosts: ["a", "b"] });

    const { events } = await getAction(t, a.id);
    expect(types(events)).toEqual(["action_enqueued", "action_approved"]);
    expect(events[0]!.actor).toBe("human:alice");
    expect(events.every((e) => e.actionId === a.id)).toBe(true);
    const approved = events[1]!;
    expect(approved.actor).toBe("policy:standard");
    expect(fromStruct(approved.payload)).toMatchObject({ mode: "standard", decision: "approved" });
    expect(fromStruct(events[0]!.payload)).toMatchObject({ status: "approved", policy: { mode: "standard", decision: "approved" } });
  });

  it("an action with no risk level is treated as SAFE", async () => {
    const { action } = await enqueue(t, { actionType: "collect_diagnostics" });
    expect(action.riskLevel).toBe("RISK_LEVEL_SAFE");
    expect(action.status).toBe(STATUS.approved);
    expect(action.confidence ?? undefined).toBeUndefined();
  });

  it.each([
    ["a GUARDED action", { riskLevel: "RISK_LEVEL_GUARDED" }, "RISK_LEVEL_GUARDED"],
    ["a DANGEROUS action", { riskLevel: "RISK_LEVEL_DANGEROUS" }, "RISK_LEVEL_DANGEROUS"],
    ["a SAFE action that asks for approval", { riskLevel: "RISK_LEVEL_SAFE", approvalRequired: true }, "RISK_LEVEL_SAFE"],
  ])("%s lands PENDING with only action_enqueued, and says it had to wait", async (_name, fields, risk) => {
    // A type the policy's registry does not know: its producer sets the level.
    const { action } = await enqueue(t, { actionType: "restart_worker", ...fields });
    expect(action.status).toBe(STATUS.pending);
    expect(action.riskLevel).toBe(risk);
    // Action.approval_required: "True when the action had to wait for an
    // approval", whether the producer asked or the risk demanded it.
    expect(action.approvalRequired).toBe(true);
    expect(action.approvedBy).toBe("");
    expect(action.approveTime).toBeNull();
    const { events } = await getAction(t, action.id);
    expect(types(events)).toEqual(["action_enqueued"]);
    expect(fromStruct(events[0]!.payload)).toMatchObject({ status: "pending", policy: { decision: "needs_approval" } });
  });
});

describe("approval, rejection and cancellation", () => {
  it("approving a PENDING action makes it APPROVED, recording the approver and an action_approved event by them", async () => {
    const { action } = await enqueue(t, { actionType: "redeploy_service", riskLevel: "RISK_LEVEL_GUARDED" });
    const res = await t.grpc.unary<{ action: WireAction }>("ApproveAction", { id: action.id, approver: "human:bob", note: "looks right" });
    expect(res.action.status).toBe(STATUS.approved);
    expect(res.action.approvedBy).toBe("human:bob");
    expect(res.action.approveTime).not.toBeNull();
    const { action: stored, events } = await getAction(t, action.id);
    expect(stored.status).toBe(STATUS.approved);
    expect(stored.approvedBy).toBe("human:bob");
    expect(types(events)).toEqual(["action_enqueued", "action_approved"]);
    expect(events[1]!.actor).toBe("human:bob");
    expect(fromStruct(events[1]!.payload)).toMatchObject({ note: "looks right" });
  });

  it("rejecting a PENDING action makes it REJECTED with the reason as failure_reason", async () => {
    const { action } = await enqueue(t, { actionType: "drop_table", riskLevel: "RISK_LEVEL_DANGEROUS" });
    const res = await t.grpc.unary<{ action: WireAction }>("RejectAction", { id: action.id, actor: "human:carol", reason: "not during business hours" });
    expect(res.action.status).toBe(STATUS.rejected);
    expect(res.action.failureReason).toBe("not during business hours");
    expect(res.action.finishTime).not.toBeNull();
    const { events } = await getAction(t, action.id);
    expect(types(events)).toEqual(["action_enqueued", "action_rejected"]);
    expect(events[1]!.actor).toBe("human:carol");
  });

  it("cancelling works from PENDING, APPROVED and CLAIMED, and the action ends CANCELLED", async () => {
    const pending = (await enqueue(t, { actionType: "cancel_me", approvalRequired: true })).action;
    const approved = (await enqueue(t, { actionType: "cancel_me_approved" })).action;
    const claimed = await enqueueAndClaim(t, "cancel_me_claimed");
    for (const [action, from] of [
      [pending, "pending"],
      [approved, "approved"],
      [claimed.action, "claimed"],
    ] as const) {
      const res = await t.grpc.unary<{ action: WireAction }>("CancelAction", { id: action.id, actor: "human:carol", reason: `withdrawn from ${from}` });
      expect(res.action.status).toBe(STATUS.cancelled);
      expect(res.action.failureReason).toBe(`withdrawn from ${from}`);
      expect(res.action.finishTime).not.toBeNull();
      expect(res.action.claimDeadline).toBeNull();
      const { events } = await getAction(t, action.id);
      const last = events[events.length - 1]!;
      expect(last.eventType).toBe("action_cancelled");
      expect(last.actor).toBe("human:carol");
      expect(fromStruct(last.payload)).toMatchObject({ from_status: from });
    }
  });
});

describe("claims", () => {
  it("ClaimAction on an empty queue returns no claim", async () => {
    await cancelAllApproved(t);
    await enqueue(t, { actionType: "needs_a_human", approvalRequired: true });
    expect(await claimNext(t)).toBeNull();
  });

  it("ClaimAction returns the smallest priority first, then the oldest, with a token, a lease deadline and attempt 1", async () => {
    await cancelAllApproved(t);
    const late = (await enqueue(t, { actionType: "order_check", priority: 5 })).action;
    const firstOfOne = (await enqueue(t, { actionType: "order_check", priority: 1 })).action;
    const secondOfOne = (await enqueue(t, { actionType: "order_check", priority: 1 })).action;
    // Pending actions are never claimable, whatever their priority.
    await enqueue(t, { actionType: "order_check", priority: -100, approvalRequired: true });
    const negative = (await enqueue(t, { actionType: "order_check", priority: -2 })).action;

    const claims: WireClaim[] = [];
    for (let i = 0; i < 4; i++) {
      const claim = await claimNext(t, { worker: "worker:order" });
      expect(claim).not.toBeNull();
      claims.push(claim!);
    }
    expect(claims.map((c) => c.action.id)).toEqual([negative.id, firstOfOne.id, secondOfOne.id, late.id]);
    expect(await claimNext(t, { worker: "worker:order" })).toBeNull();

    const tokens = new Set(claims.map((c) => c.claimToken));
    expect(tokens.size).toBe(4);
    for (const claim of claims) {
      expect(claim.claimToken).toMatch(UUID_PATTERN);
      expect(claim.action.status).toBe(STATUS.claimed);
      expect(claim.action.claimedBy).toBe("worker:order");
      expect(claim.action.attempt).toBe(1);
      expect(claim.action.claimAcked).toBe(true);
      expect(claim.ackDeadline).toBeNull();
      // The default lease is 300 seconds, counted from the claim.
      expect(millis(claim.action.claimDeadline) - millis(claim.action.claimTime)).toBe(300_000);
      expect(Math.abs(millis(claim.action.claimTime) - Date.now())).toBeLessThan(30_000);
    }
    const { events } = await getAction(t, negative.id);
    expect(types(events)).toEqual(["action_enqueued", "action_approved", "action_claimed"]);
    expect(events[2]!.actor).toBe("worker:order");
    expect(fromStruct(events[2]!.payload)).toMatchObject({ attempt: 1, lease_ms: 300_000, streamed: false });
  });

  it("ClaimAction honours the requested lease duration", async () => {
    const { action } = await enqueue(t, { actionType: "lease_check" });
    const claim = await claimNext(t, { actionTypes: ["lease_check"], leaseDuration: { seconds: 42, nanos: 0 } });
    expect(claim?.action.id).toBe(action.id);
    expect(millis(claim!.action.claimDeadline) - millis(claim!.action.claimTime)).toBe(42_000);
  });

  it("ClaimAction filters by action_types and projects, and returns nothing when the filters match nothing", async () => {
    const aInP = (await enqueue(t, { actionType: "filter_a", project: "p1" })).action;
    const aInQ = (await enqueue(t, { actionType: "filter_a", project: "q1" })).action;
    const bInP = (await enqueue(t, { actionType: "filter_b", project: "p1" })).action;

    expect(await claimNext(t, { actionTypes: ["filter_none"] })).toBeNull();
    expect(await claimNext(t, { actionTypes: ["filter_a"], projects: ["nowhere"] })).toBeNull();

    expect((await claimNext(t, { actionTypes: ["filter_b", "filter_zzz"] }))?.action.id).toBe(bInP.id);
    expect((await claimNext(t, { actionTypes: ["filter_a"], projects: ["q1"] }))?.action.id).toBe(aInQ.id);
    expect((await claimNext(t, { projects: ["p1"] }))?.action.id).toBe(aInP.id);
    expect(await claimNext(t, { actionTypes: ["filter_a", "filter_b"] })).toBeNull();
  });

  it("completing a claim makes the action COMPLETED with result_ref and finish_time", async () => {
    const claim = await enqueueAndClaim(t, "complete_me");
    const res = await t.grpc.unary<{ action: WireAction }>("CompleteAction", {
      id: claim.action.id,
      claimToken: claim.claimToken,
      resultRef: "s3://bucket/out.json",
    });
    expect(res.action.status).toBe(STATUS.completed);
    expect(res.action.resultRef).toBe("s3://bucket/out.json");
    expect(res.action.finishTime).not.toBeNull();
    expect(res.action.claimDeadline).toBeNull();
    expect(res.action.claimedBy).toBe("worker:test");
    const { events } = await getAction(t, claim.action.id);
    expect(types(events)).toEqual(["action_enqueued", "action_approved", "action_claimed", "action_completed"]);
    expect(fromStruct(events[3]!.payload)).toMatchObject({ result_ref: "s3://bucket/out.json", attempt: 1 });
  });

  it("repeating a completion with the same token and result succeeds and writes no second event", async () => {
    const claim = await enqueueAndClaim(t, "complete_twice");
    const request = { id: claim.action.id, claimToken: claim.claimToken, resultRef: "branch:fix-1" };
    const first = await t.grpc.unary<{ action: WireAction }>("CompleteAction", request);
    const before = await snapshot(t.db);
    const second = await t.grpc.unary<{ action: WireAction }>("CompleteAction", request);
    expect(await snapshot(t.db)).toBe(before);
    expect(second.action).toEqual(first.action);
    const { events } = await getAction(t, claim.action.id);
    expect(types(events).filter((type) => type === "action_completed")).toHaveLength(1);
  });

  it("failing a claim makes the action FAILED with the reason", async () => {
    const claim = await enqueueAndClaim(t, "fail_me");
    const res = await t.grpc.unary<{ action: WireAction }>("FailAction", { id: claim.action.id, claimToken: claim.claimToken, reason: "disk full" });
    expect(res.action.status).toBe(STATUS.failed);
    expect(res.action.failureReason).toBe("disk full");
    expect(res.action.finishTime).not.toBeNull();
    const before = await snapshot(t.db);
    const again = await t.grpc.unary<{ action: WireAction }>("FailAction", { id: claim.action.id, claimToken: claim.claimToken, reason: "disk full" });
    expect(again.action.status).toBe(STATUS.failed);
    expect(await snapshot(t.db)).toBe(before);
    const { events } = await getAction(t, claim.action.id);
    expect(types(events)).toEqual(["action_enqueued", "action_approved", "action_claimed", "action_failed"]);
  });

  it("the worker holding a claim can reject it with its token, and the action ends REJECTED", async () => {
    const claim = await enqueueAndClaim(t, "reject_claimed");
    const res = await t.grpc.unary<{ action: WireAction }>("RejectAction", {
      id: claim.action.id,
      actor: "worker:test",
      reason: "target does not exist",
      claimToken: claim.claimToken,
    });
    expect(res.action.status).toBe(STATUS.rejected);
    expect(res.action.failureReason).toBe("target does not exist");
    const { events } = await getAction(t, claim.action.id);
    expect(types(events)).toEqual(["action_enqueued", "action_approved", "action_claimed", "action_rejected"]);
    expect(fromStruct(events[3]!.payload)).toMatchObject({ from_status: "claimed", worker: "worker:test" });
  });

  it("extending a claim returns a later deadline and writes claim_extended", async () => {
    const claim = await enqueueAndClaim(t, "extend_me", {});
    const oldDeadline = millis(claim.action.claimDeadline);
    const res = await t.grpc.unary<{ claimDeadline: { seconds: string; nanos: number }; action: WireAction }>("ExtendClaim", {
      id: claim.action.id,
      claimToken: claim.claimToken,
      leaseDuration: { seconds: 900, nanos: 0 },
    });
    const newDeadline = millis(res.claimDeadline);
    expect(newDeadline).toBeGreaterThan(oldDeadline);
    expect(newDeadline).toBeGreaterThanOrEqual(millis(claim.action.claimTime) + 900_000);
    expect(millis(res.action.claimDeadline)).toBe(newDeadline);
    expect(res.action.status).toBe(STATUS.claimed);
    const { events } = await getAction(t, claim.action.id);
    expect(types(events)).toEqual(["action_enqueued", "action_approved", "action_claimed", "claim_extended"]);
    expect(events[3]!.actor).toBe("worker:test");
  });

  it("extending without a lease_duration renews the lease the claim was taken with", async () => {
    await enqueue(t, { actionType: "extend_default" });
    const claim = await claimNext(t, { actionTypes: ["extend_default"], leaseDuration: { seconds: 42, nanos: 0 } });
    expect(claim).not.toBeNull();
    const extend = async (request: Record<string, unknown>) => {
      const sent = Date.now();
      const res = await t.grpc.unary<{ claimDeadline: { seconds: string; nanos: number } }>("ExtendClaim", {
        id: claim!.action.id,
        claimToken: claim!.claimToken,
        ...request,
      });
      return millis(res.claimDeadline) - sent;
    };
    // Counted from the call: the original 42 seconds, give or take the
    // round trip.
    expect(await extend({})).toBeGreaterThan(41_000);
    expect(await extend({})).toBeLessThan(43_000);
    expect(await extend({ leaseDuration: { seconds: 600, nanos: 0 } })).toBeGreaterThan(599_000);
    // The contract: unset means "the claim's original lease length".
    const afterLongExtension = await extend({});
    expect(afterLongExtension).toBeGreaterThan(41_000);
    expect(afterLongExtension).toBeLessThan(43_000);
    await t.grpc.unary("CompleteAction", { id: claim!.action.id, claimToken: claim!.claimToken, resultRef: "ok" });
  });

  it("acknowledging a streamed claim sets claim_acked, and the acknowledged claim outlives the stream", async () => {
    const { action } = await enqueue(t, { actionType: "stream_ack" });
    const stream = t.grpc.stream("StreamClaims", { worker: "worker:streamer", actionTypes: ["stream_ack"] });
    stream.on("error", () => {});
    try {
      const claim = await new Promise<WireClaim>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no claim on the stream")), 10_000);
        stream.on("data", (message: { kind?: string; claim?: WireClaim }) => {
          if (message.kind === "claim") {
            clearTimeout(timer);
            resolve(message.claim!);
          }
        });
      });
      expect(claim.action.id).toBe(action.id);
      expect(claim.action.claimAcked).toBe(false);
      expect(claim.ackDeadline).not.toBeNull();

      const acked = await t.grpc.unary<{ action: WireAction }>("AckClaim", { id: action.id, claimToken: claim.claimToken });
      expect(acked.action.claimAcked).toBe(true);
      expect(acked.action.status).toBe(STATUS.claimed);
      expect((await getAction(t, action.id)).action.claimAcked).toBe(true);

      stream.cancel();
      // Give the server time to close the session; the claim must stay.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const after = await getAction(t, action.id);
      expect(after.action.status).toBe(STATUS.claimed);
      expect(after.action.claimedBy).toBe("worker:streamer");

      const done = await t.grpc.unary<{ action: WireAction }>("CompleteAction", { id: action.id, claimToken: claim.claimToken, resultRef: "ok" });
      expect(done.action.status).toBe(STATUS.completed);
    } finally {
      stream.cancel();
    }
  });
});

describe("idempotency keys", () => {
  const request = {
    actionType: "restart_pod",
    targetRef: "pod/api-7",
    createdBy: "human:dana",
    idempotencyKey: "restart-api-7",
    payload: toStruct({ grace: 30 }),
  };

  it("a repeat from the same producer returns the first action with created=false and writes nothing", async () => {
    const first = await enqueue(t, request);
    expect(first.created).toBe(true);
    expect(first.action.idempotencyKey).toBe("restart-api-7");
    const before = await snapshot(t.db);
    const repeat = await enqueue(t, request);
    expect(await snapshot(t.db)).toBe(before);
    expect(repeat.created).toBe(false);
    expect(repeat.action.id).toBe(first.action.id);
    expect(repeat.action).toEqual(first.action);
  });

  it("a repeat whose payload lists the same keys in another order is the same request", async () => {
    const first = await enqueue(t, { ...request, idempotencyKey: "key-order", payload: toStruct({ a: 1, b: { c: 2, d: 3 } }) });
    const repeat = await enqueue(t, { ...request, idempotencyKey: "key-order", payload: toStruct({ b: { d: 3, c: 2 }, a: 1 }) });
    expect(repeat.created).toBe(false);
    expect(repeat.action.id).toBe(first.action.id);
  });

  it("the same key from another producer creates a new action", async () => {
    const mine = await enqueue(t, request);
    const theirs = await enqueue(t, { ...request, createdBy: "human:erin" });
    expect(theirs.created).toBe(true);
    expect(theirs.action.id).not.toBe(mine.action.id);
    expect(theirs.action.createdBy).toBe("human:erin");
  });

  it("the same key with a different request fails with ALREADY_EXISTS and writes nothing", async () => {
    await enqueue(t, request);
    const before = await snapshot(t.db);
    const error = await grpcError(enqueue(t, { ...request, payload: toStruct({ grace: 0 }) }));
    expect(error.code).toBe(status.ALREADY_EXISTS);
    expect(error.details).toContain("idempotency_key");
    expect(await snapshot(t.db)).toBe(before);
  });

  it("20 concurrent duplicate enqueues with one key create exactly one action", async () => {
    const concurrent = { ...request, idempotencyKey: "burst-1", targetRef: "pod/burst" };
    const results = await Promise.all(Array.from({ length: 20 }, () => enqueue(t, concurrent)));
    const ids = new Set(results.map((r) => r.action.id));
    expect(ids.size).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    const { rows } = await t.db.query("SELECT id::text FROM actions WHERE created_by = $1 AND idempotency_key = $2", ["human:dana", "burst-1"]);
    expect(rows).toEqual([{ id: [...ids][0] }]);
    const { events } = await getAction(t, [...ids][0]!);
    expect(types(events)).toEqual(["action_enqueued", "action_approved"]);
  });
});

describe("ListActions", () => {
  const list = (request: Record<string, unknown>) => t.grpc.unary<ListActionsResponse>("ListActions", request);
  const ids = (res: ListActionsResponse) => res.actions.map((a) => a.id);

  it("filters by statuses, action_types, projects and created_by, newest first", async () => {
    const made: WireAction[] = [];
    for (const [actionType, project, createdBy, approvalRequired] of [
      ["list_alpha", "proj_a", "human:lister1", false],
      ["list_alpha", "proj_b", "human:lister2", true],
      ["list_beta", "proj_a", "human:lister2", false],
      ["list_beta", "proj_b", "human:lister1", true],
      ["list_gamma", "proj_c", "human:lister1", false],
    ] as const) {
      made.push((await enqueue(t, { actionType, project, createdBy, approvalRequired })).action);
    }
    const [a1, a2, b1, b2, g1] = made.map((a) => a.id) as [string, string, string, string, string];

    expect(ids(await list({ actionTypes: ["list_alpha", "list_beta"] }))).toEqual([b2, b1, a2, a1]);
    expect(ids(await list({ projects: ["proj_a"] }))).toEqual([b1, a1]);
    expect(ids(await list({ createdBy: "human:lister1" }))).toEqual([g1, b2, a1]);
    expect(ids(await list({ statuses: [STATUS.pending], createdBy: "human:lister1" }))).toEqual([b2]);
    expect(ids(await list({ statuses: [STATUS.pending, STATUS.approved], projects: ["proj_b"], actionTypes: ["list_beta"] }))).toEqual([b2]);
    expect(ids(await list({ actionTypes: ["list_none"] }))).toEqual([]);

    // A status filter on its own returns exactly the actions in that status.
    const { rows } = await t.db.query<{ id: string }>("SELECT a.id::text AS id FROM actions a WHERE a.status = 'pending' ORDER BY a.id DESC");
    expect(ids(await list({ statuses: [STATUS.pending], pageSize: 1000 }))).toEqual(rows.map((r) => r.id));
  });

  it("pages newest first through every matching action exactly once", async () => {
    const created: string[] = [];
    for (let i = 0; i < 23; i++) created.push((await enqueue(t, { actionType: "page_walk", approvalRequired: true })).action.id);
    const seen: string[] = [];
    let token = "";
    let pages = 0;
    do {
      const res = await list({ actionTypes: ["page_walk"], pageSize: 5, pageToken: token });
      expect(res.actions.length).toBeLessThanOrEqual(5);
      seen.push(...ids(res));
      token = res.nextPageToken;
      pages++;
    } while (token !== "" && pages < 20);
    expect(pages).toBe(5);
    expect(seen).toEqual([...created].reverse());
  });

  it("pages at most 1000 (ACTIONQ_MAX_PAGE_SIZE), refuses a larger page_size, and defaults it to 50", async () => {
    const batch = Array.from({ length: 1001 }, (_, i) => i);
    for (let start = 0; start < batch.length; start += 50) {
      await Promise.all(batch.slice(start, start + 50).map(() => enqueue(t, { actionType: "page_cap", approvalRequired: true })));
    }
    const tooBig = await grpcError(list({ actionTypes: ["page_cap"], pageSize: 1001 }));
    expect(tooBig.code).toBe(status.INVALID_ARGUMENT);
    expect(tooBig.details).toContain("page_size");
    expect(tooBig.details).toContain("ACTIONQ_MAX_PAGE_SIZE");
    const first = await list({ actionTypes: ["page_cap"], pageSize: 1000 });
    expect(first.actions).toHaveLength(1000);
    expect(first.nextPageToken).not.toBe("");
    const rest = await list({ actionTypes: ["page_cap"], pageSize: 1000, pageToken: first.nextPageToken });
    expect(rest.actions).toHaveLength(1);
    expect(rest.nextPageToken).toBe("");
    expect(new Set([...ids(first), ...ids(rest)]).size).toBe(1001);
    const unsized = await list({ actionTypes: ["page_cap"] });
    expect(unsized.actions).toHaveLength(50);
    expect(unsized.nextPageToken).not.toBe("");
  });

  it("refuses a tampered page_token or one issued for other filters with INVALID_ARGUMENT", async () => {
    for (let i = 0; i < 3; i++) await enqueue(t, { actionType: "page_token_check", approvalRequired: true });
    const first = await list({ actionTypes: ["page_token_check"], pageSize: 1 });
    expect(first.nextPageToken).not.toBe("");
    const token = first.nextPageToken;

    const tampered = [
      `${token.slice(0, -3)}!!!`,
      token.slice(0, 5),
      "bm90IGEgdG9rZW4",
      Buffer.from(JSON.stringify({ before: "x1", filter: "y" })).toString("base64url"),
    ];
    for (const pageToken of tampered) {
      const error = await grpcError(list({ actionTypes: ["page_token_check"], pageSize: 1, pageToken }));
      expect(error.code, pageToken).toBe(status.INVALID_ARGUMENT);
      expect(error.details).toContain("page_token");
    }
    const crossFilter = await grpcError(list({ actionTypes: ["page_walk"], pageSize: 1, pageToken: token }));
    expect(crossFilter.code).toBe(status.INVALID_ARGUMENT);
    expect(crossFilter.details).toContain("page_token");
    const crossStatus = await grpcError(list({ actionTypes: ["page_token_check"], statuses: [STATUS.pending], pageSize: 1, pageToken: token }));
    expect(crossStatus.code).toBe(status.INVALID_ARGUMENT);
  });
});

describe("GetAction", () => {
  it("returns the action and all its events, oldest first", async () => {
    const { action } = await enqueue(t, { actionType: "full_history", riskLevel: "RISK_LEVEL_GUARDED" });
    await t.grpc.unary("ApproveAction", { id: action.id, approver: "human:bob" });
    const claim = await claimNext(t, { actionTypes: ["full_history"] });
    expect(claim?.action.id).toBe(action.id);
    await t.grpc.unary("ExtendClaim", { id: action.id, claimToken: claim!.claimToken });
    await t.grpc.unary("CompleteAction", { id: action.id, claimToken: claim!.claimToken, resultRef: "done" });

    const got = await getAction(t, action.id);
    expect(got.action.id).toBe(action.id);
    expect(got.action.status).toBe(STATUS.completed);
    expect(got.action.approvedBy).toBe("human:bob");
    expect(got.action.resultRef).toBe("done");
    expect(types(got.events)).toEqual(["action_enqueued", "action_approved", "action_claimed", "claim_extended", "action_completed"]);
    const eventIds = got.events.map((e) => BigInt(e.id));
    expect([...eventIds].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0))).toEqual(eventIds);
    expect(new Set(eventIds).size).toBe(eventIds.length);
    expect(got.events.map((e) => e.actor)).toEqual(["human:tester", "human:bob", "worker:test", "worker:test", "worker:test"]);
    for (const event of got.events) {
      expect(event.actionId).toBe(action.id);
      expect(event.createTime).not.toBeNull();
    }
    const { rows } = await t.db.query("SELECT count(*)::int AS n FROM events WHERE action_id = $1", [action.id]);
    expect(rows[0].n).toBe(got.events.length);
  });
});
