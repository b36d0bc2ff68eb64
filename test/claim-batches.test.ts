// Claims in batches (StreamClaimsRequest.max_batch): a worker that asks gets
// every claim the server has for it at that moment in one ClaimBatch
// message, and finishes them together with CompleteActions. Each claim in a
// batch is still its own: its own token, acknowledgement deadline and
// release. A worker that does not ask gets one `claim` per message, as
// before.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import { type TestServer, closeWithin, startTestServer } from "./support/harness.js";
import { ConnectStream, type GrpcStream, actionRow, cancelAfterEach, eventsOf, inParallel, openClaimStream } from "./support/streams.js";
import { type WireClaim, errorInfoOf, streamError } from "./support/wire.js";

type BatchMessage = { kind: "claims"; claims: { claims: WireClaim[] } } | { kind: "claim"; claim: WireClaim } | { kind: string };

const batchesOf = (stream: GrpcStream<BatchMessage>) =>
  stream.received.flatMap((message) => (message.kind === "claims" ? [(message as { claims: { claims: WireClaim[] } }).claims.claims] : []));
const claimCount = (stream: GrpcStream<BatchMessage>) => batchesOf(stream).reduce((sum, batch) => sum + batch.length, 0);

let t: TestServer;
const track = cancelAfterEach();

beforeAll(async () => {
  t = await startTestServer({
    ACTIONQ_ACK_TIMEOUT_SECONDS: "1",
    ACTIONQ_MAX_IN_FLIGHT: "200",
    ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600",
  });
});
afterAll(async () => {
  await closeWithin(t);
});

/** Enqueues SAFE actions of one type through EnqueueActions, `priorities`
 * giving each one's priority; returns their ids in that order. */
async function enqueueBatch(actionType: string, priorities: number[]): Promise<string[]> {
  const ids: string[] = [];
  for (let start = 0; start < priorities.length; start += 500) {
    const requests = priorities.slice(start, start + 500).map((priority) => ({ actionType, priority, createdBy: "human:tester" }));
    const { results } = await t.grpc.unary<{ results: { ok: { action: { id: string } } }[] }>("EnqueueActions", { requests });
    ids.push(...results.map((result) => result.ok.action.id));
  }
  return ids;
}

function openBatched(request: Record<string, unknown>): GrpcStream<BatchMessage> {
  return track(openClaimStream(t, request) as unknown as GrpcStream<BatchMessage>);
}

async function completeAll(claims: WireClaim[]): Promise<string[]> {
  const { results } = await t.grpc.unary<{ results: { action?: { status: string }; error?: unknown }[] }>("CompleteActions", {
    requests: claims.map((claim) => ({ id: claim.action.id, claimToken: claim.claimToken, resultRef: "batched" })),
  });
  return results.map((result) => result.action?.status ?? "error");
}

