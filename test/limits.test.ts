// The producer-facing limits, over the wire: how deep a chain of parent and
// child actions may grow, and how many actions an `agent:` or `script:`
// producer may enqueue per hour.
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, grpcError, snapshot, startTestServer } from "./support/harness.js";
import { RetryInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { type EnqueueResponse, enqueue, errorInfoOf, messageOf, statusDetailOf } from "./support/wire.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ ACTIONQ_RATE_LIMIT_PER_HOUR: "3", ACTIONQ_MAX_CHAIN_DEPTH: "2" });
});
afterAll(async () => {
  await t?.close();
});

async function countBy(createdBy: string): Promise<number> {
  const { rows } = await t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM actions WHERE created_by = $1", [createdBy]);
  return rows[0]!.n;
}

/** Enqueues and expects RESOURCE_EXHAUSTED with nothing written. */
async function expectRateLimited(request: Record<string, unknown>): Promise<void> {
  const before = await snapshot(t.db);
  const error = await grpcError(enqueue(t, request));
  expect(await snapshot(t.db)).toBe(before);
  expect(status[error.code]).toBe(status[status.RESOURCE_EXHAUSTED]);
  expect(errorInfoOf(error)).toMatchObject({ reason: "RATE_LIMITED", metadata: { field: "created_by", limit: "3" } });
  expect(messageOf(error)).toContain(`producer ${String(request.createdBy)} has enqueued 3 actions`);
}

describe("chain depth", () => {
  it("a child gets its parent's id and the parent's chain_depth plus one", async () => {
    const root = (await enqueue(t, { actionType: "chain_root" })).action;
    expect(root.chainDepth).toBe(0);
    expect(root.parentId).toBe("0");
    const child = (await enqueue(t, { actionType: "chain_child", parentId: root.id })).action;
    expect(child.parentId).toBe(root.id);
    expect(child.chainDepth).toBe(1);
    const grandchild = (await enqueue(t, { actionType: "chain_grandchild", parentId: child.id })).action;
    expect(grandchild.parentId).toBe(child.id);
    expect(grandchild.chainDepth).toBe(2);
    const children = await t.grpc.unary<{ actions: { id: string }[] }>("ListActions", { parentId: root.id });
    expect(children.actions.map((a) => a.id)).toEqual([child.id]);
  });

  it("a child beyond ACTIONQ_MAX_CHAIN_DEPTH is FAILED_PRECONDITION and nothing is written", async () => {
    const root = (await enqueue(t, { actionType: "deep_root" })).action;
    const one = (await enqueue(t, { actionType: "deep_1", parentId: root.id })).action;
    const two = (await enqueue(t, { actionType: "deep_2", parentId: one.id })).action;
    expect(two.chainDepth).toBe(2);

    const before = await snapshot(t.db);
    const error = await grpcError(enqueue(t, { actionType: "deep_3", parentId: two.id }));
    expect(await snapshot(t.db)).toBe(before);
    expect(status[error.code]).toBe(status[status.FAILED_PRECONDITION]);
    expect(errorInfoOf(error)).toMatchObject({ reason: "CHAIN_TOO_DEEP", metadata: { field: "parent_id", chain_depth: "3", max_chain_depth: "2" } });
    expect(error.details).toContain("parent_id");

    // A sibling at an allowed depth is still accepted.
    const sibling = (await enqueue(t, { actionType: "deep_2b", parentId: one.id })).action;
    expect(sibling.chainDepth).toBe(2);
  });
});

