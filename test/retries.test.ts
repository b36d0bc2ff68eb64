// Retries, driven through the real server over the network: FailAction with
// `retryable` and its exponential backoff with jitter, max_attempts and the
// dead letter, WireAction, lost deliveries counted apart from failures, and
// repeated FailAction calls answered without writing anything.
import { status as GrpcCode } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, closeWithin, grpcError, snapshot, startTestServer } from "./support/harness.js";
import { type WireAction, type WireClaim, type WireEvent, enqueue, errorInfoOf, fromStruct, millis } from "./support/wire.js";
import { cancelAfterEach, nthClaim, openClaimStream } from "./support/streams.js";
import { eventually, sleep } from "./support/wait.js";

const track = cancelAfterEach();

let typeCounter = 0;
/** An action type no other test uses, so claims by type see only this test's actions. */
const uniqueType = (label: string) => `${label}_${++typeCounter}`;

async function claim(t: TestServer, actionType: string, extra: Record<string, unknown> = {}): Promise<WireClaim | null> {
  const res = await t.grpc.unary<{ claim: WireClaim | null }>("ClaimAction", { worker: "worker:retries", actionTypes: [actionType], ...extra });
  return res.claim ?? null;
}

async function mustClaim(t: TestServer, actionType: string, extra: Record<string, unknown> = {}): Promise<WireClaim> {
  const claimed = await claim(t, actionType, extra);
  if (!claimed) throw new Error(`nothing of type ${actionType} to claim`);
  return claimed;
}

/** Claims as soon as the action is claimable; returns the claim and when (local clock) it first succeeded.
 * The bound stays well under the 30 s poll of the backoff tests' server, so
 * that there it is the deferral's own timer that makes the action due. */
async function claimWhenDue(t: TestServer, actionType: string, timeoutMs = 10_000): Promise<{ claim: WireClaim; at: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const claimed = await claim(t, actionType);
    if (claimed) return { claim: claimed, at: Date.now() };
    if (Date.now() > deadline) throw new Error(`${actionType} did not become claimable within ${timeoutMs} ms`);
    await sleep(15);
  }
}

function fail(t: TestServer, claimed: WireClaim, reason: string, extra: Record<string, unknown> = {}) {
  return t.grpc.unary<{ action: WireAction }>("FailAction", { id: claimed.action.id, claimToken: claimed.claimToken, reason, ...extra });
}

const getAction = (t: TestServer, id: string) => t.grpc.unary<{ action: WireAction; events: WireEvent[] }>("GetAction", { id });
const eventTypes = (events: WireEvent[]) => events.map((event) => event.eventType);

/** The backoff the server chose: run_after minus the time of the change,
 * both taken from the same statement's now(). */
const delayOf = (action: WireAction) => millis(action.runAfter) - millis(action.updateTime);

async function dbRow(t: TestServer, id: string): Promise<{ status: string; deferred: boolean; failures: number; lost_deliveries: number; attempt: number }> {
  const { rows } = await t.db.query("SELECT status, deferred, failures, lost_deliveries, attempt FROM actions WHERE id = $1", [id]);
  return rows[0];
}

