// Every refusal, through the wire: the right gRPC code, a google.rpc.ErrorInfo
// with a stable reason, a message naming the field or the current status, and
// a database exactly as it was before the call.
import { status } from "@grpc/grpc-js";
import { ConnectError, Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RiskLevel } from "../gen/actionq/v1/action_pb.js";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { type TestServer, grpcError, snapshot, startTestServer } from "./support/harness.js";
import { FOREIGN_TOKEN, type Json, type WireClaim, enqueue, enqueueAndClaim, errorInfoOf, streamError, toStruct, expectRefused } from "./support/wire.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.close();
});

const call = (method: string, request: Record<string, unknown>) => () => t.grpc.unary(method, request);
/** The refusal of a call that the action's status does not allow. */
const invalidTransition = (currentStatus: string) => ({ code: status.FAILED_PRECONDITION, reason: "INVALID_TRANSITION", currentStatus });

describe("an id that names no action is NOT_FOUND", () => {
  const missing = "987654321";
  it.each([
    ["GetAction", "GetAction", { id: missing }],
    ["ApproveAction", "ApproveAction", { id: missing, approver: "human:bob" }],
    ["CancelAction", "CancelAction", { id: missing, actor: "human:bob", reason: "gone" }],
    ["CompleteAction", "CompleteAction", { id: missing, claimToken: FOREIGN_TOKEN, resultRef: "r" }],
    ["AckClaim", "AckClaim", { id: missing, claimToken: FOREIGN_TOKEN }],
    ["ExtendClaim", "ExtendClaim", { id: missing, claimToken: FOREIGN_TOKEN }],
    ["FailAction", "FailAction", { id: missing, claimToken: FOREIGN_TOKEN, reason: "r" }],
    ["RejectAction by an approver", "RejectAction", { id: missing, actor: "human:bob", reason: "r" }],
    ["RejectAction by a worker with a token", "RejectAction", { id: missing, actor: "worker:w", reason: "r", claimToken: FOREIGN_TOKEN }],
  ])("%s", async (_name, method, request) => {
    const error = await expectRefused(t, call(method, request), { code: status.NOT_FOUND, reason: "ACTION_NOT_FOUND" });
    expect(error.details).toContain(missing);
    expect(errorInfoOf(error)!.metadata.action_id).toBe(missing);
  });
});

describe("an illegal transition is FAILED_PRECONDITION naming the current status", () => {
  it("approving an APPROVED action", async () => {
    const { action } = await enqueue(t, { actionType: "already_approved" });
    await expectRefused(t, call("ApproveAction", { id: action.id, approver: "human:bob" }), invalidTransition("APPROVED"));
  });

  it("completing a COMPLETED action with another token", async () => {
    const claim = await enqueueAndClaim(t, "completed_once");
    await t.grpc.unary("CompleteAction", { id: claim.action.id, claimToken: claim.claimToken, resultRef: "r1" });
    await expectRefused(t, call("CompleteAction", { id: claim.action.id, claimToken: FOREIGN_TOKEN, resultRef: "r1" }), invalidTransition("COMPLETED"));
    // Its own token with a different result is not a repeat either.
    await expectRefused(t, call("CompleteAction", { id: claim.action.id, claimToken: claim.claimToken, resultRef: "r2" }), invalidTransition("COMPLETED"));
  });

  it("cancelling a COMPLETED action", async () => {
    const claim = await enqueueAndClaim(t, "completed_then_cancel");
    await t.grpc.unary("CompleteAction", { id: claim.action.id, claimToken: claim.claimToken, resultRef: "r" });
    await expectRefused(t, call("CancelAction", { id: claim.action.id, actor: "human:carol", reason: "too late" }), invalidTransition("COMPLETED"));
  });

  it("failing a PENDING action", async () => {
    const { action } = await enqueue(t, { actionType: "still_pending", approvalRequired: true });
    await expectRefused(t, call("FailAction", { id: action.id, claimToken: FOREIGN_TOKEN, reason: "nope" }), invalidTransition("PENDING"));
  });

  it("approving, rejecting or cancelling a CANCELLED action", async () => {
    const { action } = await enqueue(t, { actionType: "cancelled_first", approvalRequired: true });
    await t.grpc.unary("CancelAction", { id: action.id, actor: "human:carol", reason: "withdrawn" });
    const expected = invalidTransition("CANCELLED");
    await expectRefused(t, call("ApproveAction", { id: action.id, approver: "human:bob" }), expected);
    await expectRefused(t, call("RejectAction", { id: action.id, actor: "human:bob", reason: "no" }), expected);
    await expectRefused(t, call("CancelAction", { id: action.id, actor: "human:bob", reason: "again" }), expected);
  });

  it("rejecting a CLAIMED action without its claim token", async () => {
    const claim = await enqueueAndClaim(t, "claimed_reject_no_token");
    await expectRefused(t, call("RejectAction", { id: claim.action.id, actor: "human:bob", reason: "no" }), {
      code: status.FAILED_PRECONDITION,
      reason: "CLAIM_TOKEN_REQUIRED",
      field: "claim_token",
      currentStatus: "CLAIMED",
    });
  });

  it("a worker whose claim was cancelled is refused on its next call", async () => {
    const claim = await enqueueAndClaim(t, "cancelled_under_worker");
    await t.grpc.unary("CancelAction", { id: claim.action.id, actor: "human:carol", reason: "stop" });
    const expected = invalidTransition("CANCELLED");
    await expectRefused(t, call("CompleteAction", { id: claim.action.id, claimToken: claim.claimToken, resultRef: "r" }), expected);
    await expectRefused(t, call("ExtendClaim", { id: claim.action.id, claimToken: claim.claimToken }), expected);
    await expectRefused(t, call("FailAction", { id: claim.action.id, claimToken: claim.claimToken, reason: "r" }), expected);
  });
});

