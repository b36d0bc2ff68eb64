// Concurrency keys through the real server: at most `limit` actions of a
// key CLAIMED at once, priority-then-age order within a key, slots freed
// by every way a claim ends, streams woken when a slot frees, keys derived
// by the policy, and what GetAction and GetQueueStats say about a key that
// holds work back. The race across servers is in concurrency-race.test.ts.
import { status as GrpcCode } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, closeWithin, grpcError, snapshot, startTestServer } from "./support/harness.js";
import { removePolicyDirs, writePolicy } from "./support/safety.js";
import { cancelAfterEach, nthClaim, openClaimStream } from "./support/streams.js";
import { type WireAction, type WireClaim, claimNext, enqueue, errorInfoOf, toStruct } from "./support/wire.js";

const track = cancelAfterEach();
let counter = 0;
const unique = (label: string) => `${label}_${++counter}_${process.pid}`;

interface Hold {
  key: string;
  limit: number;
  holderIds: string[];
  ahead: string;
}
const getAction = (t: TestServer, id: string) => t.grpc.unary<{ action: WireAction; concurrencyHold: Hold | null }>("GetAction", { id });
const complete = (t: TestServer, claim: WireClaim) => t.grpc.unary("CompleteAction", { id: claim.action.id, claimToken: claim.claimToken, resultRef: "done" });
const claimType = (t: TestServer, type: string, extra: Record<string, unknown> = {}) => claimNext(t, { actionTypes: [type], ...extra });