describe("retries with the default of one attempt", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600" });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("a retryable failure is final when the producer set no max_attempts: failed is final", async () => {
    const actionType = uniqueType("one_shot");
    const enqueued = (await enqueue(t, { actionType })).action;
    expect(enqueued.maxAttempts).toBe(1);
    const claimed = await mustClaim(t, actionType);
    const { action } = await fail(t, claimed, "disk full", { retryable: true });
    expect(action).toMatchObject({
      status: "ACTION_STATUS_FAILED",
      failures: 1,
      lostDeliveries: 0,
      lastError: "disk full",
      failureReason: "disk full",
      runAfter: null,
    });
    expect(action.finishTime).not.toBeNull();
    expect(await claim(t, actionType)).toBeNull();
    const { events } = await getAction(t, action.id);
    expect(eventTypes(events)).toEqual(["action_enqueued", "action_approved", "action_claimed", "action_failed"]);
    expect(fromStruct(events.at(-1)!.payload)).toMatchObject({ reason: "disk full", failures: 1, max_attempts: 1, retryable: true });
  });

  it("FailAction refuses retry_delay without retryable, and a retry_delay beyond the longest backoff, changing nothing", async () => {
    const actionType = uniqueType("bad_delay");
    await enqueue(t, { actionType, maxAttempts: 3 });
    const claimed = await mustClaim(t, actionType);
    const before = await snapshot(t.db);
    const noRetry = await grpcError(fail(t, claimed, "x", { retryDelay: { seconds: 1 } }));
    expect(noRetry.code).toBe(GrpcCode.INVALID_ARGUMENT);
    expect(errorInfoOf(noRetry)?.metadata.field).toBe("retry_delay");
    const tooLong = await grpcError(fail(t, claimed, "x", { retryable: true, retryDelay: { seconds: 86_400 * 30 } }));
    expect(tooLong.code).toBe(GrpcCode.INVALID_ARGUMENT);
    expect(errorInfoOf(tooLong)?.metadata.field).toBe("retry_delay");
    expect(await snapshot(t.db)).toBe(before);
  });

  it("max_attempts is validated at enqueue", async () => {
    const error = await grpcError(enqueue(t, { actionType: uniqueType("bad_max"), maxAttempts: -1 }));
    expect(error.code).toBe(GrpcCode.INVALID_ARGUMENT);
    expect(errorInfoOf(error)?.metadata.field).toBe("max_attempts");
  });
});

