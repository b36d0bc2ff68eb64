// How claim streams end on purpose, and how the server notices a
// connection that died without telling: a Drain with cause MAX_AGE when a
// stream reaches ACTIONQ_MAX_STREAM_AGE_SECONDS, a Drain with cause SHUTDOWN
// when the server stops (neither is a lease loss, which sends no Drain), and
// HTTP/2 PINGs (ACTIONQ_KEEPALIVE_SECONDS) that close a silent connection and
// release what its streams never acknowledged. Acknowledged claims outlive
// every one of these.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { GrpcClient, type TestServer, closeWithin, startTestServer } from "./support/harness.js";
import { type ClaimStreamMessage, GrpcStream, actionRow, claimsOf, enqueueMany, eventsOf, isHeartbeat, nthClaim, openClaimStream } from "./support/streams.js";
import { TcpProxy } from "./support/tcp-proxy.js";
import { eventually, sleep } from "./support/wait.js";
import type { WireClaim } from "./support/wire.js";

/** A Drain as grpc-js decodes it (enums as names). */
type Drain = { reason: string; cause: string };
const drainOf = (stream: GrpcStream<ClaimStreamMessage>) => {
  const message = stream.received.find((m) => m.kind === "drain") as { drain: Drain } | undefined;
  return message?.drain;
};

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});
function tracked(stream: GrpcStream<ClaimStreamMessage>): GrpcStream<ClaimStreamMessage> {
  cleanups.push(() => stream.cancel());
  return stream;
}

const ack = (t: TestServer, claim: WireClaim) => t.grpc.unary("AckClaim", { id: claim.action.id, claimToken: claim.claimToken });

describe("maximum stream age", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({
      // Two seconds: room for the worker to acknowledge before the Drain, even on a slow machine.
      ACTIONQ_MAX_STREAM_AGE_SECONDS: "2",
      ACTIONQ_HEARTBEAT_SECONDS: "0.2",
      // Long enough that only the Drain can explain a release.
      ACTIONQ_ACK_TIMEOUT_SECONDS: "30",
      ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600",
    });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("ends a stream older than the maximum with Drain(MAX_AGE); acknowledged claims stay with the worker, the rest go back at once", async () => {
    const [first, second] = await enqueueMany(t, "aged_job", 2);
    const opened = Date.now();
    const stream = tracked(openClaimStream(t, { worker: "aged-worker", actionTypes: ["aged_job"], maxInFlight: 2 }));
    const claims = [await nthClaim(stream, 1), await nthClaim(stream, 2)];
    const kept = claims.find((claim) => claim.action.id === first)!;
    await ack(t, kept);

    const status = await Promise.race([stream.status, sleep(10_000).then(() => undefined)]);
    expect(status, "the stream ended by itself").toMatchObject({ code: 0 });
    const lifetime = Date.now() - opened;
    // Ended at its maximum age; nothing else could end it before the 30 s ack timeout.
    expect(lifetime).toBeGreaterThanOrEqual(2000);
    expect(lifetime).toBeLessThan(8000);
    expect(drainOf(stream)).toMatchObject({ cause: "DRAIN_CAUSE_MAX_AGE" });
    expect(stream.received.at(-1)!.kind).toBe("drain");

    // The unacknowledged claim went back at once, counted as a lost delivery.
    const released = await actionRow(t.db, second!);
    expect(released.status).toBe("approved");
    expect((await eventsOf(t.db, second!)).at(-1)).toMatchObject({ event_type: "claim_released" });
    expect((await t.db.query("SELECT lost_deliveries FROM actions WHERE id = $1", [second])).rows[0].lost_deliveries).toBe(1);
    // The acknowledged one is still the worker's, with the same token.
    expect(await actionRow(t.db, first!)).toMatchObject({ status: "claimed", acked: true, claim_token: kept.claimToken });

    // The worker reconnects, finishes what it holds and gets the released one.
    const again = tracked(openClaimStream(t, { worker: "aged-worker", actionTypes: ["aged_job"], maxInFlight: 2 }));
    const redelivered = await nthClaim(again, 1);
    expect(redelivered.action).toMatchObject({ id: second, attempt: 2 });
    const done = await t.grpc.unary<{ action: { status: string } }>("CompleteAction", { id: first, claimToken: kept.claimToken, resultRef: "after-drain" });
    expect(done.action.status).toBe("ACTION_STATUS_COMPLETED");
    await ack(t, redelivered);
    // The new stream is drained in its turn.
    expect(await Promise.race([again.status, sleep(10_000).then(() => undefined)])).toMatchObject({ code: 0 });
    expect(drainOf(again)).toMatchObject({ cause: "DRAIN_CAUSE_MAX_AGE" });
    expect(await actionRow(t.db, second!)).toMatchObject({ status: "claimed", acked: true, claim_token: redelivered.claimToken });
  });
});