describe("StreamClaims with max_batch", () => {
  it("sends the claims it has in batches of at most max_batch, most urgent first, and a batch completed together brings the next batch in one message", async () => {
    // 250 waiting: priorities cycle 0..4, so order within batches is testable.
    const priorities = Array.from({ length: 250 }, (_, i) => i % 5);
    const ids = await enqueueBatch("batched_job", priorities);
    const stream = openBatched({ worker: "worker:batched", actionTypes: ["batched_job"], maxInFlight: 100, maxBatch: 100 });

    await stream.until("the first 100 claims", () => claimCount(stream) >= 100);
    expect(
      stream.received.some((message) => message.kind === "claim"),
      "a batched worker never gets a bare claim",
    ).toBe(false);
    const first = batchesOf(stream);
    // One claim statement filled all 100 slots; they come as one message.
    expect(first.map((batch) => batch.length)).toEqual([100]);
    const claimed = first[0]!;
    expect(new Set(claimed.map((claim) => claim.claimToken)).size, "every claim has its own token").toBe(100);
    expect(claimed.every((claim) => claim.ackDeadline !== null)).toBe(true);
    // Most urgent (lowest priority) first, then oldest: the 50 of priority
    // 0, then the 50 of priority 1.
    const expected = ids
      .map((id, index) => ({ id, priority: priorities[index]! }))
      .sort((a, b) => a.priority - b.priority || Number(BigInt(a.id) - BigInt(b.id)));
    expect(claimed.map((claim) => claim.action.id)).toEqual(expected.slice(0, 100).map((item) => item.id));

    // Completing the whole batch at once frees 100 slots in one commit; the
    // next claims come in one statement and one message, not 1 then 99.
    expect(await completeAll(claimed)).toEqual(Array(100).fill("ACTION_STATUS_COMPLETED"));
    await stream.until("the next 100 claims", () => claimCount(stream) >= 200);
    expect(batchesOf(stream).map((batch) => batch.length)).toEqual([100, 100]);
    expect(await completeAll(batchesOf(stream)[1]!)).toEqual(Array(100).fill("ACTION_STATUS_COMPLETED"));

    // Less work than room: the last 50 in one batch, then nothing.
    await stream.until("the last 50 claims", () => claimCount(stream) >= 250);
    expect(batchesOf(stream).map((batch) => batch.length)).toEqual([100, 100, 50]);
    expect(await completeAll(batchesOf(stream)[2]!)).toEqual(Array(50).fill("ACTION_STATUS_COMPLETED"));
    const delivered = batchesOf(stream)
      .flat()
      .map((claim) => claim.action.id);
    expect(new Set(delivered).size).toBe(250);
    expect([...delivered].sort()).toEqual([...ids].sort());
  });

  it("splits what it has into batches of max_batch when max_in_flight allows more", async () => {
    await enqueueBatch("split_job", Array(90).fill(0));
    const stream = openBatched({ worker: "worker:split", actionTypes: ["split_job"], maxInFlight: 90, maxBatch: 40 });
    await stream.until("90 claims", () => claimCount(stream) >= 90);
    expect(batchesOf(stream).map((batch) => batch.length)).toEqual([40, 40, 10]);
    expect(await completeAll(batchesOf(stream).flat())).toEqual(Array(90).fill("ACTION_STATUS_COMPLETED"));
  });

  it("sends a claim that arrives while the worker waits at once, as a batch of one, without waiting to fill the batch", async () => {
    const stream = openBatched({ worker: "worker:waiting", actionTypes: ["lone_job"], maxInFlight: 10, maxBatch: 10 });
    await stream.until("the stream's first heartbeat", () => stream.received.length > 0);
    const [id] = await enqueueBatch("lone_job", [0]);
    // Nine more never come: a stream that waited to fill the batch would
    // still be waiting when this gives up.
    await stream.until("the claim", () => claimCount(stream) >= 1);
    expect(batchesOf(stream).map((batch) => batch.map((claim) => claim.action.id))).toEqual([[id]]);
    expect(await completeAll(batchesOf(stream)[0]!)).toEqual(["ACTION_STATUS_COMPLETED"]);
  });

  it("keeps each claim of a batch on its own: one acknowledged stays, the others go back when their deadline passes", async () => {
    const ids = await enqueueBatch("ack_job", [0, 0, 0]);
    const stream = openBatched({ worker: "worker:acker", actionTypes: ["ack_job"], maxInFlight: 3, maxBatch: 3 });
    await stream.until("3 claims", () => claimCount(stream) >= 3);
    const [kept, ...dropped] = batchesOf(stream)[0]!;
    await t.grpc.unary("AckClaim", { id: kept!.action.id, claimToken: kept!.claimToken });
    // The others are not acknowledged within ACTIONQ_ACK_TIMEOUT_SECONDS (1 s)
    // and go back to the queue, each on its own deadline, then come again
    // on this stream with new tokens.
    await stream.until("the two released claims again", () => claimCount(stream) >= 5);
    const again = batchesOf(stream).slice(1).flat();
    expect(again.map((claim) => claim.action.id).sort()).toEqual(dropped.map((claim) => claim.action.id).sort());
    expect(again.map((claim) => claim.action.attempt)).toEqual([2, 2]);
    expect(again.map((claim) => claim.claimToken)).not.toContain(dropped[0]!.claimToken);
    for (const claim of dropped) expect((await eventsOf(t.db, claim.action.id)).map((event) => event.event_type)).toContain("claim_released");
    expect(await actionRow(t.db, kept!.action.id)).toMatchObject({ status: "claimed", acked: true, claim_token: kept!.claimToken });
    // A stale token from the first batch no longer completes.
    const stale = await t.grpc.unary<{ results: { error?: { reason: string } }[] }>("CompleteActions", {
      requests: dropped.map((claim) => ({ id: claim.action.id, claimToken: claim.claimToken })),
    });
    expect(stale.results.map((result) => result.error?.reason)).toEqual(["CLAIM_TOKEN_MISMATCH", "CLAIM_TOKEN_MISMATCH"]);
    expect(await completeAll([kept!, ...again])).toEqual(Array(3).fill("ACTION_STATUS_COMPLETED"));
    expect(ids).toHaveLength(3);
  });

  it("releases a whole unacknowledged batch at once when the stream closes", async () => {
    const ids = await enqueueBatch("closed_job", [0, 0, 0, 0]);
    const stream = openBatched({ worker: "worker:closer", actionTypes: ["closed_job"], maxInFlight: 4, maxBatch: 4 });
    await stream.until("4 claims", () => claimCount(stream) >= 4);
    await stream.cancel();
    await inParallel(ids, 4, async (id) => {
      for (let i = 0; i < 50 && (await actionRow(t.db, id)).status !== "approved"; i++) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(await actionRow(t.db, id)).toMatchObject({ status: "approved", claimed_by: null });
    });
  });

  it("works through the generated Connect client: batches arrive as `claims` and complete with CompleteActions", async () => {
    await enqueueBatch("connect_job", Array(30).fill(0));
    const stream = track(
      new ConnectStream((signal) =>
        t.client.streamClaims({ worker: "worker:connect", actionTypes: ["connect_job"], maxInFlight: 30, maxBatch: 30 }, { signal }),
      ),
    );
    await stream.until("a batch of 30", () => stream.received.some((message) => message.kind.case === "claims" && message.kind.value.claims.length === 30));
    const batch = stream.received.find((message) => message.kind.case === "claims")!;
    if (batch.kind.case !== "claims") throw new Error("unreachable");
    const { results } = await t.client.completeActions({
      requests: batch.kind.value.claims.map((claim) => ({ id: claim.action!.id, claimToken: claim.claimToken })),
    });
    expect(results.map((result) => result.result.case)).toEqual(Array(30).fill("action"));
  });

  it("without max_batch sends one claim per message, as before", async () => {
    await enqueueBatch("plain_job", [0, 0, 0, 0, 0]);
    const stream = openBatched({ worker: "worker:plain", actionTypes: ["plain_job"], maxInFlight: 5 });
    await stream.until("5 claims", () => stream.received.filter((message) => message.kind === "claim").length >= 5);
    expect(stream.received.filter((message) => message.kind === "claims")).toEqual([]);
  });

  it("refuses a negative max_batch, or one above ACTIONQ_MAX_IN_FLIGHT, naming the field and changing nothing", async () => {
    const [waiting] = await enqueueBatch("refused_job", [0]);
    // The rows and events of this action only: streams of the tests before
    // may still be releasing their claims elsewhere in the table.
    const state = async () => JSON.stringify([await actionRow(t.db, waiting!), (await eventsOf(t.db, waiting!)).map((event) => event.event_type)]);
    for (const [maxBatch, problem] of [
      [-1, "must not be negative"],
      [201, "must be at most 200 (ACTIONQ_MAX_IN_FLIGHT)"],
    ] as const) {
      const before = await state();
      const error = await streamError(t.grpc.stream("StreamClaims", { worker: "worker:refused", actionTypes: ["refused_job"], maxBatch }));
      expect(await state(), "a refused stream claims nothing").toBe(before);
      expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(error.details).toBe(`max_batch: ${problem}`);
      expect(errorInfoOf(error)).toMatchObject({ reason: "INVALID_FIELD", metadata: { field: "max_batch" } });
    }
  });
});