describe("retries with backoff", () => {
  let t: TestServer;
  // First retry after 0.4 s (jittered down to 0.2 s), doubling, at most 1 s.
  const baseMs = 400;
  const maxMs = 1000;
  beforeAll(async () => {
    t = await startTestServer({
      ACTIONQ_RETRY_BACKOFF_SECONDS: String(baseMs / 1000),
      ACTIONQ_RETRY_BACKOFF_MAX_SECONDS: String(maxMs / 1000),
      ACTIONQ_ACK_TIMEOUT_SECONDS: "1",
      ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600",
      // Deferred actions must come back by the scheduler's own timer, not a poll.
      ACTIONQ_POLL_INTERVAL_SECONDS: "30",
    });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("fails, waits a doubling backoff each time (not claimable meanwhile), then dead-letters after max_attempts keeping the last error", async () => {
    const actionType = uniqueType("flaky");
    const enqueued = (await enqueue(t, { actionType, maxAttempts: 4 })).action;
    expect(enqueued.maxAttempts).toBe(4);

    let current = await mustClaim(t, actionType);
    for (let failure = 1; failure <= 3; failure++) {
      const { action } = await fail(t, current, `timeout #${failure}`, { retryable: true });
      expect(action).toMatchObject({
        status: "ACTION_STATUS_APPROVED",
        failures: failure,
        lastError: `timeout #${failure}`,
        failureReason: "",
        claimedBy: "",
        claimAcked: false,
      });
      expect(action.finishTime).toBeNull();
      expect(action.runAfter).not.toBeNull();
      const delay = delayOf(action);
      // Exponential with jitter down to half, capped at the maximum.
      const full = Math.min(maxMs, baseMs * 2 ** (failure - 1));
      expect(delay, `backoff after failure ${failure}`).toBeGreaterThanOrEqual(full / 2 - 1);
      expect(delay, `backoff after failure ${failure}`).toBeLessThanOrEqual(full + 1);
      expect((await dbRow(t, action.id)).deferred).toBe(true);

      // Not claimable while it waits...
      expect(await claim(t, actionType)).toBeNull();
      // ...and claimable once run_after has passed, by the server's clock.
      const next = await claimWhenDue(t, actionType);
      expect(millis(next.claim.action.claimTime)).toBeGreaterThanOrEqual(millis(action.runAfter));
      expect(next.claim.action).toMatchObject({ id: enqueued.id, attempt: failure + 1, failures: failure });
      current = next.claim;
    }

    const { action: dead } = await fail(t, current, "timeout #4", { retryable: true });
    expect(dead).toMatchObject({
      status: "ACTION_STATUS_FAILED",
      failures: 4,
      attempt: 4,
      lastError: "timeout #4",
      failureReason: "timeout #4",
      runAfter: null,
    });
    expect(await claim(t, actionType)).toBeNull();
    const { events } = await getAction(t, enqueued.id);
    expect(eventTypes(events)).toEqual([
      "action_enqueued",
      "action_approved",
      ...Array(3).fill(["action_claimed", "action_retry_scheduled"]).flat(),
      "action_claimed",
      "action_failed",
    ]);
    const scheduled = events.filter((event) => event.eventType === "action_retry_scheduled").map((event) => fromStruct(event.payload));
    expect(scheduled.map((payload) => payload.failures)).toEqual([1, 2, 3]);
    expect(scheduled.every((payload) => payload.max_attempts === 4 && typeof payload.run_after === "string")).toBe(true);
    expect(fromStruct(events.at(-1)!.payload)).toMatchObject({ reason: "timeout #4", failures: 4, max_attempts: 4 });
  });

  it("jitters the backoff: first retries of many actions spread between half and all of the base delay", async () => {
    const count = 12;
    const delays: number[] = [];
    for (let i = 0; i < count; i++) {
      // A type each, so that an earlier action coming due is not claimed instead.
      const actionType = uniqueType("jitter");
      await enqueue(t, { actionType, maxAttempts: 2 });
      const claimed = await mustClaim(t, actionType);
      delays.push(delayOf((await fail(t, claimed, "busy", { retryable: true })).action));
    }
    for (const delay of delays) {
      expect(delay).toBeGreaterThanOrEqual(baseMs / 2 - 1);
      expect(delay).toBeLessThanOrEqual(baseMs + 1);
    }
    // Twelve draws from [200, 400] ms: without jitter they would be equal.
    expect(Math.max(...delays) - Math.min(...delays)).toBeGreaterThan(10);
  });

  it("a worker's retry_delay replaces the backoff", async () => {
    const actionType = uniqueType("own_delay");
    await enqueue(t, { actionType, maxAttempts: 2 });
    const claimed = await mustClaim(t, actionType);
    const { action } = await fail(t, claimed, "rate limited upstream", { retryable: true, retryDelay: { seconds: 0, nanos: 350_000_000 } });
    expect(action.status).toBe("ACTION_STATUS_APPROVED");
    expect(delayOf(action)).toBe(350);
  });

  it("a failure that is not retryable is final even with attempts left", async () => {
    const actionType = uniqueType("permanent");
    await enqueue(t, { actionType, maxAttempts: 5 });
    const claimed = await mustClaim(t, actionType);
    const { action } = await fail(t, claimed, "bad input");
    expect(action).toMatchObject({ status: "ACTION_STATUS_FAILED", failures: 1, maxAttempts: 5, failureReason: "bad input", lastError: "bad input" });
  });

  it("a retry waiting out its backoff is pushed to a worker's open stream when it is due", async () => {
    const actionType = uniqueType("stream_retry");
    const { id } = (await enqueue(t, { actionType, maxAttempts: 2 })).action;
    const stream = openClaimStream(t, { worker: "stream-retrier", actionTypes: [actionType], maxInFlight: 1 });
    track(stream);
    const first = await nthClaim(stream, 1);
    await t.grpc.unary("AckClaim", { id, claimToken: first.claimToken });
    const { action } = await fail(t, first as unknown as WireClaim, "connection reset", { retryable: true, retryDelay: { seconds: 0, nanos: 400_000_000 } });
    const second = (await nthClaim(stream, 2, 15_000)) as unknown as WireClaim;
    expect(second.action).toMatchObject({ id, attempt: 2 });
    expect(millis(second.action.claimTime)).toBeGreaterThanOrEqual(millis(action.runAfter));
    // Pushed by the scheduler's timer, not the 30 s poll (which would come
    // far later; a loaded machine may be seconds late).
    expect(millis(second.action.claimTime) - millis(action.runAfter)).toBeLessThan(10_000);
  });
});

describe("RetryAction", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600", ACTIONQ_RETRY_BACKOFF_SECONDS: "0.05" });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  const retry = (t: TestServer, request: Record<string, unknown>) =>
    t.grpc.unary<{ action: WireAction }>("RetryAction", { actor: "human:carol", reason: "upstream fixed", ...request });

  it("sends a FAILED action back to APPROVED with one more attempt, claimable at once, keeping the last error", async () => {
    const actionType = uniqueType("dead_letter");
    const { id } = (await enqueue(t, { actionType })).action;
    await fail(t, await mustClaim(t, actionType), "upstream down", { retryable: true });

    const { action } = await retry(t, { id });
    expect(action).toMatchObject({
      status: "ACTION_STATUS_APPROVED",
      failures: 1,
      maxAttempts: 2,
      lastError: "upstream down",
      failureReason: "",
      runAfter: null,
      finishTime: null,
    });
    expect((await dbRow(t, id)).deferred).toBe(false);
    const { events } = await getAction(t, id);
    expect(events.at(-1)!.eventType).toBe("action_retried");
    expect(events.at(-1)!.actor).toBe("human:carol");
    expect(fromStruct(events.at(-1)!.payload)).toEqual({ reason: "upstream fixed", failure_reason: "upstream down", additional_attempts: 1, max_attempts: 2 });

    // One more attempt, so its next retryable failure is final again.
    const again = await mustClaim(t, actionType);
    expect(again.action).toMatchObject({ id, attempt: 2 });
    const { action: final } = await fail(t, again, "still down", { retryable: true });
    expect(final).toMatchObject({ status: "ACTION_STATUS_FAILED", failures: 2, maxAttempts: 2, lastError: "still down" });

    // additional_attempts grants that many more failures.
    const { action: more } = await retry(t, { id, additionalAttempts: 3 });
    expect(more.maxAttempts).toBe(5);
    const { action: retried } = await fail(t, await mustClaim(t, actionType), "flaky", { retryable: true });
    expect(retried).toMatchObject({ status: "ACTION_STATUS_APPROVED", failures: 3 });
  });

  it("refuses actions that are not FAILED and bad requests, changing nothing", async () => {
    const actionType = uniqueType("not_failed");
    const approved = (await enqueue(t, { actionType })).action;
    const done = (await enqueue(t, { actionType: uniqueType("done") })).action;
    const claimed = await mustClaim(t, done.actionType);
    await t.grpc.unary("CompleteAction", { id: done.id, claimToken: claimed.claimToken, resultRef: "ok" });
    // A retry still waiting out its backoff would be promoted meanwhile.
    await expect.poll(async () => (await t.db.query("SELECT count(*)::int AS n FROM actions WHERE deferred")).rows[0].n, { timeout: 15_000 }).toBe(0);
    const before = await snapshot(t.db);
    for (const [id, status] of [
      [approved.id, "APPROVED"],
      [done.id, "COMPLETED"],
    ] as const) {
      const error = await grpcError(retry(t, { id }));
      expect(error.code).toBe(GrpcCode.FAILED_PRECONDITION);
      expect(errorInfoOf(error)).toMatchObject({ reason: "INVALID_TRANSITION" });
      expect(errorInfoOf(error)?.metadata.current_status).toBe(status);
    }
    const missing = await grpcError(retry(t, { id: "999999999" }));
    expect(missing.code).toBe(GrpcCode.NOT_FOUND);
    const noActor = await grpcError(retry(t, { id: approved.id, actor: "" }));
    expect(noActor.code).toBe(GrpcCode.INVALID_ARGUMENT);
    expect(errorInfoOf(noActor)?.metadata.field).toBe("actor");
    const noReason = await grpcError(retry(t, { id: approved.id, reason: "" }));
    expect(noReason.code).toBe(GrpcCode.INVALID_ARGUMENT);
    expect(errorInfoOf(noReason)?.metadata.field).toBe("reason");
    expect(await snapshot(t.db)).toBe(before);
  });
});

describe("lost deliveries are counted apart from failures", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_ACK_TIMEOUT_SECONDS: "0.5", ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600", ACTIONQ_RETRY_BACKOFF_SECONDS: "0.05" });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("a claim released unacknowledged, one never acknowledged in time and a lease that ran out use up no attempt", async () => {
    const actionType = uniqueType("lossy");
    const { id } = (await enqueue(t, { actionType, maxAttempts: 2 })).action;

    // 1. Delivered on a stream that closes before acknowledging.
    const closing = openClaimStream(t, { worker: "closing", actionTypes: [actionType], maxInFlight: 1 });
    track(closing);
    await nthClaim(closing, 1);
    await closing.cancel();
    // Released by the server at once, not by the sweeper (hourly here): the
    // bounds below only allow for a loaded machine.
    await expect.poll(async () => (await dbRow(t, id)).status, { timeout: 15_000 }).toBe("approved");
    expect(await dbRow(t, id)).toMatchObject({ lost_deliveries: 1, failures: 0, attempt: 1 });

    // 2. Delivered and never acknowledged within the ack timeout. The type
    // is paused once delivered, so the stream cannot take it again. On a
    // loaded machine the pause may commit after the ack timeout, and the
    // stream takes the action once more before it is closed: that is one
    // more lost delivery, counted like the others.
    const silent = openClaimStream(t, { worker: "silent", actionTypes: [actionType], maxInFlight: 1 });
    track(silent);
    await nthClaim(silent, 1);
    const scope = { kind: "PAUSE_KIND_ACTION_TYPE", value: actionType };
    await t.grpc.unary("PauseClaims", { scope, actor: "human:op", reason: "hold the retries test" });
    await expect.poll(async () => (await dbRow(t, id)).lost_deliveries, { timeout: 15_000 }).toBeGreaterThanOrEqual(2);
    await silent.cancel();
    // The server lets the stream go before the resume below; a stream it
    // still held open would be woken by the resume, take the action once
    // more and lose it again on closing.
    await eventually(() => t.server.stats.claimStreams === 0, "the server to let the silent stream go");
    await expect.poll(async () => (await dbRow(t, id)).status, { timeout: 15_000 }).toBe("approved");
    const lost = (await dbRow(t, id)).lost_deliveries;
    expect(await dbRow(t, id)).toMatchObject({ failures: 0, attempt: lost });
    await t.grpc.unary("ResumeClaims", { scope, actor: "human:op" });

    // 3. Claimed with a one-second lease that runs out.
    await mustClaim(t, actionType, { leaseDuration: { seconds: 1 } });
    await sleep(1100);
    // Only this call can requeue it: the server's own sweeper runs hourly.
    const swept = await t.grpc.unary<{ requeuedActions: WireAction[] }>("SweepClaims", { actor: "human:sweeper" });
    expect(swept.requeuedActions.map((action) => action.id)).toContain(id);
    expect(await dbRow(t, id)).toMatchObject({ status: "approved", lost_deliveries: lost + 1, failures: 0, attempt: lost + 1 });

    // Every lost delivery, yet a retryable failure still gets its retry.
    const { action: retried } = await fail(t, await mustClaim(t, actionType), "flaky", { retryable: true });
    expect(retried).toMatchObject({ status: "ACTION_STATUS_APPROVED", failures: 1, lostDeliveries: lost + 1, attempt: lost + 2 });
    const { claim: last } = await claimWhenDue(t, actionType);
    const { action: dead } = await fail(t, last, "flaky again", { retryable: true });
    expect(dead).toMatchObject({ status: "ACTION_STATUS_FAILED", failures: 2, lostDeliveries: lost + 1, attempt: lost + 3, maxAttempts: 2 });

    const { events } = await getAction(t, id);
    const count = (type: string) => events.filter((event) => event.eventType === type).length;
    expect([count("claim_released"), count("claim_timed_out"), count("action_retry_scheduled"), count("action_failed"), count("action_claimed")]).toEqual([
      lost,
      1,
      1,
      1,
      lost + 3,
    ]);
  });
});