describe("concurrency keys", () => {
  let t: TestServer;
  beforeAll(async () => {
    // No poll and no sweep: whatever wakes a stream or frees a slot here is
    // the commit itself.
    t = await startTestServer({ ACTIONQ_POLL_INTERVAL_SECONDS: "3600", ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600", ACTIONQ_ACK_TIMEOUT_SECONDS: "30" });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("claims one action of a key at a time, in priority-then-age order, while other keys run", async () => {
    const type = unique("redeploy");
    const key = unique("node-a");
    const first = (await enqueue(t, { actionType: type, concurrencyKey: key, priority: 5 })).action;
    const second = (await enqueue(t, { actionType: type, concurrencyKey: key, priority: 5 })).action;
    const urgent = (await enqueue(t, { actionType: type, concurrencyKey: key, priority: 1 })).action;
    const other = (await enqueue(t, { actionType: type, concurrencyKey: unique("node-b"), priority: 5 })).action;
    expect(first).toMatchObject({ concurrencyKey: key, concurrencyLimit: 1 });

    const a = (await claimType(t, type))!;
    expect(a.action.id).toBe(urgent.id);
    const b = (await claimType(t, type))!;
    expect(b.action.id).toBe(other.id);
    expect(await claimType(t, type)).toBeNull();

    await complete(t, a);
    const c = (await claimType(t, type))!;
    expect(c.action.id).toBe(first.id);
    expect(await claimType(t, type)).toBeNull();
    await complete(t, c);
    expect((await claimType(t, type))!.action.id).toBe(second.id);
  });

  it("a limit of three lets three run at once and the fourth wait", async () => {
    const type = unique("diagnose");
    const key = unique("pool");
    const ids = [];
    for (let i = 0; i < 4; i++) ids.push((await enqueue(t, { actionType: type, concurrencyKey: key, concurrencyLimit: 3 })).action.id);
    // One after another: a claim that meets the key's row locked by a
    // concurrent claim leaves the key to it, and may come back with less.
    const claims = [];
    for (let i = 0; i < 4; i++) claims.push(await claimType(t, type));
    const got = claims.filter((claim) => claim !== null);
    expect(got).toHaveLength(3);
    expect(got.map((claim) => claim!.action.id).sort()).toEqual(ids.slice(0, 3).sort());
    const { rows } = await t.db.query("SELECT count(*)::int AS n FROM actions WHERE concurrency_key = $1 AND status = 'claimed'", [key]);
    expect(rows[0].n).toBe(3);
  });

  it("the head of a key holds the key back also for a worker that does not take its type", async () => {
    const drain = unique("drain_node");
    const redeploy = unique("redeploy_service");
    const key = unique("node-c");
    const head = (await enqueue(t, { actionType: drain, concurrencyKey: key })).action;
    const behind = (await enqueue(t, { actionType: redeploy, concurrencyKey: key })).action;
    expect(await claimType(t, redeploy)).toBeNull();
    const held = await getAction(t, behind.id);
    expect(held.concurrencyHold).toMatchObject({ key, limit: 1, holderIds: [], ahead: "1" });
    const claimed = (await claimType(t, drain))!;
    expect(claimed.action.id).toBe(head.id);
    expect((await getAction(t, behind.id)).concurrencyHold).toMatchObject({ key, holderIds: [head.id], ahead: "0" });
    expect((await getAction(t, head.id)).concurrencyHold).toBeNull();

    const stats = await t.grpc.unary<{ heldKeys: { key: string; limit: number; holderIds: string[]; waiting: string }[] }>("GetQueueStats", {});
    expect(stats.heldKeys.find((held) => held.key === key)).toEqual({ key, limit: 1, holderIds: [head.id], waiting: "1" });
    await complete(t, claimed);
    expect((await claimType(t, redeploy))!.action.id).toBe(behind.id);
  });

  it("a failure, a release, a cancellation and a lease that ran out each free the slot at once", async () => {
    const type = unique("restart");
    const key = unique("svc");
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await enqueue(t, { actionType: type, concurrencyKey: key, maxAttempts: 1 })).action.id);

    const one = (await claimType(t, type))!;
    await t.grpc.unary("FailAction", { id: one.action.id, claimToken: one.claimToken, reason: "broken" });
    const two = (await claimType(t, type))!;
    expect(two.action.id).toBe(ids[1]);
    await t.grpc.unary("CancelAction", { id: two.action.id, actor: "human:op", reason: "not needed" });
    const three = (await claimType(t, type, { leaseDuration: { seconds: 1 } }))!;
    expect(three.action.id).toBe(ids[2]);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await t.grpc.unary("SweepClaims", { actor: "human:sweeper" });
    // The lease ran out: the action is back at the head of its key.
    const again = (await claimType(t, type))!;
    expect(again.action.id).toBe(ids[2]);
    await t.grpc.unary("RejectAction", { id: again.action.id, claimToken: again.claimToken, actor: "worker:test", reason: "not mine" });
    expect((await claimType(t, type))!.action.id).toBe(ids[3]);
    const { rows } = await t.db.query("SELECT claimed FROM concurrency_keys WHERE key = $1", [key]);
    expect(rows[0].claimed).toBe(1);
  });

  it("a stream waiting for work gets the next action of a key the moment a slot frees", async () => {
    const type = unique("migrate");
    const key = unique("db");
    await enqueue(t, { actionType: type, concurrencyKey: key });
    await enqueue(t, { actionType: type, concurrencyKey: key });
    const stream = track(openClaimStream(t, { worker: "worker:streamer", actionTypes: [type], maxInFlight: 5 }));
    const first = await nthClaim(stream, 1);
    await t.grpc.unary("AckClaim", { id: first.action.id, claimToken: first.claimToken });
    // With a slot free, the second would have come with the first.
    expect(stream.received.filter((message) => message.kind === "claim")).toHaveLength(1);
    await complete(t, first);
    const second = await nthClaim(stream, 2);
    expect(second.action.concurrencyKey).toBe(key);
  });

  it("an unacknowledged streamed claim frees its slot when the stream closes", async () => {
    const type = unique("rotate");
    const key = unique("cert");
    const first = (await enqueue(t, { actionType: type, concurrencyKey: key })).action;
    const stream = openClaimStream(t, { worker: "worker:quitter", actionTypes: [type], maxInFlight: 1 });
    track(stream);
    await nthClaim(stream, 1);
    await stream.cancel();
    // Well before the 30 s ack timeout: the close released it.
    await expect.poll(async () => (await claimType(t, type))?.action.id ?? null, { timeout: 15_000 }).toBe(first.id);
  });

  it("refuses a bad key or limit, naming the field, and writes nothing", async () => {
    const before = await snapshot(t.db);
    const cases: [Record<string, unknown>, string][] = [
      [{ concurrencyLimit: 2 }, "concurrency_limit"],
      [{ concurrencyKey: "k", concurrencyLimit: 1001 }, "concurrency_limit"],
      [{ concurrencyKey: "k", concurrencyLimit: -1 }, "concurrency_limit"],
      [{ concurrencyKey: "x".repeat(257) }, "concurrency_key"],
      [{ concurrencyKey: "bad\nkey" }, "concurrency_key"],
    ];
    for (const [extra, field] of cases) {
      const error = await grpcError(enqueue(t, { actionType: "collect_diagnostics", ...extra }));
      expect(error.code, JSON.stringify(extra)).toBe(GrpcCode.INVALID_ARGUMENT);
      expect(errorInfoOf(error)?.metadata.field).toBe(field);
    }
    expect(await snapshot(t.db)).toBe(before);
  });
});