describe("shutdown", () => {
  it("sends Drain(SHUTDOWN) on every claim stream; acknowledged claims are finished through another replica, unacknowledged ones go back", async () => {
    const env = { ACTIONQ_HEARTBEAT_SECONDS: "0.2", ACTIONQ_ACK_TIMEOUT_SECONDS: "30", ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600" };
    const stopping = await startTestServer(env);
    const staying = await startTestServer(env, stopping.schema);
    cleanups.push(() => closeWithin(staying));
    try {
      const [kept, returned] = await enqueueMany(stopping, "shutdown_job", 2);
      const stream = tracked(openClaimStream(stopping, { worker: "shutdown-worker", actionTypes: ["shutdown_job"], maxInFlight: 2 }));
      const claims = [await nthClaim(stream, 1), await nthClaim(stream, 2)];
      const keptClaim = claims.find((claim) => claim.action.id === kept)!;
      await ack(stopping, keptClaim);
      const idle = tracked(openClaimStream(stopping, { worker: "idle-worker", actionTypes: ["nothing_here"], maxInFlight: 1 }));
      await idle.atLeast(1, isHeartbeat, "the idle stream's first heartbeat");

      // stopping.close() drops the schema; shut the server alone down.
      await stopping.server.close();
      for (const s of [stream, idle]) {
        expect(await Promise.race([s.status, sleep(10_000).then(() => undefined)])).toMatchObject({ code: 0 });
        expect(drainOf(s)).toMatchObject({ cause: "DRAIN_CAUSE_SHUTDOWN" });
      }
      expect(await actionRow(staying.db, returned!)).toMatchObject({ status: "approved" });
      expect((await eventsOf(staying.db, returned!)).at(-1)).toMatchObject({ event_type: "claim_released" });
      expect(await actionRow(staying.db, kept!)).toMatchObject({ status: "claimed", acked: true, claim_token: keptClaim.claimToken });
      const done = await staying.grpc.unary<{ action: { status: string } }>("CompleteAction", {
        id: kept,
        claimToken: keptClaim.claimToken,
        resultRef: "via-replica",
      });
      expect(done.action.status).toBe("ACTION_STATUS_COMPLETED");
    } finally {
      stopping.grpc.close();
      await stopping.server.close();
      await stopping.db.end();
    }
  });
});

describe("lease loss is not a Drain", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_HEARTBEAT_SECONDS: "0.2", ACTIONQ_SWEEP_INTERVAL_SECONDS: "0.2" });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("a lease that runs out takes the claim back without ending the stream; the stream gets the action again", async () => {
    const [id] = await enqueueMany(t, "lease_job");
    const stream = tracked(openClaimStream(t, { worker: "slow-worker", actionTypes: ["lease_job"], maxInFlight: 1, leaseDuration: { seconds: 1 } }));
    const first = await nthClaim(stream, 1);
    await ack(t, first);
    const second = await nthClaim(stream, 2, 10_000);
    expect(second.action).toMatchObject({ id, attempt: 2 });
    expect((await eventsOf(t.db, id!)).map((event) => event.event_type)).toContain("claim_timed_out");
    expect(stream.done).toBe(false);
    expect(stream.received.some((message) => message.kind === "drain")).toBe(false);
  });
});

