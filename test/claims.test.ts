// StreamClaims and leases, driven through the real server over the network:
// races between workers, max_in_flight, acknowledgements, releases on close,
// ack timeouts, sweeps, filters, wakeups, several replicas and shutdown.
import { status as GrpcCode } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, closeWithin, grpcError, snapshot, startTestServer } from "./support/harness.js";
import {
  type ClaimStreamMessage,
  actionRow,
  cancelAfterEach,
  claimsOf,
  enqueueMany,
  eventsOf,
  isClaim,
  isHeartbeat,
  nthClaim,
  openClaimStream,
  openOnServer,
  waitingFor,
} from "./support/streams.js";
import { eventually, sleep } from "./support/wait.js";
import type { WireClaim } from "./support/wire.js";

const track = cancelAfterEach();
const stream = (t: TestServer, request: Record<string, unknown>) => track(openClaimStream(t, request));

interface ActionResponse {
  action: { id: string; status: string; attempt: number; claimedBy: string; claimAcked: boolean };
}
interface ClaimResponse {
  claim: WireClaim | null;
}

const ack = (t: TestServer, claim: WireClaim) => t.grpc.unary<ActionResponse>("AckClaim", { id: claim.action.id, claimToken: claim.claimToken });
const complete = (t: TestServer, claim: WireClaim, resultRef = "done") =>
  t.grpc.unary<ActionResponse>("CompleteAction", { id: claim.action.id, claimToken: claim.claimToken, resultRef });