describe("rate limit per producer", () => {
  it.each(["agent:x", "script:nightly"])("%s gets 3 enqueues in the hour, then RESOURCE_EXHAUSTED with nothing written", async (createdBy) => {
    for (let i = 0; i < 3; i++) {
      const res = await enqueue(t, { actionType: "rate_check", createdBy, targetRef: `t${i}` });
      expect(res.created).toBe(true);
    }
    await expectRateLimited({ actionType: "rate_check", createdBy, targetRef: "t3" });
    await expectRateLimited({ actionType: "rate_check_other_type", createdBy, idempotencyKey: "fresh-key" });
    expect(await countBy(createdBy)).toBe(3);
  });

  it("the refusal says when the producer may try again, in the message and as a RetryInfo detail", async () => {
    const producer = "agent:retry-info";
    for (let i = 0; i < 3; i++) await enqueue(t, { actionType: "rate_retry", createdBy: producer });
    const error = await grpcError(enqueue(t, { actionType: "rate_retry", createdBy: producer }));
    const delay = statusDetailOf(error, RetryInfoSchema)?.retryDelay;
    // The first of the three ages out of the hour in just under an hour.
    expect(Number(delay?.seconds)).toBeGreaterThan(3500);
    expect(Number(delay?.seconds)).toBeLessThanOrEqual(3600);
    expect(messageOf(error)).toMatch(/retry in \d+ s \(at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)/);
    expect(errorInfoOf(error)?.metadata.retry_after_seconds).toMatch(/^\d+$/);
  });

  it("a human: producer is not limited", async () => {
    for (let i = 0; i < 6; i++) {
      const res = await enqueue(t, { actionType: "rate_check", createdBy: "human:unlimited", targetRef: `t${i}` });
      expect(res.created).toBe(true);
    }
    expect(await countBy("human:unlimited")).toBe(6);
  });

  it("another agent has its own budget", async () => {
    for (let i = 0; i < 3; i++) await enqueue(t, { actionType: "rate_check", createdBy: "agent:first" });
    await expectRateLimited({ actionType: "rate_check", createdBy: "agent:first" });
    for (let i = 0; i < 3; i++) {
      const res = await enqueue(t, { actionType: "rate_check", createdBy: "agent:second" });
      expect(res.created).toBe(true);
    }
    await expectRateLimited({ actionType: "rate_check", createdBy: "agent:second" });
    expect(await countBy("agent:first")).toBe(3);
    expect(await countBy("agent:second")).toBe(3);
  });

  it("an idempotent repeat of an earlier enqueue is answered, not refused, when the producer is over its limit", async () => {
    const createdBy = "agent:retrier";
    const first = await enqueue(t, { actionType: "rate_retry", createdBy, idempotencyKey: "retry-1" });
    await enqueue(t, { actionType: "rate_retry", createdBy, idempotencyKey: "retry-2" });
    await enqueue(t, { actionType: "rate_retry", createdBy, idempotencyKey: "retry-3" });
    await expectRateLimited({ actionType: "rate_retry", createdBy, idempotencyKey: "retry-4" });

    const before = await snapshot(t.db);
    const repeat = await enqueue(t, { actionType: "rate_retry", createdBy, idempotencyKey: "retry-1" });
    expect(await snapshot(t.db)).toBe(before);
    expect(repeat.created).toBe(false);
    expect(repeat.action.id).toBe(first.action.id);
  });

  it("10 concurrent enqueues by one agent with a limit of 3 create exactly 3", async () => {
    const createdBy = "agent:burst";
    const settled = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => enqueue(t, { actionType: "rate_burst", createdBy, targetRef: `b${i}` })));
    const created = settled.filter((s) => s.status === "fulfilled");
    const refusedCodes = settled.flatMap((s) => (s.status === "rejected" ? [status[(s.reason as { code: number }).code]] : []));
    expect(created).toHaveLength(3);
    expect(refusedCodes).toEqual(Array(7).fill(status[status.RESOURCE_EXHAUSTED]));
    expect(await countBy(createdBy)).toBe(3);
  });

  it("concurrent retries of the enqueue that spends an agent's last unit of budget all get that action", async () => {
    const createdBy = "agent:last-unit";
    await enqueue(t, { actionType: "rate_last", createdBy, targetRef: "u1" });
    await enqueue(t, { actionType: "rate_last", createdBy, targetRef: "u2" });
    // The third enqueue uses the last unit; its retries race with it.
    const request = { actionType: "rate_last", createdBy, targetRef: "u3", idempotencyKey: "last-unit" };
    const settled = await Promise.allSettled(Array.from({ length: 10 }, () => enqueue(t, request)));
    const outcomes = settled.map((s) => (s.status === "fulfilled" ? "ok" : status[(s.reason as { code: number }).code]));
    expect(outcomes).toEqual(Array(10).fill("ok"));
    const ids = new Set(settled.flatMap((s) => (s.status === "fulfilled" ? [(s.value as EnqueueResponse).action.id] : [])));
    expect(ids.size).toBe(1);
    expect(await countBy(createdBy)).toBe(3);
  });
});