describe("keepalive", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({
      // A second: a PING's answer must not lose to its deadline when a loaded
      // machine stalls this process (server, proxy and client) for a moment.
      ACTIONQ_KEEPALIVE_SECONDS: "1",
      // No heartbeats to speak of: only PINGs cross an idle connection.
      ACTIONQ_HEARTBEAT_SECONDS: "600",
      ACTIONQ_ACK_TIMEOUT_SECONDS: "30",
      ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600",
    });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  async function throughProxy() {
    const proxy = await TcpProxy.start(t.server.port);
    const client = new GrpcClient(proxy.address);
    cleanups.push(async () => {
      client.close();
      await proxy.close();
    });
    return { proxy, client };
  }

  it("a healthy idle connection answers the PINGs and is kept", async () => {
    const { proxy, client } = await throughProxy();
    const stream = tracked(new GrpcStream<ClaimStreamMessage>(client.stream("StreamClaims", { worker: "idle", actionTypes: ["quiet_job"], maxInFlight: 1 })));
    await stream.atLeast(1, isHeartbeat, "the stream's first message");
    // Long enough for two PINGs to have needed their answers.
    await sleep(3500);
    expect(stream.done).toBe(false);
    expect(t.server.stats.claimStreams).toBeGreaterThanOrEqual(1);
    expect(proxy.stats.accepted).toBe(1);
    // And it still delivers.
    const [id] = await enqueueMany(t, "quiet_job");
    expect((await nthClaim(stream, 1)).action.id).toBe(id);
  });

  it("a connection that goes silent (no FIN) is closed after an unanswered PING: unacknowledged claims go back at once, acknowledged ones stay", async () => {
    const { proxy, client } = await throughProxy();
    const [kept, returned] = await enqueueMany(t, "silent_job", 2);
    const stream = tracked(
      new GrpcStream<ClaimStreamMessage>(client.stream("StreamClaims", { worker: "behind-proxy", actionTypes: ["silent_job"], maxInFlight: 2 })),
    );
    const claims = [await nthClaim(stream, 1), await nthClaim(stream, 2)];
    const keptClaim = claims.find((claim) => claim.action.id === kept)!;
    await client.unary("AckClaim", { id: kept, claimToken: keptClaim.claimToken });
    // The last test's stream may still be closing on the server.
    await eventually(() => t.server.stats.claimStreams === 1, "this test's stream alone open on the server");

    const cut = Date.now();
    expect(proxy.blackhole()).toBe(1);
    await expect.poll(async () => (await actionRow(t.db, returned!)).status, { timeout: 10_000, interval: 50 }).toBe("approved");
    const noticed = Date.now() - cut;
    // Two keepalive periods (one to send, one to wait) and room for a slow
    // machine: far from the 30 s ack timeout, the other way it could go back.
    expect(noticed).toBeLessThan(10_000);
    expect((await eventsOf(t.db, returned!)).at(-1)).toMatchObject({ event_type: "claim_released" });
    expect(t.server.stats.claimStreams).toBe(0);
    expect(await actionRow(t.db, kept!)).toMatchObject({ status: "claimed", acked: true, claim_token: keptClaim.claimToken });
    // The client never heard a thing: its stream still looks open.
    expect(stream.done).toBe(false);
    expect(claimsOf(stream)).toHaveLength(2);
  });
});

describe("claims a worker brings to a new stream", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_HEARTBEAT_SECONDS: "0.2", ACTIONQ_ACK_TIMEOUT_SECONDS: "30", ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600" });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("count against max_in_flight until they end, so a reconnect does not double the work in hand; foreign or stale ones are ignored", async () => {
    await enqueueMany(t, "held_job", 2);
    const first = tracked(openClaimStream(t, { worker: "holder", actionTypes: ["held_job"], maxInFlight: 2 }));
    const held = [await nthClaim(first, 1), await nthClaim(first, 2)];
    for (const claim of held) await ack(t, claim);
    await first.cancel();

    await enqueueMany(t, "held_job", 2);
    const holding = [
      ...held.map((claim) => ({ id: claim.action.id, claimToken: claim.claimToken })),
      // Not this worker's claim: a well-formed token that names nothing.
      { id: held[0]!.action.id, claimToken: "00000000-0000-4000-8000-000000000000" },
    ];
    const second = tracked(openClaimStream(t, { worker: "holder", actionTypes: ["held_job"], maxInFlight: 2, holding }));
    // Both slots are taken by what the worker brought: nothing new comes.
    await sleep(800);
    expect(claimsOf(second)).toHaveLength(0);

    // Finishing one held claim (the stream that claimed it is gone) frees
    // exactly one slot on the new stream.
    await t.grpc.unary("CompleteAction", { id: held[0]!.action.id, claimToken: held[0]!.claimToken, resultRef: "done" });
    const next = await nthClaim(second, 1);
    expect(held.map((claim) => claim.action.id)).not.toContain(next.action.id);
    await sleep(500);
    expect(claimsOf(second)).toHaveLength(1);

    // A stranger cannot move another worker's claims to its stream.
    const stranger = tracked(
      openClaimStream(t, {
        worker: "stranger",
        actionTypes: ["held_job"],
        maxInFlight: 1,
        holding: [{ id: held[1]!.action.id, claimToken: held[1]!.claimToken }],
      }),
    );
    const taken = await nthClaim(stranger, 1);
    expect(taken.action.id).not.toBe(held[1]!.action.id);
    expect((await actionRow(t.db, held[1]!.action.id)).claimed_by).toBe("holder");
  });

  it("refuses a malformed holding list, naming the field", async () => {
    const stream = openClaimStream(t, { worker: "holder", maxInFlight: 1, holding: [{ id: "1", claimToken: "nope" }] });
    const status = await stream.status;
    expect(status.code).toBe(3);
    expect(status.details).toContain("holding[0].claim_token");
  });
});