describe("StreamClaims on one server", () => {
  let t: TestServer;
  beforeAll(async () => {
    // An hour's backstop poll: every delivery in this block must come from a
    // notification, so the bounds below can be generous and still prove it.
    // No background sweeper: tests sweep when they mean to.
    t = await startTestServer({
      ACTIONQ_HEARTBEAT_SECONDS: "0.2",
      ACTIONQ_POLL_INTERVAL_SECONDS: "3600",
      ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600",
    });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("opens with a heartbeat and keeps sending heartbeats while idle", async () => {
    const idle = stream(t, { worker: "idle-worker", actionTypes: ["never_enqueued"], maxInFlight: 1 });
    await idle.atLeast(1, () => true, "first message");
    expect(idle.received[0]!.kind).toBe("heartbeat");
    const started = Date.now();
    // 0.2 s heartbeats: four more within 5 s, which the 10 s default could not send.
    await idle.atLeast(5, isHeartbeat, "heartbeats", 5000);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(idle.received.every(isHeartbeat)).toBe(true);
  });

  it("holds no more than max_in_flight claims, and sends the next one as soon as one is completed", async () => {
    const ids = await enqueueMany(t, "mif_job", 5);
    const worker = stream(t, { worker: "mif-worker", actionTypes: ["mif_job"], maxInFlight: 2 });
    const [first, second] = [await nthClaim(worker, 1), await nthClaim(worker, 2)];
    await Promise.all([ack(t, first), ack(t, second)]);
    // Oldest first, and nothing beyond the two slots however long we wait.
    await sleep(600);
    expect(claimsOf(worker).map((claim) => claim.action.id)).toEqual([ids[0], ids[1]]);

    await complete(t, first);
    const freed = Date.now();
    // Within seconds: the completion's wakeup, not the hourly backstop poll.
    const third = await nthClaim(worker, 3, 5000);
    expect(Date.now() - freed).toBeLessThan(5000);
    expect(third.action.id).toBe(ids[2]);
    await sleep(400);
    expect(claimsOf(worker)).toHaveLength(3);
  });

  it("releases unacknowledged claims at once when the stream closes, and keeps acknowledged ones with the worker", async () => {
    const [acked, unacked] = await enqueueMany(t, "close_job", 2);
    const first = stream(t, { worker: "closing-worker", actionTypes: ["close_job"], maxInFlight: 2 });
    const claims = [await nthClaim(first, 1), await nthClaim(first, 2)];
    const ackedClaim = claims.find((claim) => claim.action.id === acked)!;
    expect(ackedClaim).toBeDefined();
    await ack(t, ackedClaim);

    await first.cancel();
    // Only the close can release it soon: closing stops its ack timer, and no sweeper runs.
    await eventually(async () => (await actionRow(t.db, unacked!)).status === "approved", "the unacknowledged claim back in APPROVED", 5000);
    expect(openOnServer(t).claimStreams).toBe(0);
    const released = (await eventsOf(t.db, unacked!)).at(-1)!;
    expect(released.event_type).toBe("claim_released");
    expect(released.payload.worker).toBe("closing-worker");
    expect(await actionRow(t.db, acked!)).toMatchObject({ status: "claimed", claimed_by: "closing-worker", acked: true, claim_token: ackedClaim.claimToken });

    // Another worker gets the released claim, and only that one.
    const other = stream(t, { worker: "other-worker", actionTypes: ["close_job"], maxInFlight: 2 });
    const takenOver = await nthClaim(other, 1);
    expect(takenOver.action).toMatchObject({ id: unacked, attempt: 2, claimedBy: "other-worker" });
    await ack(t, takenOver);

    // The first worker reconnects and finishes its acknowledged claim with
    // the token it got on the old stream.
    const reconnected = stream(t, { worker: "closing-worker", actionTypes: ["close_job"], maxInFlight: 2 });
    await reconnected.atLeast(1, () => true, "the reconnected stream's first message");
    const done = await complete(t, ackedClaim, "finished-after-reconnect");
    expect(done.action).toMatchObject({ id: acked, status: "ACTION_STATUS_COMPLETED", claimedBy: "closing-worker" });
    await complete(t, takenOver);
    await sleep(300);
    expect(claimsOf(other)).toHaveLength(1);
    expect(claimsOf(reconnected)).toHaveLength(0);
  });

  it("refuses a stale claim token after a sweep requeued the lease and another worker claimed the action", async () => {
    const [id] = await enqueueMany(t, "stale_job");
    const { claim: stale } = await t.grpc.unary<ClaimResponse>("ClaimAction", {
      worker: "stale-worker",
      actionTypes: ["stale_job"],
      leaseDuration: { seconds: 1 },
    });
    expect(stale?.action.id).toBe(id);
    await sleep(1300);
    // No background sweeper on this server: the lease is past but still held.
    expect((await actionRow(t.db, id!)).status).toBe("claimed");

    const swept = await t.client.sweepClaims({ actor: "human:operator" });
    expect(swept.requeuedActions.map((action) => action.id.toString())).toContain(id);
    const timedOut = (await eventsOf(t.db, id!)).at(-1)!;
    expect(timedOut).toMatchObject({ event_type: "claim_timed_out", actor: "human:operator" });
    expect(timedOut.payload.worker).toBe("stale-worker");
    expect((await actionRow(t.db, id!)).status).toBe("approved");

    const { claim: fresh } = await t.grpc.unary<ClaimResponse>("ClaimAction", { worker: "fresh-worker", actionTypes: ["stale_job"] });
    expect(fresh?.action).toMatchObject({ id, attempt: 2, claimedBy: "fresh-worker" });
    expect(fresh!.claimToken).not.toBe(stale!.claimToken);

    const before = await snapshot(t.db);
    const refused = await grpcError(complete(t, stale!, "stale-result"));
    expect(refused.code).toBe(GrpcCode.FAILED_PRECONDITION);
    expect(await snapshot(t.db)).toBe(before);

    const done = await complete(t, fresh!, "fresh-result");
    expect(done.action).toMatchObject({ status: "ACTION_STATUS_COMPLETED", claimedBy: "fresh-worker", attempt: 2 });
  });

  it("delivers to each stream only the action types and projects it filters on", async () => {
    const byType = stream(t, { worker: "type-worker", actionTypes: ["filter_a"], maxInFlight: 10 });
    const byProject = stream(t, { worker: "project-worker", projects: ["proj_y"], maxInFlight: 10 });
    const byBoth = stream(t, { worker: "both-worker", actionTypes: ["filter_c"], projects: ["proj_w"], maxInFlight: 10 });
    await Promise.all([byType, byProject, byBoth].map((opened) => opened.atLeast(1, isHeartbeat, "the opening heartbeat")));

    const typeA = await enqueueMany(t, "filter_a", 3, { project: "proj_x" });
    const projectY = await enqueueMany(t, "filter_b", 3, { project: "proj_y" });
    const unmatched = await enqueueMany(t, "filter_c", 2, { project: "proj_z" });

    await byType.atLeast(3, isClaim, "filter_a claims");
    await byProject.atLeast(3, isClaim, "proj_y claims");
    await sleep(400);
    expect(
      claimsOf(byType)
        .map((claim) => claim.action.id)
        .sort(),
    ).toEqual([...typeA].sort());
    expect(
      claimsOf(byProject)
        .map((claim) => claim.action.id)
        .sort(),
    ).toEqual([...projectY].sort());
    expect(claimsOf(byBoth)).toHaveLength(0);
    for (const id of unmatched) expect((await actionRow(t.db, id)).status).toBe("approved");

    for (const claim of [...claimsOf(byType), ...claimsOf(byProject)]) await complete(t, claim);
    await t.client.cancelAction({ id: BigInt(unmatched[0]!), actor: "human:tester", reason: "cleanup" });
    await t.client.cancelAction({ id: BigInt(unmatched[1]!), actor: "human:tester", reason: "cleanup" });
  });

  it("wakes an idle stream as soon as a matching action is enqueued, without waiting for the backstop poll", async () => {
    const idle = stream(t, { worker: "sleepy-worker", actionTypes: ["wake_job"], maxInFlight: 1 });
    await idle.atLeast(1, isHeartbeat, "the opening heartbeat");
    // Let the stream find nothing and go quiet first.
    await waitingFor(t, "sleepy-worker");
    const enqueued = Date.now();
    const [id] = await enqueueMany(t, "wake_job");
    // Within seconds: the enqueue's wakeup, not the hourly backstop poll.
    const claim = await nthClaim(idle, 1, 5000);
    expect(Date.now() - enqueued).toBeLessThan(5000);
    expect(claim.action.id).toBe(id);
    await complete(t, claim);
  });

  it("frees the stream's slot when its claimed action is cancelled, and the next claim follows", async () => {
    const [first, second] = await enqueueMany(t, "cancel_job", 2);
    const worker = stream(t, { worker: "cancel-worker", actionTypes: ["cancel_job"], maxInFlight: 1 });
    const held = await nthClaim(worker, 1);
    expect(held.action.id).toBe(first);
    await ack(t, held);
    await sleep(300);
    expect(claimsOf(worker)).toHaveLength(1);

    await t.client.cancelAction({ id: BigInt(first!), actor: "human:operator", reason: "not needed" });
    const cancelled = Date.now();
    // Within seconds: the cancel's wakeup, not the hourly backstop poll.
    const next = await nthClaim(worker, 2, 5000);
    expect(Date.now() - cancelled).toBeLessThan(5000);
    expect(next.action.id).toBe(second);
    // The worker's old token no longer works on the cancelled action.
    expect((await grpcError(complete(t, held))).code).toBe(GrpcCode.FAILED_PRECONDITION);
    await complete(t, next);
  });
});

describe("StreamClaims acknowledgement deadline", () => {
  let t: TestServer;
  beforeAll(async () => {
    // No background sweeper: only the delivery deadline itself may release.
    t = await startTestServer({ ACTIONQ_ACK_TIMEOUT_SECONDS: "0.5", ACTIONQ_HEARTBEAT_SECONDS: "0.2", ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600" });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("releases a claim not acknowledged in time (ack_timeout) to another stream, and refuses the first worker's token", async () => {
    const silent = stream(t, { worker: "silent-worker", actionTypes: ["ack_job"], maxInFlight: 1 });
    await silent.atLeast(1, isHeartbeat, "the opening heartbeat");
    const [id] = await enqueueMany(t, "ack_job");
    const ignored = await nthClaim(silent, 1);
    expect(ignored.action.id).toBe(id);

    // A second worker, free and waiting, that acknowledges what it gets.
    const diligent = stream(t, { worker: "diligent-worker", actionTypes: ["ack_job"], maxInFlight: 1 });
    diligent.call.on("data", (message: ClaimStreamMessage) => {
      if (message.kind === "claim") void ack(t, message.claim).catch(() => {});
    });
    await diligent.atLeast(1, isHeartbeat, "the opening heartbeat");

    await eventually(
      async () => (await eventsOf(t.db, id!)).find((event) => event.event_type === "claim_released" && event.payload.reason === "ack_timeout"),
      "a claim_released event with reason ack_timeout",
    );
    expect((await grpcError(ack(t, ignored))).code).toBe(GrpcCode.FAILED_PRECONDITION);
    expect((await grpcError(complete(t, ignored))).code).toBe(GrpcCode.FAILED_PRECONDITION);

    // The silent stream may get it again (and lose it again) first.
    await diligent.atLeast(1, isClaim, "the released claim on the free stream", 10_000);
    const redelivered = claimsOf(diligent)[0]!;
    expect(redelivered.action).toMatchObject({ id, claimedBy: "diligent-worker" });
    expect(redelivered.action.attempt).toBeGreaterThanOrEqual(2);
    const done = await complete(t, redelivered);
    expect(done.action.status).toBe("ACTION_STATUS_COMPLETED");
  });
});

describe("StreamClaims acknowledgement deadline, redelivered claims", () => {
  let t: TestServer;
  beforeAll(async () => {
    // A short deadline, so a worker that never acknowledges sees many
    // deliveries in a few seconds.
    t = await startTestServer({ ACTIONQ_ACK_TIMEOUT_SECONDS: "0.1", ACTIONQ_HEARTBEAT_SECONDS: "0.2", ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600" });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("releases every unacknowledged delivery at its deadline, and never lets a max_in_flight 1 stream hold two claims", async () => {
    const silent = stream(t, { worker: "never-acks", actionTypes: ["redeliver_job"], maxInFlight: 1 });
    await silent.atLeast(1, isHeartbeat, "the opening heartbeat");
    await enqueueMany(t, "redeliver_job", 2);
    const heldByStream = async () =>
      (await t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM actions WHERE status = 'claimed' AND claimed_by = 'never-acks'")).rows[0]!.n;
    let mostHeld = 0;
    const started = Date.now();
    // Three seconds at least, and on a slow machine until four deliveries came.
    while (Date.now() - started < 3000 || (claimsOf(silent).length <= 3 && Date.now() - started < 15_000)) {
      mostHeld = Math.max(mostHeld, await heldByStream());
      await sleep(50);
    }
    expect(claimsOf(silent).length).toBeGreaterThan(3);
    const { rows: overdue } = await t.db.query<{ id: string; attempt: number; overdue_ms: number }>(`
      SELECT id::text, attempt, (extract(epoch FROM now() - ack_deadline) * 1000)::int AS overdue_ms FROM actions
      WHERE status = 'claimed' AND acked_at IS NULL AND ack_deadline < now() - interval '2 seconds'`);
    // No sweeper: without its deadline a delivery would never be released, and
    // the first one would be 2.9 s overdue by now; 2 s leaves room for a slow machine.
    expect(overdue, "unacknowledged claims more than 2 s past their ack deadline").toEqual([]);
    expect(mostHeld, "claims held at once by a stream with max_in_flight 1").toBeLessThanOrEqual(1);
  });
});

describe("StreamClaims with a worker that stopped reading", () => {
  let t: TestServer;
  beforeAll(async () => {
    // The default 10 s ack deadline and no sweeper: only the stream's close
    // can release the claims quickly.
    t = await startTestServer({ ACTIONQ_HEARTBEAT_SECONDS: "0.2", ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600" });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("releases the unacknowledged claims of a stream at once when it closes while the server is blocked sending to it", async () => {
    const total = 400;
    await enqueueMany(t, "backlog_job", total, { concurrency: 20 });
    const stalled = stream(t, { worker: "stalled-worker", actionTypes: ["backlog_job"], maxInFlight: total });
    await stalled.atLeast(1, isHeartbeat, "the opening heartbeat");
    // Stop reading: HTTP/2 flow control soon blocks the server's writes.
    stalled.call.pause();
    const claimedBy = async (worker: string) =>
      (await t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM actions WHERE status = 'claimed' AND claimed_by = $1", [worker])).rows[0]!.n;
    await eventually(async () => (await claimedBy("stalled-worker")) === total, "every action claimed for the stalled stream", 15_000);
    await sleep(300);

    await stalled.cancel();
    // Within seconds: the close, not the 10 s ack timeout or the 30 s slow-consumer reset.
    await eventually(async () => (await claimedBy("stalled-worker")) === 0, "the closed stream's claims released", 5000).catch(async (error: Error) => {
      throw new Error(
        `${error.message}: ${await claimedBy("stalled-worker")} of ${total} still claimed 5 s after the stream closed; the server still serves ${openOnServer(t).claimStreams} claim stream(s)`,
      );
    });
    expect(openOnServer(t).claimStreams).toBe(0);
  });
});

describe("leases under the background sweeper", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_SWEEP_INTERVAL_SECONDS: "0.2" });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("the background sweeper alone requeues an expired lease", async () => {
    const [id] = await enqueueMany(t, "sweep_job");
    const { claim } = await t.grpc.unary<ClaimResponse>("ClaimAction", { worker: "lost-worker", actionTypes: ["sweep_job"], leaseDuration: { seconds: 1 } });
    expect(claim?.action.id).toBe(id);
    await eventually(async () => (await actionRow(t.db, id!)).status === "approved", "the sweeper requeueing the expired lease");
    const timedOut = (await eventsOf(t.db, id!)).at(-1)!;
    expect(timedOut).toMatchObject({ event_type: "claim_timed_out", actor: "server:sweeper" });
    expect((await grpcError(complete(t, claim!))).code).toBe(GrpcCode.FAILED_PRECONDITION);
  });

  it("ExtendClaim keeps a lease alive past its original deadline while the sweeper runs", async () => {
    const [id] = await enqueueMany(t, "extend_job");
    const { claim } = await t.grpc.unary<ClaimResponse>("ClaimAction", { worker: "long-worker", actionTypes: ["extend_job"], leaseDuration: { seconds: 1 } });
    expect(claim?.action.id).toBe(id);
    const started = Date.now();
    // Three times the original lease, extending every 200 ms by two seconds
    // (room for a slow call on a loaded machine), five times at least.
    for (let extensions = 0; extensions < 5 || Date.now() - started < 3000; extensions++) {
      await sleep(200);
      const extended = await t.grpc.unary<{ claimDeadline: { seconds: string; nanos: number } }>("ExtendClaim", {
        id,
        claimToken: claim!.claimToken,
        leaseDuration: { seconds: 2 },
      });
      // About two seconds from now (allowing for clock reads on both sides).
      const deadlineMs = Number(extended.claimDeadline.seconds) * 1000 + extended.claimDeadline.nanos / 1e6;
      expect(deadlineMs).toBeGreaterThan(Date.now() + 1000);
    }
    expect(await actionRow(t.db, id!)).toMatchObject({ status: "claimed", claim_token: claim!.claimToken, attempt: 1 });
    const types = (await eventsOf(t.db, id!)).map((event) => event.event_type);
    expect(types).not.toContain("claim_timed_out");
    expect(types.filter((type) => type === "claim_extended").length).toBeGreaterThanOrEqual(5);
    const done = await complete(t, claim!);
    expect(done.action.status).toBe("ACTION_STATUS_COMPLETED");
  });
});

describe("many workers racing over one queue", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("eight streaming workers complete each of 2,000 actions exactly once, and no claim reaches two workers", { timeout: 90_000 }, async () => {
    const total = 2000;
    const workers = Array.from({ length: 8 }, (_, i) => `race-worker-${i}`);
    /** claim token -> the worker it was delivered to */
    const tokens = new Map<string, string>();
    /** action id -> the workers it was delivered to, in order */
    const deliveries = new Map<string, string[]>();
    const duplicateTokens: string[] = [];
    const callFailures: string[] = [];
    let completed = 0;

    const handle = async (worker: string, claim: WireClaim) => {
      if (tokens.has(claim.claimToken)) duplicateTokens.push(claim.claimToken);
      tokens.set(claim.claimToken, worker);
      deliveries.set(claim.action.id, [...(deliveries.get(claim.action.id) ?? []), worker]);
      try {
        await ack(t, claim);
        await complete(t, claim, `done-by-${worker}`);
        completed++;
      } catch (error) {
        callFailures.push(`${worker} on action ${claim.action.id}: ${(error as Error).message}`);
      }
    };
    const streams = workers.map((worker) => {
      const opened = stream(t, { worker, maxInFlight: 4 });
      opened.call.on("data", (message: ClaimStreamMessage) => {
        if (message.kind === "claim") void handle(worker, message.claim);
      });
      return opened;
    });
    await Promise.all(streams.map((opened) => opened.atLeast(1, isHeartbeat, "the opening heartbeat")));

    // Parallel batches of enqueues while the workers run.
    const enqueued: string[] = [];
    for (let batch = 0; batch < total / 100; batch++) {
      enqueued.push(...(await enqueueMany(t, `race_job_${batch % 4}`, 100, { concurrency: 100 })));
    }
    await eventually(() => completed + callFailures.length >= total, `${total} completions`, 60_000, 100);
    expect(callFailures).toEqual([]);
    expect(duplicateTokens).toEqual([]);
    expect(streams.every((opened) => !opened.done)).toBe(true);
    await Promise.all(streams.map((opened) => opened.cancel()));

    const { rows: counts } = await t.db.query<{ total: number; completed: number }>(
      "SELECT count(*)::int AS total, count(*) FILTER (WHERE status = 'completed')::int AS completed FROM actions",
    );
    expect(counts[0]).toEqual({ total, completed: total });

    const { rows: perAction } = await t.db.query<{
      id: string;
      completions: number;
      claims: number;
      releases: number;
      claimed_by: string;
      result_ref: string;
    }>(`
      SELECT a.id::text, a.claimed_by, a.result_ref,
        count(*) FILTER (WHERE e.event_type = 'action_completed')::int AS completions,
        count(*) FILTER (WHERE e.event_type = 'action_claimed')::int AS claims,
        count(*) FILTER (WHERE e.event_type IN ('claim_released', 'claim_timed_out'))::int AS releases
      FROM actions a LEFT JOIN events e ON e.action_id = a.id
      GROUP BY a.id ORDER BY a.id`);
    expect(perAction.map((row) => row.id).sort()).toEqual([...enqueued].sort());
    const wrong = perAction.filter((row) => {
      const delivered = deliveries.get(row.id) ?? [];
      return (
        row.completions !== 1 ||
        row.claims !== 1 + row.releases ||
        delivered.length !== row.claims ||
        row.claimed_by !== delivered.at(-1) ||
        row.result_ref !== `done-by-${delivered.at(-1)}`
      );
    });
    expect(wrong.slice(0, 5).map((row) => ({ ...row, delivered: deliveries.get(row.id) }))).toEqual([]);
    expect(tokens.size).toBe(perAction.reduce((sum, row) => sum + row.claims, 0));
  });
});

describe("two servers on one schema", () => {
  let a: TestServer;
  let b: TestServer;
  beforeAll(async () => {
    // An hour's backstop poll: a stream on one server wakes by notification only.
    const env = { ACTIONQ_HEARTBEAT_SECONDS: "0.2", ACTIONQ_POLL_INTERVAL_SECONDS: "3600" };
    a = await startTestServer(env);
    b = await startTestServer(env, a.schema);
  });
  afterAll(async () => {
    // b first: a's close drops the shared schema.
    await closeWithin(b);
    await closeWithin(a);
  });

  it("an action enqueued through one server wakes an idle stream on the other", async () => {
    const idle = stream(b, { worker: "replica-b-worker", actionTypes: ["cross_wake"], maxInFlight: 1 });
    await idle.atLeast(1, isHeartbeat, "the opening heartbeat");
    await waitingFor(b, "replica-b-worker");
    const enqueued = Date.now();
    const [id] = await enqueueMany(a, "cross_wake");
    // Within seconds: the NOTIFY from the other server, not the hourly backstop poll.
    const claim = await nthClaim(idle, 1, 5000);
    expect(Date.now() - enqueued).toBeLessThan(5000);
    expect(claim.action.id).toBe(id);
    // The token works through either server.
    await complete(a, claim);
  });

  it("streams on both servers complete every action exactly once between them", { timeout: 60_000 }, async () => {
    const total = 300;
    const tokens = new Map<string, string>();
    const deliveries = new Map<string, string[]>();
    const failures: string[] = [];
    let completed = 0;
    const workers = [
      { t: a, name: "a-0" },
      { t: a, name: "a-1" },
      { t: b, name: "b-0" },
      { t: b, name: "b-1" },
    ];
    const streams = workers.map(({ t, name }) => {
      const opened = stream(t, { worker: name, actionTypes: ["replica_job"], maxInFlight: 4 });
      opened.call.on("data", (message: ClaimStreamMessage) => {
        if (message.kind !== "claim") return;
        const claim = message.claim;
        if (tokens.has(claim.claimToken)) failures.push(`token of action ${claim.action.id} delivered twice`);
        tokens.set(claim.claimToken, name);
        deliveries.set(claim.action.id, [...(deliveries.get(claim.action.id) ?? []), name]);
        // Acknowledge and complete through the other server half the time.
        const via = Number(claim.action.id) % 2 === 0 ? a : b;
        void ack(via, claim)
          .then(() => complete(t, claim, `done-by-${name}`))
          .then(
            () => completed++,
            (error: Error) => failures.push(`${name} on action ${claim.action.id}: ${error.message}`),
          );
      });
      return opened;
    });
    await Promise.all(streams.map((opened) => opened.atLeast(1, isHeartbeat, "the opening heartbeat")));

    const ids = (
      await Promise.all([enqueueMany(a, "replica_job", total / 2, { concurrency: 10 }), enqueueMany(b, "replica_job", total / 2, { concurrency: 10 })])
    ).flat();
    await eventually(() => completed + failures.length >= total, `${total} completions`, 30_000, 50);
    expect(failures).toEqual([]);

    const { rows } = await a.db.query<{ id: string; status: string; completions: number; claims: number; releases: number }>(`
      SELECT a.id::text, a.status,
        count(*) FILTER (WHERE e.event_type = 'action_completed')::int AS completions,
        count(*) FILTER (WHERE e.event_type = 'action_claimed')::int AS claims,
        count(*) FILTER (WHERE e.event_type IN ('claim_released', 'claim_timed_out'))::int AS releases
      FROM actions a JOIN events e ON e.action_id = a.id
      WHERE a.action_type = 'replica_job' GROUP BY a.id`);
    expect(rows.map((row) => row.id).sort()).toEqual([...ids].sort());
    expect(rows.filter((row) => row.status !== "completed" || row.completions !== 1 || row.claims !== 1 + row.releases)).toEqual([]);
    for (const [id, to] of deliveries) expect(to.length, `deliveries of action ${id}`).toBe(rows.find((row) => row.id === id)!.claims);
  });
});

describe("server shutdown", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_HEARTBEAT_SECONDS: "0.2" });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("drains claim streams on shutdown: a Drain message, a clean end, and unacknowledged claims released", async () => {
    const [first, second] = await enqueueMany(t, "drain_job", 2);
    const worker = stream(t, { worker: "draining-worker", actionTypes: ["drain_job"], maxInFlight: 2 });
    const claims = [await nthClaim(worker, 1), await nthClaim(worker, 2)];
    const ackedClaim = claims.find((claim) => claim.action.id === first)!;
    await ack(t, ackedClaim);

    const closing = Date.now();
    await t.server.close();
    // It does not hang on the open stream (the Drain below proves how it ended).
    expect(Date.now() - closing).toBeLessThan(15_000);

    const status = await worker.status;
    expect(status.code).toBe(GrpcCode.OK);
    const last = worker.received.at(-1)!;
    expect(last.kind).toBe("drain");
    expect(worker.received.filter((message) => message.kind === "drain")).toHaveLength(1);

    // The database outlives the server: the unacknowledged claim is back in
    // the queue, the acknowledged one still belongs to the worker.
    expect((await actionRow(t.db, second!)).status).toBe("approved");
    const released = (await eventsOf(t.db, second!)).at(-1)!;
    expect(released.event_type).toBe("claim_released");
    expect(await actionRow(t.db, first!)).toMatchObject({ status: "claimed", claimed_by: "draining-worker", acked: true });
  });
});