describe("repeated FailAction calls", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600", ACTIONQ_POLL_INTERVAL_SECONDS: "30" });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("a final failure repeated with the same token and reason gets the same answer and writes nothing", async () => {
    const actionType = uniqueType("fail_twice");
    await enqueue(t, { actionType });
    const claimed = await mustClaim(t, actionType);
    const first = await fail(t, claimed, "broken");
    const before = await snapshot(t.db);
    const repeat = await fail(t, claimed, "broken");
    expect(repeat).toEqual(first);
    expect(await snapshot(t.db)).toBe(before);
  });

  it("a retry-scheduling failure repeated gets the same answer (same run_after) and schedules nothing more", async () => {
    const actionType = uniqueType("retry_twice");
    await enqueue(t, { actionType, maxAttempts: 3 });
    const claimed = await mustClaim(t, actionType);
    const first = await fail(t, claimed, "transient", { retryable: true, retryDelay: { seconds: 30 } });
    expect(first.action.status).toBe("ACTION_STATUS_APPROVED");
    const before = await snapshot(t.db);
    const repeat = await fail(t, claimed, "transient", { retryable: true, retryDelay: { seconds: 30 } });
    expect(repeat).toEqual(first);
    // Also when the repeat does not carry the retry options again.
    const bare = await fail(t, claimed, "transient");
    expect(bare).toEqual(first);
    expect(await snapshot(t.db)).toBe(before);

    // The same token with another reason is not a repeat: refused, nothing changes.
    const other = await grpcError(fail(t, claimed, "something else", { retryable: true }));
    expect(other.code).toBe(GrpcCode.FAILED_PRECONDITION);
    expect(await snapshot(t.db)).toBe(before);
  });

  it("a repeat of a retry-scheduling failure that arrives after another worker claimed the retry leaves the new claim alone", async () => {
    const actionType = uniqueType("late_repeat");
    const { id } = (await enqueue(t, { actionType, maxAttempts: 3 })).action;
    const claimed = await mustClaim(t, actionType);
    await fail(t, claimed, "transient", { retryable: true, retryDelay: { seconds: 0 } });
    const { claim: second } = await claimWhenDue(t, actionType);
    expect(second.action.attempt).toBe(2);
    const before = await snapshot(t.db);
    const late = await fail(t, claimed, "transient", { retryable: true, retryDelay: { seconds: 0 } });
    expect(late.action).toMatchObject({ id, failures: 1 });
    expect(await snapshot(t.db)).toBe(before);
    // The new holder still finishes its claim.
    const done = await t.grpc.unary<{ action: WireAction }>("CompleteAction", { id, claimToken: second.claimToken, resultRef: "ok" });
    expect(done.action).toMatchObject({ status: "ACTION_STATUS_COMPLETED", failures: 1, attempt: 2 });
  });
});

describe("the server's ACTIONQ_MAX_ATTEMPTS", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_MAX_ATTEMPTS: "3", ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600" });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("applies when the producer sets no max_attempts, and a producer's own value wins", async () => {
    const byDefault = (await enqueue(t, { actionType: uniqueType("defaulted") })).action;
    expect(byDefault.maxAttempts).toBe(3);
    const own = (await enqueue(t, { actionType: uniqueType("own_max"), maxAttempts: 1 })).action;
    expect(own.maxAttempts).toBe(1);
    const claimed = await mustClaim(t, byDefault.actionType);
    const { action } = await fail(t, claimed, "flaky", { retryable: true });
    expect(action).toMatchObject({ status: "ACTION_STATUS_APPROVED", failures: 1, maxAttempts: 3 });
  });
});