describe("concurrency keys from the policy", () => {
  let t: TestServer;
  beforeAll(async () => {
    const policy = await writePolicy({
      name: "keys",
      concurrency: {
        drain_node: { key: "{node}" },
        redeploy_service: { key: "{node}/{service}", limit: 1 },
        scale_pool: { key: "pool:{payload.pool}", limit: 2 },
      },
    });
    t = await startTestServer({ ACTIONQ_POLICY: policy, ACTIONQ_POLL_INTERVAL_SECONDS: "3600" });
  });
  afterAll(async () => {
    await closeWithin(t);
    await removePolicyDirs();
  });

  it("derives each type's key from the action's fields", async () => {
    const drain = (await enqueue(t, { actionType: "drain_node", node: "n1" })).action;
    expect(drain).toMatchObject({ concurrencyKey: "n1", concurrencyLimit: 1 });
    const redeploy = (await enqueue(t, { actionType: "redeploy_service", node: "n1", service: "api", approvalRequired: false })).action;
    expect(redeploy).toMatchObject({ concurrencyKey: "n1/api", concurrencyLimit: 1 });
    const scale = (await enqueue(t, { actionType: "scale_pool", payload: toStruct({ pool: "gpu" }) })).action;
    expect(scale).toMatchObject({ concurrencyKey: "pool:gpu", concurrencyLimit: 2 });
    // Repeating the policy's own key is allowed.
    expect((await enqueue(t, { actionType: "drain_node", node: "n2", concurrencyKey: "n2" })).action.concurrencyKey).toBe("n2");
  });

  it("refuses an action missing a field its key needs, and a producer's key that differs from the policy's", async () => {
    const before = await snapshot(t.db);
    const missing = await grpcError(enqueue(t, { actionType: "drain_node" }));
    expect(missing.code).toBe(GrpcCode.INVALID_ARGUMENT);
    expect(errorInfoOf(missing)?.metadata.field).toBe("node");
    expect(missing.details).toContain("{node}");
    const noPool = await grpcError(enqueue(t, { actionType: "scale_pool", payload: toStruct({ size: 3 }) }));
    expect(errorInfoOf(noPool)?.metadata.field).toBe("payload.pool");
    const other = await grpcError(enqueue(t, { actionType: "drain_node", node: "n1", concurrencyKey: "everything" }));
    expect(errorInfoOf(other)?.metadata.field).toBe("concurrency_key");
    expect(other.details).toContain('"n1"');
    const limit = await grpcError(enqueue(t, { actionType: "drain_node", node: "n1", concurrencyLimit: 5 }));
    expect(errorInfoOf(limit)?.metadata.field).toBe("concurrency_limit");
    expect(await snapshot(t.db)).toBe(before);
  });

  it("refuses a policy whose template names no field", async () => {
    const bad = await writePolicy({ concurrency: { drain_node: { key: "{nodes}" } } });
    await expect(startTestServer({ ACTIONQ_POLICY: bad })).rejects.toThrow(/concurrency\.drain_node\.key.*\{nodes\} is not a field/s);
  });
});
