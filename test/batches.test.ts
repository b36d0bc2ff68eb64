// Batches and group commit: EnqueueActions and CompleteActions answer each
// item as the single call would (a refused item writes nothing and does not
// stop the others), and concurrent single calls that share a statement
// still get their own answers, their own events and nothing twice.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, closeWithin, snapshot, startTestServer } from "./support/harness.js";
import type { WireAction, WireClaim } from "./support/wire.js";

interface ItemError {
  code: number;
  message: string;
  reason: string;
  metadata: Record<string, string>;
}
type EnqueueResult = { result: "ok"; ok: { action: WireAction; created: boolean } } | { result: "error"; error: ItemError };
type CompleteResult = { result: "action"; action: WireAction } | { result: "error"; error: ItemError };

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600", ACTIONQ_POOL_SIZE: "4" });
});
afterAll(async () => {
  await closeWithin(t);
});

const eventCount = async (type: string, ids: string[]) =>
  Number((await t.db.query("SELECT count(*) FROM events WHERE event_type = $1 AND action_id = ANY($2::bigint[])", [type, ids])).rows[0].count);

async function claim(project: string): Promise<WireClaim> {
  const res = await t.grpc.unary<{ claim?: WireClaim }>("ClaimAction", { worker: "worker:batch", projects: [project] });
  if (!res.claim) throw new Error(`nothing to claim in ${project}`);
  return res.claim;
}

describe("EnqueueActions", () => {
  it("creates the valid items in order and answers each refused one with the single call's error, naming the item", async () => {
    const res = await t.grpc.unary<{ results: EnqueueResult[] }>("EnqueueActions", {
      requests: [
        { actionType: "batch_job", project: "b1", createdBy: "human:ann" },
        { actionType: "", project: "b1", createdBy: "human:ann" },
        { actionType: "batch_job", project: "b1", createdBy: "human:ann", riskLevel: "RISK_LEVEL_GUARDED" },
        { actionType: "batch_job", project: "b1", createdBy: "human:ann", parentId: "999999999" },
      ],
    });
    expect(res.results.map((r) => r.result)).toEqual(["ok", "error", "ok", "error"]);
    const [first, bad, guarded, orphan] = res.results as [
      Extract<EnqueueResult, { result: "ok" }>,
      Extract<EnqueueResult, { result: "error" }>,
      Extract<EnqueueResult, { result: "ok" }>,
      Extract<EnqueueResult, { result: "error" }>,
    ];
    expect(first.ok.action.status).toBe("ACTION_STATUS_APPROVED");
    expect(guarded.ok.action.status).toBe("ACTION_STATUS_PENDING");
    expect(BigInt(guarded.ok.action.id)).toBeGreaterThan(BigInt(first.ok.action.id));
    expect(bad.error).toMatchObject({ code: 3, reason: "INVALID_FIELD", metadata: { field: "requests[1].action_type" } });
    expect(orphan.error).toMatchObject({ code: 5, reason: "PARENT_NOT_FOUND", metadata: { field: "requests[3].parent_id" } });
    expect(await eventCount("action_enqueued", [first.ok.action.id, guarded.ok.action.id])).toBe(2);
  });

  it("answers a repeated idempotency key inside one batch with the first action", async () => {
    const request = { actionType: "batch_job", project: "b2", createdBy: "human:ann", idempotencyKey: "same" };
    const res = await t.grpc.unary<{ results: EnqueueResult[] }>("EnqueueActions", { requests: [request, request] });
    const [a, b] = res.results as Extract<EnqueueResult, { result: "ok" }>[];
    expect(a!.ok.created).toBe(true);
    expect(b!.ok.created).toBe(false);
    expect(b!.ok.action.id).toBe(a!.ok.action.id);
  });

  it("refuses more than 1000 items as a whole, writing nothing", async () => {
    const before = await snapshot(t.db);
    const requests = Array.from({ length: 1001 }, () => ({ actionType: "batch_job", createdBy: "human:ann" }));
    await expect(t.grpc.unary("EnqueueActions", { requests })).rejects.toMatchObject({ code: 3 });
    expect(await snapshot(t.db)).toBe(before);
  });
});

