// Idempotency end to end: a producer retrying EnqueueAction (also racing
// itself, also through two replicas) gets the first action, and a worker
// retrying a transition with the same token (Complete, Fail, a
// retry-scheduling Fail, Ack, Extend) gets the same answer, one event at
// most, whatever the interleaving.
import { status as GrpcCode } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, closeWithin, grpcError, snapshot, startTestServer } from "./support/harness.js";
import { type WireAction, type WireClaim, type WireTimestamp, enqueue, errorInfoOf, millis } from "./support/wire.js";

let t: TestServer;
let replica: TestServer;
beforeAll(async () => {
  t = await startTestServer({ ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600" });
  // A second server on the same schema: producers retry through any replica.
  replica = await startTestServer({ ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600" }, t.schema);
});
afterAll(async () => {
  await closeWithin(replica);
  await closeWithin(t);
});

let counter = 0;
const unique = (label: string) => `${label}_${++counter}`;
const timestamp = (ms: number) => ({ seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 });

async function claimOf(actionType: string): Promise<WireClaim> {
  const { claim } = await t.grpc.unary<{ claim: WireClaim | null }>("ClaimAction", { worker: "worker:idem", actionTypes: [actionType] });
  if (!claim) throw new Error(`nothing of type ${actionType} to claim`);
  return claim;
}

async function allEvents(): Promise<string[]> {
  const { rows } = await t.db.query<{ id: string }>("SELECT e.id::text AS id FROM events e ORDER BY e.id");
  return rows.map((row) => row.id);
}

async function eventCount(id: string, type: string): Promise<number> {
  const { rows } = await t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM events WHERE action_id = $1 AND event_type = $2", [id, type]);
  return rows[0]!.n;
}

describe("EnqueueAction with an idempotency key", () => {
  it("a repeat with the same run_after and max_attempts returns the first (deferred) action and writes nothing", async () => {
    const request = { actionType: unique("later"), idempotencyKey: unique("k"), runAfter: timestamp(Date.now() + 3_600_000), maxAttempts: 4 };
    const first = await enqueue(t, request);
    expect(first.created).toBe(true);
    const before = await snapshot(t.db);
    const repeat = await enqueue(replica, request);
    expect(repeat.created).toBe(false);
    expect(repeat.action).toEqual(first.action);
    expect(await snapshot(t.db)).toBe(before);
  });

  it("a repeat that asks for another max_attempts is a different request: ALREADY_EXISTS, nothing written", async () => {
    const request = { actionType: unique("attempts"), idempotencyKey: unique("k"), maxAttempts: 2 };
    await enqueue(t, request);
    const before = await snapshot(t.db);
    const error = await grpcError(enqueue(t, { ...request, maxAttempts: 5 }));
    expect(error.code).toBe(GrpcCode.ALREADY_EXISTS);
    expect(errorInfoOf(error)?.reason).toBe("IDEMPOTENCY_KEY_REUSED");
    expect(await snapshot(t.db)).toBe(before);
  });

  it("a repeat that asks for another run_after is a different request: ALREADY_EXISTS, nothing written", async () => {
    const request = { actionType: unique("when"), idempotencyKey: unique("k"), runAfter: timestamp(Date.now() + 3_600_000) };
    const first = await enqueue(t, request);
    const before = await snapshot(t.db);
    // Same key, same everything, but to run a day later: not a retry of the
    // first request, so it must not silently return the first action.
    const later = enqueue(t, { ...request, runAfter: timestamp(Date.now() + 86_400_000) });
    const outcome = await later.then(
      (res) => `created=${res.created}, returned action ${res.action.id} (first was ${first.action.id}) with run_after ${millis(res.action.runAfter)}`,
      (error: { code: number }) => error.code,
    );
    expect(outcome).toBe(GrpcCode.ALREADY_EXISTS);
    expect(await snapshot(t.db)).toBe(before);
  });

  it("concurrent duplicates through two replicas create exactly one action and one set of events", async () => {
    const request = { actionType: unique("burst"), idempotencyKey: unique("k"), maxAttempts: 3, runAfter: timestamp(Date.now() + 60_000) };
    const results = await Promise.all(Array.from({ length: 24 }, (_, i) => enqueue(i % 2 === 0 ? t : replica, request)));
    const ids = new Set(results.map((res) => res.action.id));
    expect(ids.size).toBe(1);
    expect(results.filter((res) => res.created)).toHaveLength(1);
    const [id] = [...ids];
    const { rows } = await t.db.query<{ id: string; deferred: boolean }>("SELECT id::text, deferred FROM actions WHERE idempotency_key = $1", [
      request.idempotencyKey,
    ]);
    expect(rows).toEqual([{ id, deferred: true }]);
    const { rows: events } = await t.db.query<{ event_type: string }>("SELECT event_type FROM events WHERE action_id = $1 ORDER BY id", [id]);
    expect(events.map((e) => e.event_type)).toEqual(["action_enqueued", "action_approved"]);
  });
});

describe("transitions repeated with the same token", () => {
  it("CompleteAction: a sequential repeat gets the same answer; 10 concurrent repeats all succeed with one action_completed", async () => {
    const actionType = unique("complete");
    await enqueue(t, { actionType });
    const claim = await claimOf(actionType);
    const call = () => t.grpc.unary<{ action: WireAction }>("CompleteAction", { id: claim.action.id, claimToken: claim.claimToken, resultRef: "s3://r/1" });
    const answers = await Promise.all(Array.from({ length: 10 }, call));
    for (const answer of answers) expect(answer).toEqual(answers[0]);
    expect(answers[0]!.action.status).toBe("ACTION_STATUS_COMPLETED");
    const before = await snapshot(t.db);
    expect(await call()).toEqual(answers[0]);
    expect(await snapshot(t.db)).toBe(before);
    expect(await eventCount(claim.action.id, "action_completed")).toBe(1);
  });

  it("FailAction that schedules a retry: 10 concurrent repeats all get the same answer and one action_retry_scheduled", async () => {
    const actionType = unique("fail_race");
    await enqueue(t, { actionType, maxAttempts: 3 });
    const claim = await claimOf(actionType);
    const call = () =>
      t.grpc.unary<{ action: WireAction }>("FailAction", {
        id: claim.action.id,
        claimToken: claim.claimToken,
        reason: "flaky",
        retryable: true,
        retryDelay: { seconds: 60 },
      });
    const answers = await Promise.all(Array.from({ length: 10 }, call));
    for (const answer of answers) expect(answer).toEqual(answers[0]);
    expect(answers[0]!.action).toMatchObject({ status: "ACTION_STATUS_APPROVED", failures: 1 });
    expect(await eventCount(claim.action.id, "action_retry_scheduled")).toBe(1);
    const before = await snapshot(t.db);
    expect(await call()).toEqual(answers[0]);
    expect(await snapshot(t.db)).toBe(before);
  });

  it("a final FailAction: concurrent repeats all succeed, one action_failed", async () => {
    const actionType = unique("fail_final");
    await enqueue(t, { actionType });
    const claim = await claimOf(actionType);
    const answers = await Promise.all(
      Array.from({ length: 10 }, () =>
        t.grpc.unary<{ action: WireAction }>("FailAction", { id: claim.action.id, claimToken: claim.claimToken, reason: "broken" }),
      ),
    );
    for (const answer of answers) expect(answer).toEqual(answers[0]);
    expect(answers[0]!.action.status).toBe("ACTION_STATUS_FAILED");
    expect(await eventCount(claim.action.id, "action_failed")).toBe(1);
  });

  it("Complete and Fail racing with one token: exactly one wins, the loser is refused and changes nothing", async () => {
    for (let round = 0; round < 5; round++) {
      const actionType = unique("race");
      await enqueue(t, { actionType, maxAttempts: 2 });
      const claim = await claimOf(actionType);
      const [complete, failed] = await Promise.allSettled([
        t.grpc.unary<{ action: WireAction }>("CompleteAction", { id: claim.action.id, claimToken: claim.claimToken, resultRef: "ok" }),
        t.grpc.unary<{ action: WireAction }>("FailAction", { id: claim.action.id, claimToken: claim.claimToken, reason: "no", retryable: true }),
      ]);
      expect([complete.status, failed.status].sort()).toEqual(["fulfilled", "rejected"]);
      const loser = (complete.status === "rejected" ? complete : failed) as PromiseRejectedResult;
      expect((loser.reason as { code: number }).code).toBe(GrpcCode.FAILED_PRECONDITION);
      const ended = (await eventCount(claim.action.id, "action_completed")) + (await eventCount(claim.action.id, "action_retry_scheduled"));
      expect(ended).toBe(1);
    }
  });

  it("AckClaim repeated gets the same answer and writes no event; ExtendClaim repeated keeps the claim and moves its deadline forward", async () => {
    const actionType = unique("ack_extend");
    await enqueue(t, { actionType });
    const claim = await claimOf(actionType);
    const id = claim.action.id;
    const ack = () => t.grpc.unary<{ action: WireAction }>("AckClaim", { id, claimToken: claim.claimToken });
    const first = await ack();
    const eventsBefore = await allEvents();
    const again = await Promise.all([ack(), ack(), ack()]);
    // The same claim, acknowledged, with the same deadline. (update_time
    // moves: a repeated ack still rewrites the row; see the report.)
    const essence = ({ action }: { action: WireAction }) => ({ ...action, updateTime: null });
    for (const answer of again) expect(essence(answer)).toEqual(essence(first));
    expect(first.action).toMatchObject({ status: "ACTION_STATUS_CLAIMED", claimAcked: true });
    expect(await allEvents()).toEqual(eventsBefore);

    const extend = () =>
      t.grpc.unary<{ claimDeadline: WireTimestamp; action: WireAction }>("ExtendClaim", { id, claimToken: claim.claimToken, leaseDuration: { seconds: 120 } });
    const e1 = await extend();
    const e2 = await extend();
    expect(e1.action).toMatchObject({ status: "ACTION_STATUS_CLAIMED", claimedBy: "worker:idem", attempt: 1 });
    expect(e2.action).toMatchObject({ status: "ACTION_STATUS_CLAIMED", claimedBy: "worker:idem", attempt: 1 });
    expect(millis(e2.claimDeadline)).toBeGreaterThanOrEqual(millis(e1.claimDeadline));
    const { rows } = await t.db.query("SELECT claim_token::text AS token FROM actions WHERE id = $1", [id]);
    expect(rows[0].token).toBe(claim.claimToken);
  });
});