describe("a wrong claim token on a CLAIMED action is FAILED_PRECONDITION", () => {
  let claim: WireClaim;
  beforeAll(async () => {
    claim = await enqueueAndClaim(t, "wrong_token");
  });
  const expected = { code: status.FAILED_PRECONDITION, reason: "CLAIM_TOKEN_MISMATCH", currentStatus: "CLAIMED" };

  it.each([
    ["CompleteAction", { resultRef: "r" }],
    ["FailAction", { reason: "r" }],
    ["AckClaim", {}],
    ["ExtendClaim", { leaseDuration: { seconds: 60, nanos: 0 } }],
    ["RejectAction", { actor: "worker:other", reason: "r" }],
  ])("%s", async (method, extra) => {
    await expectRefused(t, call(method, { id: claim.action.id, claimToken: FOREIGN_TOKEN, ...extra }), expected);
  });
});

describe("a missing or malformed field is INVALID_ARGUMENT naming the field", () => {
  const invalid = (field: string) => ({ code: status.INVALID_ARGUMENT, reason: "INVALID_FIELD", field });
  const enqueueWith = (fields: Record<string, unknown>) => call("EnqueueAction", { actionType: "valid_type", createdBy: "human:tester", ...fields });

  it("an empty action_type", async () => {
    await expectRefused(t, enqueueWith({ actionType: "" }), invalid("action_type"));
  });

  it("an action_type with spaces", async () => {
    await expectRefused(t, enqueueWith({ actionType: "restart the world" }), invalid("action_type"));
  });

  it("a missing created_by", async () => {
    await expectRefused(t, enqueueWith({ createdBy: "" }), invalid("created_by"));
  });

  it.each([
    ["-0.1", -0.1],
    ["1.5", 1.5],
    ["NaN", Number.NaN],
    ["Infinity", Number.POSITIVE_INFINITY],
  ])("confidence %s", async (_name, confidence) => {
    await expectRefused(t, enqueueWith({ confidence }), invalid("confidence"));
  });

  it("an unknown risk_level number", async () => {
    await expectRefused(t, enqueueWith({ riskLevel: 9 }), invalid("risk_level"));
  });

  it("an unknown status in ListActions", async () => {
    await expectRefused(t, call("ListActions", { statuses: ["ACTION_STATUS_PENDING", 42] }), invalid("statuses[1]"));
  });

  it("ACTION_STATUS_UNSPECIFIED in ListActions", async () => {
    await expectRefused(t, call("ListActions", { statuses: ["ACTION_STATUS_UNSPECIFIED"] }), invalid("statuses[0]"));
  });

  it.each(["not-a-token", "12345", `${FOREIGN_TOKEN}0`, ""])("a malformed claim_token %j", async (claimToken) => {
    const claim = await enqueueAndClaim(t, "malformed_token");
    await expectRefused(t, call("CompleteAction", { id: claim.action.id, claimToken, resultRef: "r" }), invalid("claim_token"));
    await expectRefused(t, call("AckClaim", { id: claim.action.id, claimToken }), invalid("claim_token"));
    await t.grpc.unary("CompleteAction", { id: claim.action.id, claimToken: claim.claimToken, resultRef: "r" });
  });

  it.each(["0", "-1", "-9223372036854775808"])("id %s", async (id) => {
    await expectRefused(t, call("GetAction", { id }), invalid("id"));
    await expectRefused(t, call("ApproveAction", { id, approver: "human:bob" }), invalid("id"));
    await expectRefused(t, call("CancelAction", { id, actor: "human:bob", reason: "r" }), invalid("id"));
  });

  it("a negative page_size", async () => {
    await expectRefused(t, call("ListActions", { pageSize: -1 }), invalid("page_size"));
    await expectRefused(t, call("ListEvents", { pageSize: -5 }), invalid("page_size"));
  });

  it("a lease_duration of 0s", async () => {
    await enqueue(t, { actionType: "lease_zero" });
    await expectRefused(
      t,
      call("ClaimAction", { worker: "worker:w", actionTypes: ["lease_zero"], leaseDuration: { seconds: 0, nanos: 0 } }),
      invalid("lease_duration"),
    );
    await expectRefused(
      t,
      call("ClaimAction", { worker: "worker:w", actionTypes: ["lease_zero"], leaseDuration: { seconds: 0, nanos: 999_000_000 } }),
      invalid("lease_duration"),
    );
  });

  it("a lease_duration beyond the server's maximum", async () => {
    await enqueue(t, { actionType: "lease_huge" });
    await expectRefused(
      t,
      call("ClaimAction", { worker: "worker:w", actionTypes: ["lease_huge"], leaseDuration: { seconds: 86_401, nanos: 0 } }),
      invalid("lease_duration"),
    );
    const claim = await enqueueAndClaim(t, "lease_huge_extend");
    await expectRefused(
      t,
      call("ExtendClaim", { id: claim.action.id, claimToken: claim.claimToken, leaseDuration: { seconds: 0, nanos: 0 } }),
      invalid("lease_duration"),
    );
    await expectRefused(
      t,
      call("ExtendClaim", { id: claim.action.id, claimToken: claim.claimToken, leaseDuration: { seconds: 10 ** 9, nanos: 0 } }),
      invalid("lease_duration"),
    );
  });

  it("max_in_flight beyond the server's maximum on StreamClaims", async () => {
    await enqueue(t, { actionType: "stream_bad_args" });
    const before = await snapshot(t.db);
    const error = await streamError(t.grpc.stream("StreamClaims", { worker: "worker:w", actionTypes: ["stream_bad_args"], maxInFlight: 1001 }));
    expect(await snapshot(t.db)).toBe(before);
    expect(status[error.code]).toBe(status[status.INVALID_ARGUMENT]);
    expect(error.details).toContain("max_in_flight");
    expect(errorInfoOf(error)).toMatchObject({ reason: "INVALID_FIELD", metadata: { field: "max_in_flight" } });
  });

  it("a payload larger than 64 KiB", async () => {
    await expectRefused(t, enqueueWith({ payload: toStruct({ blob: "x".repeat(64 * 1024) }) }), invalid("payload"));
  });

  it.each([33, 40])("a payload nested %i levels deep (more than 32)", async (levels) => {
    let nested: Json = "bottom";
    for (let level = 0; level < levels; level++) nested = { a: nested };
    // The refusal names the path where the 33rd level begins.
    await expectRefused(t, enqueueWith({ payload: toStruct(nested as { [key: string]: Json }) }), invalid(`payload${".a".repeat(33)}`));
  });

  it("a payload nested exactly 32 levels is accepted", async () => {
    let deep: Json = 1;
    for (let level = 0; level < 32; level++) deep = { a: deep };
    const { action } = await enqueue(t, { actionType: "deep_but_fine", payload: toStruct(deep as { [key: string]: Json }) });
    expect(action.status).toBe("ACTION_STATUS_APPROVED");
  });

  it("a string containing a NUL character", async () => {
    await expectRefused(t, enqueueWith({ targetRef: "pod\u0000api" }), invalid("target_ref"));
    await expectRefused(t, enqueueWith({ payload: toStruct({ note: "a\u0000b" }) }), invalid("payload.note"));
    await expectRefused(t, enqueueWith({ createdBy: "human:a\u0000b" }), invalid("created_by"));
    const claim = await enqueueAndClaim(t, "nul_result");
    await expectRefused(t, call("CompleteAction", { id: claim.action.id, claimToken: claim.claimToken, resultRef: "r\u0000" }), invalid("result_ref"));
  });

  it("EmitEvent with an event type that is not a coordinator event", async () => {
    await expectRefused(t, call("EmitEvent", { eventType: "action_completed", actor: "dispatcher:main" }), invalid("event_type"));
  });

  it("a missing actor, approver, reason or worker", async () => {
    const { action } = await enqueue(t, { actionType: "needs_fields", approvalRequired: true });
    await expectRefused(t, call("ApproveAction", { id: action.id, approver: "" }), invalid("approver"));
    await expectRefused(t, call("RejectAction", { id: action.id, actor: "human:bob", reason: "" }), invalid("reason"));
    await expectRefused(t, call("CancelAction", { id: action.id, actor: "", reason: "r" }), invalid("actor"));
    await expectRefused(t, call("ClaimAction", { worker: "" }), invalid("worker"));
  });
});