describe("CompleteActions", () => {
  it("completes every claim it can, and answers a stale token or an unknown id for that item alone", async () => {
    await t.grpc.unary("EnqueueActions", {
      requests: [1, 2, 3].map((n) => ({ actionType: "batch_job", project: "b3", node: `n${n}`, createdBy: "human:ann" })),
    });
    const claims = [await claim("b3"), await claim("b3"), await claim("b3")];
    const res = await t.grpc.unary<{ results: CompleteResult[] }>("CompleteActions", {
      requests: [
        { id: claims[0]!.action.id, claimToken: claims[0]!.claimToken, resultRef: "r0" },
        { id: claims[1]!.action.id, claimToken: "00000000-0000-4000-8000-000000000000", resultRef: "r1" },
        { id: claims[2]!.action.id, claimToken: claims[2]!.claimToken, resultRef: "r2" },
        { id: "999999999", claimToken: claims[2]!.claimToken, resultRef: "r3" },
      ],
    });
    expect(res.results.map((r) => r.result)).toEqual(["action", "error", "action", "error"]);
    expect((res.results[1] as Extract<CompleteResult, { result: "error" }>).error).toMatchObject({ code: 9, reason: "CLAIM_TOKEN_MISMATCH" });
    expect((res.results[3] as Extract<CompleteResult, { result: "error" }>).error).toMatchObject({ code: 5, reason: "ACTION_NOT_FOUND" });
    expect(
      await eventCount(
        "action_completed",
        claims.map((c) => c.action.id),
      ),
    ).toBe(2);
    // Repeating the batch answers the completed items again and writes nothing.
    const again = await t.grpc.unary<{ results: CompleteResult[] }>("CompleteActions", {
      requests: [{ id: claims[0]!.action.id, claimToken: claims[0]!.claimToken, resultRef: "r0" }],
    });
    expect(again.results[0]!.result).toBe("action");
    expect(
      await eventCount(
        "action_completed",
        claims.map((c) => c.action.id),
      ),
    ).toBe(2);
  });
});

describe("a stale claim token sharing a statement with the current one", () => {
  // Concurrent callers share statements, and one statement changes an id
  // once: the other items for that id are answered from the row it left.
  // Such an item is a repeat only if it is the same call (its own token and
  // result), never because another item of the statement succeeded.
  it("is refused, while the current token completes", async () => {
    await t.grpc.unary("EnqueueAction", { actionType: "batch_job", project: "b4", createdBy: "human:ann", maxAttempts: 2 });
    const first = await claim("b4");
    await t.grpc.unary("FailAction", { id: first.action.id, claimToken: first.claimToken, reason: "try again", retryable: true, retryDelay: { seconds: 0 } });
    // The retry is due at once; the scheduler makes it claimable.
    let current: WireClaim | undefined;
    for (let i = 0; i < 50 && !current; i++) {
      current = (await t.grpc.unary<{ claim?: WireClaim }>("ClaimAction", { worker: "worker:batch", projects: ["b4"] })).claim ?? undefined;
      if (!current) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    if (!current) throw new Error("the retried action never came back");
    expect(current.action.id).toBe(first.action.id);
    expect(current.claimToken).not.toBe(first.claimToken);
    const res = await t.grpc.unary<{ results: CompleteResult[] }>("CompleteActions", {
      requests: [
        { id: current.action.id, claimToken: current.claimToken, resultRef: "same" },
        { id: first.action.id, claimToken: first.claimToken, resultRef: "same" },
        { id: current.action.id, claimToken: current.claimToken, resultRef: "same" },
      ],
    });
    expect(res.results.map((r) => r.result)).toEqual(["action", "error", "action"]);
    expect((res.results[1] as Extract<CompleteResult, { result: "error" }>).error).toMatchObject({
      code: 9,
      reason: "INVALID_TRANSITION",
      metadata: { current_status: "COMPLETED" },
    });
    expect(await eventCount("action_completed", [current.action.id])).toBe(1);
  });
});

describe("group commit of single calls", () => {
  it("400 concurrent EnqueueAction and CompleteAction calls each get their own answer, once", async () => {
    const n = 400;
    const enqueued = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        t.grpc.unary<{ action: WireAction }>("EnqueueAction", { actionType: "gc_job", project: "gc", node: `n${i}`, createdBy: "human:ann" }),
      ),
    );
    const ids = enqueued.map((r) => r.action.id);
    expect(new Set(ids).size).toBe(n);
    // Each caller got the action it asked for, not a neighbour's.
    for (const [i, r] of enqueued.entries()) expect(r.action.node).toBe(`n${i}`);
    const claims: WireClaim[] = [];
    for (let i = 0; i < n; i++) claims.push(await claim("gc"));
    const completed = await Promise.all(
      claims.map((c) =>
        t.grpc.unary<{ action: WireAction }>("CompleteAction", { id: c.action.id, claimToken: c.claimToken, resultRef: `done:${c.action.id}` }),
      ),
    );
    completed.forEach((r, i) => {
      expect(r.action.id).toBe(claims[i]!.action.id);
      expect(r.action.status).toBe("ACTION_STATUS_COMPLETED");
    });
    expect(await eventCount("action_completed", ids)).toBe(n);
    expect(await eventCount("action_enqueued", ids)).toBe(n);
  });
});
