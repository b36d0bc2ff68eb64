// Handoff at enqueue: when a claim stream of this server waits for work
// that a new action matches, the enqueue's own statement writes the action
// already claimed for that stream, with its claim event, and the claim is
// pushed after the commit. Only when the action could be claimed at once
// and nothing the stream accepts is ready before it; otherwise the action
// is written as usual and reaches streams through a claim statement.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, closeWithin, startTestServer } from "./support/harness.js";
import { type ClaimStreamMessage, type GrpcStream, cancelAfterEach, claimsOf, eventsOf, nthClaim, openClaimStream, waitingFor } from "./support/streams.js";
import { sleep } from "./support/wait.js";
import type { WireAction, WireClaim } from "./support/wire.js";

let t: TestServer;
const track = cancelAfterEach();

beforeAll(async () => {
  // No backstop poll: it would wake waiting streams to look again, and an
  // enqueue in that moment is, rightly, not handed off.
  t = await startTestServer({ ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600", ACTIONQ_ACK_TIMEOUT_SECONDS: "30", ACTIONQ_POLL_INTERVAL_SECONDS: "3600" });
});
afterAll(async () => {
  await closeWithin(t);
});

const enqueue = (request: Record<string, unknown>) =>
  t.grpc.unary<{ action: WireAction }>("EnqueueAction", { createdBy: "human:ann", ...request }).then((response) => response.action);

/** A stream that has looked and found nothing: it waits for work. */
async function waitingStream(request: { worker: string } & Record<string, unknown>, server = t): Promise<GrpcStream<ClaimStreamMessage>> {
  const stream = track(openClaimStream(server, request));
  await stream.until("the first heartbeat", () => stream.received.length > 0);
  // Its first claim statement runs once it has adopted what it holds, and
  // finds the queue empty; on a loaded machine that takes a while.
  await waitingFor(server, request.worker);
  return stream;
}

const handedOff = async (id: string) => (await eventsOf(t.db, id)).find((event) => event.event_type === "action_claimed")?.payload.handed_off === true;

describe("handoff at enqueue", () => {
  it("writes the action claimed for the waiting stream, with its events in order, and pushes it", async () => {
    const stream = await waitingStream({ worker: "worker:h1", actionTypes: ["handoff_job"], maxInFlight: 2, leaseDuration: { seconds: 60 } });
    const action = await enqueue({ actionType: "handoff_job", targetRef: "node/a" });
    // The producer's answer already says so.
    expect(action).toMatchObject({ status: "ACTION_STATUS_CLAIMED", claimedBy: "worker:h1", attempt: 1 });
    const claim = await nthClaim(stream, 1);
    expect(claim.action).toMatchObject({ id: action.id, status: "ACTION_STATUS_CLAIMED", attempt: 1 });
    expect(claim.ackDeadline).not.toBeNull();
    const events = await eventsOf(t.db, action.id);
    expect(events.map((event) => event.event_type)).toEqual(["action_enqueued", "action_approved", "action_claimed"]);
    expect(events[0]!.payload.status).toBe("approved");
    expect(events[2]).toMatchObject({ actor: "worker:h1", payload: { attempt: 1, streamed: true, handed_off: true, lease_ms: 60_000 } });
    // It is an ordinary claim from here on.
    await t.grpc.unary("AckClaim", { id: action.id, claimToken: claim.claimToken });
    const done = await t.grpc.unary<{ action: WireAction }>("CompleteAction", { id: action.id, claimToken: claim.claimToken, resultRef: "ok" });
    expect(done.action.status).toBe("ACTION_STATUS_COMPLETED");
  });

  it("hands a batch's most urgent actions to the free slots and leaves the rest to the queue, in order", async () => {
    const stream = await waitingStream({ worker: "worker:h2", actionTypes: ["handoff_batch"], maxInFlight: 1 });
    const { results } = await t.grpc.unary<{ results: { ok: { action: WireAction } }[] }>("EnqueueActions", {
      requests: [
        { actionType: "handoff_batch", priority: 5, createdBy: "human:ann", targetRef: "later" },
        { actionType: "handoff_batch", priority: 1, createdBy: "human:ann", targetRef: "urgent" },
      ],
    });
    const [later, urgent] = results.map((result) => result.ok.action);
    expect(urgent!.status).toBe("ACTION_STATUS_CLAIMED");
    expect(later!.status).toBe("ACTION_STATUS_APPROVED");
    const first = await nthClaim(stream, 1);
    expect(first.action.id).toBe(urgent!.id);
    // The slot frees: the other comes through the queue, not handed off.
    await t.grpc.unary("CompleteAction", { id: first.action.id, claimToken: first.claimToken, resultRef: "ok" });
    const second = await nthClaim(stream, 2);
    expect(second.action.id).toBe(later!.id);
    expect(await handedOff(later!.id)).toBe(false);
  });

  it("does not overtake a ready action the stream accepts; one it does not accept, or a less urgent one, does not hold it back", async () => {
    // A ready action that no stream takes now: its project is paused.
    await t.grpc.unary("PauseClaims", { scope: { kind: "PAUSE_KIND_PROJECT", value: "held" }, actor: "human:ops", reason: "test: keep it waiting" });
    try {
      const waiting = await enqueue({ actionType: "handoff_order", project: "held", priority: 3 });
      expect(waiting.status).toBe("ACTION_STATUS_APPROVED");
      const stream = await waitingStream({ worker: "worker:h3", actionTypes: ["handoff_order"], maxInFlight: 4 });
      // Same priority, newer: it comes after the waiting one, so it is not
      // handed off (the check does not look into why the older one waits).
      const same = await enqueue({ actionType: "handoff_order", project: "free", priority: 3 });
      expect(same.status).toBe("ACTION_STATUS_APPROVED");
      await nthClaim(stream, 1);
      expect(claimsOf(stream)[0]!.action.id).toBe(same.id);
      expect(await handedOff(same.id)).toBe(false);
      // More urgent than the waiting one: handed off, once the stream has
      // looked again after its claim and found nothing it may take.
      await waitingFor(t, "worker:h3");
      const urgent = await enqueue({ actionType: "handoff_order", project: "free", priority: 1 });
      expect(urgent.status).toBe("ACTION_STATUS_CLAIMED");
      expect(await handedOff(urgent.id)).toBe(true);
      // A stream that does not take the waiting one's type is not held back.
      const other = await waitingStream({ worker: "worker:h4", actionTypes: ["handoff_other"], maxInFlight: 1 });
      const elsewhere = await enqueue({ actionType: "handoff_other", project: "free", priority: 9 });
      expect(elsewhere).toMatchObject({ status: "ACTION_STATUS_CLAIMED", claimedBy: "worker:h4" });
      await nthClaim(other, 1);
    } finally {
      await t.grpc.unary("ResumeClaims", { scope: { kind: "PAUSE_KIND_PROJECT", value: "held" }, actor: "human:ops", reason: "done" });
    }
  });

  it("writes an action as usual when it cannot be claimed at once: pending approval, due later, paused, keyed, or no free slot", async () => {
    const stream = await waitingStream({ worker: "worker:h5", actionTypes: ["handoff_not"], maxInFlight: 1 });
    const pending = await enqueue({ actionType: "handoff_not", riskLevel: "RISK_LEVEL_GUARDED" });
    expect(pending.status).toBe("ACTION_STATUS_PENDING");
    const later = await enqueue({ actionType: "handoff_not", runAfter: { seconds: String(Math.floor(Date.now() / 1000) + 3600) } });
    expect(later.status).toBe("ACTION_STATUS_APPROVED");
    await t.grpc.unary("PauseClaims", { scope: { kind: "PAUSE_KIND_ACTION_TYPE", value: "handoff_not" }, actor: "human:ops", reason: "test" });
    const paused = await enqueue({ actionType: "handoff_not" });
    expect(paused.status).toBe("ACTION_STATUS_APPROVED");
    await sleep(300);
    expect(claimsOf(stream)).toEqual([]);
    await t.grpc.unary("ResumeClaims", { scope: { kind: "PAUSE_KIND_ACTION_TYPE", value: "handoff_not" }, actor: "human:ops", reason: "done" });
    // The resume wakes the stream, which claims the paused one the usual way.
    const claim = await nthClaim(stream, 1);
    expect(claim.action.id).toBe(paused.id);
    expect(await handedOff(paused.id)).toBe(false);
    // Its only slot is taken: nothing more is handed to it.
    const full = await enqueue({ actionType: "handoff_not" });
    expect(full.status).toBe("ACTION_STATUS_APPROVED");
    await t.grpc.unary("CompleteAction", { id: claim.action.id, claimToken: claim.claimToken, resultRef: "ok" });
    const next: WireClaim = await nthClaim(stream, 2);
    expect(next.action.id).toBe(full.id);
    await t.grpc.unary("CompleteAction", { id: next.action.id, claimToken: next.claimToken, resultRef: "ok" });

    const keyedStream = await waitingStream({ worker: "worker:h6", actionTypes: ["handoff_keyed"], maxInFlight: 1 });
    const keyed = await enqueue({ actionType: "handoff_keyed", concurrencyKey: "node/x" });
    expect(keyed.status).toBe("ACTION_STATUS_APPROVED");
    await nthClaim(keyedStream, 1);
    expect(await handedOff(keyed.id)).toBe(false);
  });

  it("goes back to the queue when its stream is gone before the push", async () => {
    const stream = await waitingStream({ worker: "worker:h7", actionTypes: ["handoff_gone"], maxInFlight: 1 });
    // The stream is cancelled while the enqueue is on its way: either the
    // handoff sees it gone, or the claim is released at once.
    const [action] = await Promise.all([enqueue({ actionType: "handoff_gone" }), stream.cancel()]);
    for (let i = 0; i < 50; i++) {
      const { rows } = await t.db.query("SELECT status FROM actions WHERE id = $1", [action!.id]);
      if (rows[0].status === "approved") break;
      await sleep(50);
    }
    const { rows } = await t.db.query("SELECT status, claimed_by FROM actions WHERE id = $1", [action!.id]);
    expect(rows[0]).toEqual({ status: "approved", claimed_by: null });
  });
});

describe("two servers on one schema", () => {
  let a: TestServer;
  let b: TestServer;
  beforeAll(async () => {
    a = await startTestServer({ ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600", ACTIONQ_ACK_TIMEOUT_SECONDS: "30" });
    b = await startTestServer({ ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600", ACTIONQ_ACK_TIMEOUT_SECONDS: "30" }, a.schema);
  });
  afterAll(async () => {
    // b first: a's close drops the shared schema.
    await closeWithin(b);
    await closeWithin(a);
  });

  it("handoffs race claim statements on both servers: every action is claimed once, in no stream beyond max_in_flight", { timeout: 60_000 }, async () => {
    const total = 400;
    const maxInFlight = 3;
    const failures: string[] = [];
    let completed = 0;
    const workers = [
      { t: a, name: "race-a0" },
      { t: a, name: "race-a1" },
      { t: b, name: "race-b0" },
      { t: b, name: "race-b1" },
    ];
    const tokens = new Set<string>();
    for (const { t: server, name } of workers) {
      const opened = track(openClaimStream(server, { worker: name, actionTypes: ["race_job"], maxInFlight }));
      let holding = 0;
      opened.call.on("data", (message: ClaimStreamMessage) => {
        if (message.kind !== "claim") return;
        const { claim } = message;
        if (tokens.has(claim.claimToken)) failures.push(`token of action ${claim.action.id} delivered twice`);
        tokens.add(claim.claimToken);
        if (++holding > maxInFlight) failures.push(`${name} held ${holding} claims`);
        // Finish a little later, through either server, so that streams
        // are sometimes full and sometimes waiting when actions arrive.
        const via = Number(claim.action.id) % 2 === 0 ? a : b;
        setTimeout(() => {
          holding--;
          via.grpc.unary("CompleteAction", { id: claim.action.id, claimToken: claim.claimToken, resultRef: name }).then(
            () => completed++,
            (error: Error) => failures.push(`${name} on action ${claim.action.id}: ${error.message}`),
          );
        }, Number(claim.action.id) % 7);
      });
      await opened.until("the first heartbeat", () => opened.received.length > 0);
    }
    await Promise.all([waitingFor(a, "race-a0", "race-a1"), waitingFor(b, "race-b0", "race-b1")]);
    // Producers on both servers, with mixed priorities, in small waves.
    for (let wave = 0; wave < total / 16; wave++) {
      await Promise.all(
        Array.from({ length: 16 }, (_, i) =>
          (i % 2 === 0 ? a : b).grpc.unary("EnqueueAction", { actionType: "race_job", priority: (wave * 16 + i) % 4, createdBy: "human:ann" }),
        ),
      );
      await sleep(20);
    }
    const deadline = Date.now() + 30_000;
    while (completed + failures.length < total && Date.now() < deadline) await sleep(50);
    expect(failures).toEqual([]);
    expect(completed).toBe(total);
    const { rows } = await a.db.query<{ claims: number; handed: number; releases: number; completions: number; actions: number }>(`
      SELECT count(DISTINCT e.action_id)::int AS actions,
        count(*) FILTER (WHERE e.event_type = 'action_claimed')::int AS claims,
        count(*) FILTER (WHERE e.event_type = 'action_claimed' AND e.payload->>'handed_off' = 'true')::int AS handed,
        count(*) FILTER (WHERE e.event_type IN ('claim_released', 'claim_timed_out'))::int AS releases,
        count(*) FILTER (WHERE e.event_type = 'action_completed')::int AS completions
      FROM events e JOIN actions x ON x.id = e.action_id WHERE x.action_type = 'race_job'`);
    expect(rows[0]).toMatchObject({ actions: total, claims: total, releases: 0, completions: total });
    console.info(`handoff race: ${rows[0]!.handed} of ${total} actions handed off at enqueue, the rest claimed by claim statements`);
    expect(rows[0]!.handed).toBeGreaterThan(0);
    expect(rows[0]!.handed).toBeLessThan(total);
  });
});

describe("handoff off (ACTIONQ_HANDOFF=off)", () => {
  let off: TestServer;
  beforeAll(async () => {
    off = await startTestServer({ ACTIONQ_HANDOFF: "off" });
  });
  afterAll(async () => {
    await closeWithin(off);
  });

  it("leaves every claim to claim statements", async () => {
    const stream = await waitingStream({ worker: "worker:off", actionTypes: ["off_job"], maxInFlight: 1 }, off);
    const { action } = await off.grpc.unary<{ action: WireAction }>("EnqueueAction", { actionType: "off_job", createdBy: "human:ann" });
    expect(action.status).toBe("ACTION_STATUS_APPROVED");
    const claim = await nthClaim(stream, 1);
    expect(claim.action.id).toBe(action.id);
    expect((await eventsOf(off.db, action.id)).find((event) => event.event_type === "action_claimed")?.payload.handed_off).toBeUndefined();
  });
});