describe("a reference to a missing action is NOT_FOUND", () => {
  it("EmitEvent for a missing action_id", async () => {
    await expectRefused(t, call("EmitEvent", { eventType: "coordinator_cycle", actor: "dispatcher:main", actionId: "55555" }), {
      code: status.NOT_FOUND,
      reason: "ACTION_NOT_FOUND",
    });
  });

  it("EnqueueAction with the parent_id of a missing action", async () => {
    await expectRefused(t, call("EnqueueAction", { actionType: "child", createdBy: "human:tester", parentId: "44444" }), {
      code: status.NOT_FOUND,
      reason: "PARENT_NOT_FOUND",
      field: "parent_id",
    });
  });
});

describe("the ErrorInfo reaches the generated Connect client", () => {
  /** The ErrorInfo of a refused Connect call, after checking nothing changed. */
  async function connectRefusal(fn: () => Promise<unknown>): Promise<{ error: ConnectError; reason: string; metadata: Record<string, string> }> {
    const before = await snapshot(t.db);
    let caught: unknown;
    try {
      await fn();
    } catch (e) {
      caught = e;
    }
    expect(caught, "the call must fail").toBeDefined();
    expect(await snapshot(t.db)).toBe(before);
    const error = ConnectError.from(caught);
    const [info, ...more] = error.findDetails(ErrorInfoSchema);
    expect(info).toBeDefined();
    expect(more).toHaveLength(0);
    return { error, reason: info!.reason, metadata: info!.metadata };
  }

  it("ACTION_NOT_FOUND", async () => {
    const { error, reason, metadata } = await connectRefusal(() => t.client.getAction({ id: 31337n }));
    expect(error.code).toBe(Code.NotFound);
    expect(reason).toBe("ACTION_NOT_FOUND");
    expect(metadata.action_id).toBe("31337");
  });

  it("INVALID_TRANSITION with metadata.current_status", async () => {
    const { action } = await t.client.enqueueAction({ actionType: "connect_approved", createdBy: "human:tester" });
    const { error, reason, metadata } = await connectRefusal(() => t.client.approveAction({ id: action!.id, approver: "human:bob" }));
    expect(error.code).toBe(Code.FailedPrecondition);
    expect(reason).toBe("INVALID_TRANSITION");
    expect(metadata.current_status).toBe("APPROVED");
    expect(error.rawMessage).toContain("APPROVED");
  });

  it("CLAIM_TOKEN_MISMATCH", async () => {
    await t.client.enqueueAction({ actionType: "connect_claimed", createdBy: "human:tester" });
    const { claim } = await t.client.claimAction({ worker: "worker:connect", actionTypes: ["connect_claimed"] });
    expect(claim).toBeDefined();
    const { error, reason, metadata } = await connectRefusal(() =>
      t.client.completeAction({ id: claim!.action!.id, claimToken: FOREIGN_TOKEN, resultRef: "r" }),
    );
    expect(error.code).toBe(Code.FailedPrecondition);
    expect(reason).toBe("CLAIM_TOKEN_MISMATCH");
    expect(metadata.current_status).toBe("CLAIMED");
    await t.client.completeAction({ id: claim!.action!.id, claimToken: claim!.claimToken, resultRef: "r" });
  });

  it("INVALID_FIELD with metadata.field", async () => {
    const { error, reason, metadata } = await connectRefusal(() =>
      t.client.enqueueAction({ actionType: "connect_bad", createdBy: "human:tester", riskLevel: 9 as RiskLevel }),
    );
    expect(error.code).toBe(Code.InvalidArgument);
    expect(reason).toBe("INVALID_FIELD");
    expect(metadata.field).toBe("risk_level");
    const confidence = await connectRefusal(() => t.client.enqueueAction({ actionType: "connect_bad", createdBy: "human:tester", confidence: 1.5 }));
    expect(confidence.metadata.field).toBe("confidence");
  });
});

describe("the error message as grpc-js users read it", () => {
  it("grpc-js users read the message exactly as the server wrote it, without percent escapes", async () => {
    const request = { actionType: "valid_type", createdBy: "human:tester", confidence: 1.5 };
    const viaGrpcJs = await grpcError(t.grpc.unary("EnqueueAction", request));
    const viaConnect = await t.client.enqueueAction(request).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(viaConnect?.rawMessage).toBe("confidence: must be between 0 and 1, got 1.5");
    expect(viaGrpcJs.details).toBe(viaConnect?.rawMessage);
  });
});
