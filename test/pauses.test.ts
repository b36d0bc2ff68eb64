// The kill switch over the wire: PauseClaims and ResumeClaims for every
// scope, their validation and events, GetQueueStats, paused actions keeping
// their place, claim streams that stay open through a pause and deliver
// after it, and a pause that holds on another replica the moment it is made.
import { status } from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, closeWithin, snapshot, startTestServer } from "./support/harness.js";
import { STATUS, type WireEvent, cancelAllApproved, claimNext, enqueue, expectRefused, fromStruct, getAction, millis } from "./support/wire.js";
import { cancelAfterEach, claimsOf, isHeartbeat, nthClaim, openClaimStream } from "./support/streams.js";
import { type WirePause, durationMs, enqueuedPolicy, getPolicy, queueStats, unique } from "./support/safety.js";
import { sleep } from "./support/wait.js";

const KIND = {
  all: "PAUSE_KIND_ALL",
  type: "PAUSE_KIND_ACTION_TYPE",
  project: "PAUSE_KIND_PROJECT",
  auto: "PAUSE_KIND_AUTO_APPROVAL",
} as const;

interface PauseResponse {
  pause: WirePause;
  created: boolean;
}

const pause = (t: TestServer, kind: string, value = "", actor = "human:carol", reason = "incident 42") =>
  t.grpc.unary<PauseResponse>("PauseClaims", { scope: { kind, value }, actor, reason });
const resume = (t: TestServer, kind: string, value = "", actor = "human:carol", reason = "all clear") =>
  t.grpc.unary<{ pause: WirePause }>("ResumeClaims", { scope: { kind, value }, actor, reason });

/** Lifts every pause in force, so that each test starts unpaused. */
async function resumeAll(t: TestServer): Promise<void> {
  for (const p of (await queueStats(t)).pauses) await resume(t, p.scope.kind, p.scope.value, "human:cleanup", "test cleanup");
}

async function coordinatorEvents(t: TestServer, type: "coordinator_paused" | "coordinator_resumed"): Promise<WireEvent[]> {
  return (await t.grpc.unary<{ events: WireEvent[] }>("ListEvents", { eventTypes: [type], pageSize: 1000 })).events;
}

async function pauseRows(t: TestServer): Promise<number> {
  const { rows } = await t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM pauses");
  return rows[0]!.n;
}

const track = cancelAfterEach();
const stream = (t: TestServer, request: Record<string, unknown>) => track(openClaimStream(t, request));

// An hour's backstop poll: a stream wakes after a resume by notification only.
const ENV = { ACTIONQ_HEARTBEAT_SECONDS: "0.2", ACTIONQ_POLL_INTERVAL_SECONDS: "3600", ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600" };

describe("PauseClaims and ResumeClaims on one server", () => {
  let t: TestServer;
  beforeAll(async () => {
    // Deliveries after a resume must come from the resume's notification.
    t = await startTestServer(ENV);
  });
  afterAll(async () => {
    await closeWithin(t);
  });
  afterEach(async () => {
    await resumeAll(t);
  });

  it.each([
    ["no scope", "scope.kind", { actor: "human:carol", reason: "r" }],
    ["an unspecified kind", "scope.kind", { scope: { kind: "PAUSE_KIND_UNSPECIFIED" }, actor: "human:carol", reason: "r" }],
    ["ALL with a value", "scope.value", { scope: { kind: KIND.all, value: "x" }, actor: "human:carol", reason: "r" }],
    ["AUTO_APPROVAL with a value", "scope.value", { scope: { kind: KIND.auto, value: "x" }, actor: "human:carol", reason: "r" }],
    ["ACTION_TYPE with no value", "scope.value", { scope: { kind: KIND.type }, actor: "human:carol", reason: "r" }],
    ["PROJECT with no value", "scope.value", { scope: { kind: KIND.project }, actor: "human:carol", reason: "r" }],
    ["no actor", "actor", { scope: { kind: KIND.all }, reason: "r" }],
    ["no reason", "reason", { scope: { kind: KIND.all }, actor: "human:carol" }],
  ])("PauseClaims with %s is INVALID_ARGUMENT naming %s, and pauses nothing", async (_what, field, request) => {
    await expectRefused(t, () => t.grpc.unary("PauseClaims", request), { code: status.INVALID_ARGUMENT, reason: "INVALID_FIELD", field });
    expect(await pauseRows(t)).toBe(0);
  });

  it.each([
    ["an unspecified kind", "scope.kind", { scope: { kind: "PAUSE_KIND_UNSPECIFIED" }, actor: "human:carol", reason: "r" }],
    ["ACTION_TYPE with no value", "scope.value", { scope: { kind: KIND.type }, actor: "human:carol", reason: "r" }],
    ["no actor", "actor", { scope: { kind: KIND.all }, reason: "r" }],
  ])("ResumeClaims with %s is INVALID_ARGUMENT naming %s", async (_what, field, request) => {
    await pause(t, KIND.all);
    await expectRefused(t, () => t.grpc.unary("ResumeClaims", request), { code: status.INVALID_ARGUMENT, reason: "INVALID_FIELD", field });
    expect(await pauseRows(t)).toBe(1);
  });

  it("ALL: nothing is claimed, actions stay APPROVED; the pause is idempotent; resume brings claims back; both are events", async () => {
    await cancelAllApproved(t);
    const type = unique("all_paused");
    const { action } = await enqueue(t, { actionType: type });
    const pausedEventsBefore = (await coordinatorEvents(t, "coordinator_paused")).length;

    const first = await pause(t, KIND.all, "", "human:carol", "bad deploy in progress");
    expect(first.created).toBe(true);
    expect(first.pause).toMatchObject({ scope: { kind: KIND.all, value: "" }, pausedBy: "human:carol", reason: "bad deploy in progress" });
    expect(Math.abs(millis(first.pause.createTime) - Date.now())).toBeLessThan(30_000);

    expect(await claimNext(t)).toBeNull();
    expect(await claimNext(t, { actionTypes: [type] })).toBeNull();
    expect((await getAction(t, action.id)).action.status).toBe(STATUS.approved);

    const paused = await coordinatorEvents(t, "coordinator_paused");
    expect(paused).toHaveLength(pausedEventsBefore + 1);
    expect(paused.at(-1)).toMatchObject({ actionId: "0", actor: "human:carol" });
    expect(fromStruct(paused.at(-1)!.payload)).toMatchObject({ scope: { kind: "all", value: "" }, reason: "bad deploy in progress" });

    // Pausing again returns the pause in force and writes nothing.
    const before = await snapshot(t.db);
    const again = await pause(t, KIND.all, "", "human:dave", "me too");
    expect(again.created).toBe(false);
    expect(again.pause).toEqual(first.pause);
    expect(await snapshot(t.db)).toBe(before);

    const lifted = await resume(t, KIND.all, "", "human:erin", "deploy rolled back");
    expect(lifted.pause).toEqual(first.pause);
    const resumed = (await coordinatorEvents(t, "coordinator_resumed")).at(-1)!;
    expect(resumed).toMatchObject({ actionId: "0", actor: "human:erin" });
    expect(fromStruct(resumed.payload)).toMatchObject({ scope: { kind: "all", value: "" }, reason: "deploy rolled back" });
    expect((await claimNext(t))?.action.id).toBe(action.id);
  });

  it("ResumeClaims on a scope that is not paused is NOT_FOUND PAUSE_NOT_FOUND", async () => {
    await expectRefused(t, () => resume(t, KIND.all), { code: status.NOT_FOUND, reason: "PAUSE_NOT_FOUND" });
    await pause(t, KIND.type, "paused_type");
    await expectRefused(t, () => resume(t, KIND.type, "another_type"), { code: status.NOT_FOUND, reason: "PAUSE_NOT_FOUND" });
    await expectRefused(t, () => resume(t, KIND.project, "paused_type"), { code: status.NOT_FOUND, reason: "PAUSE_NOT_FOUND" });
    await resume(t, KIND.type, "paused_type");
    await expectRefused(t, () => resume(t, KIND.type, "paused_type"), { code: status.NOT_FOUND, reason: "PAUSE_NOT_FOUND" });
  });

  it("ACTION_TYPE: only that type is held back, whatever its priority", async () => {
    await cancelAllApproved(t);
    const held = unique("held_type");
    const free = unique("free_type");
    const heldAction = (await enqueue(t, { actionType: held, priority: -100 })).action;
    const freeAction = (await enqueue(t, { actionType: free, priority: 100 })).action;
    const res = await pause(t, KIND.type, held);
    expect(res.pause.scope).toEqual({ kind: KIND.type, value: held });
    const event = (await coordinatorEvents(t, "coordinator_paused")).at(-1)!;
    expect(fromStruct(event.payload)).toMatchObject({ scope: { kind: "action_type", value: held } });

    expect(await claimNext(t, { actionTypes: [held] })).toBeNull();
    expect((await claimNext(t))?.action.id).toBe(freeAction.id);
    expect(await claimNext(t)).toBeNull();
    await resume(t, KIND.type, held);
    expect((await claimNext(t))?.action.id).toBe(heldAction.id);
  });

  it("PROJECT: only that project is held back; a type and a project of the same name are different scopes", async () => {
    await cancelAllApproved(t);
    const name = unique("shared_name");
    const type = unique("project_job");
    const inProject = (await enqueue(t, { actionType: type, project: name, priority: -100 })).action;
    const elsewhere = (await enqueue(t, { actionType: type, project: "other", priority: 100 })).action;
    expect((await pause(t, KIND.project, name)).created).toBe(true);
    expect((await pause(t, KIND.type, name)).created).toBe(true);
    const event = (await coordinatorEvents(t, "coordinator_paused")).find(
      (e) => JSON.stringify(fromStruct(e.payload)).includes(`"project"`) && JSON.stringify(fromStruct(e.payload)).includes(name),
    );
    expect(fromStruct(event!.payload)).toMatchObject({ scope: { kind: "project", value: name } });

    expect(await claimNext(t, { projects: [name] })).toBeNull();
    expect((await claimNext(t, { actionTypes: [type] }))?.action.id).toBe(elsewhere.id);
    expect(await claimNext(t, { actionTypes: [type] })).toBeNull();
    await resume(t, KIND.project, name);
    expect((await claimNext(t, { actionTypes: [type] }))?.action.id).toBe(inProject.id);
  });

  it("AUTO_APPROVAL: new actions the policy would approve wait for a human instead; claiming goes on", async () => {
    await cancelAllApproved(t);
    const type = unique("auto_paused");
    const before = (await enqueue(t, { actionType: type })).action;
    expect(before.status).toBe(STATUS.approved);
    await pause(t, KIND.auto, "", "human:carol", "policy under review");
    expect(fromStruct((await coordinatorEvents(t, "coordinator_paused")).at(-1)!.payload)).toMatchObject({ scope: { kind: "auto_approval", value: "" } });

    const during = (await enqueue(t, { actionType: type, createdBy: "human:alice" })).action;
    expect(during).toMatchObject({ status: STATUS.pending, autonomousEligible: true, approvalsRequired: 1 });
    expect(during.approvalExpireTime).not.toBeNull();
    const policy = enqueuedPolicy((await getAction(t, during.id)).events);
    expect(policy).toMatchObject({ decision: "needs_approval", autonomous_eligible: true });
    expect(String(policy.reason).toLowerCase()).toContain("paus");
    expect((await getAction(t, during.id)).events.map((e) => e.eventType)).toEqual(["action_enqueued"]);

    // Already approved work is still claimed, and a human can approve.
    expect((await claimNext(t, { actionTypes: [type] }))?.action.id).toBe(before.id);
    await t.grpc.unary("ApproveAction", { id: during.id, approver: "human:bob" });
    expect((await claimNext(t, { actionTypes: [type] }))?.action.id).toBe(during.id);

    const held = (await enqueue(t, { actionType: type })).action;
    expect(held.status).toBe(STATUS.pending);
    await resume(t, KIND.auto);
    expect((await enqueue(t, { actionType: type })).action.status).toBe(STATUS.approved);
    // Resuming does not approve what waited meanwhile.
    expect((await getAction(t, held.id)).action.status).toBe(STATUS.pending);
  });

  it("paused actions keep their place: after the resume they are claimed by priority, then age", async () => {
    await cancelAllApproved(t);
    const type = unique("keep_place");
    const enq = async (priority: number) => (await enqueue(t, { actionType: type, priority })).action.id;
    const k1 = await enq(3);
    const k2 = await enq(3);
    await pause(t, KIND.all);
    const k3 = await enq(3);
    const k0 = await enq(1);
    const kMinus = await enq(-5);
    const k4 = await enq(7);
    await sleep(200);
    for (const id of [k1, k2, k3, k0, kMinus, k4]) {
      const { action, events } = await getAction(t, id);
      expect(action.status).toBe(STATUS.approved);
      expect(events.map((e) => e.eventType)).toEqual(["action_enqueued", "action_approved"]);
    }
    await resume(t, KIND.all);
    const order: string[] = [];
    for (let i = 0; i < 6; i++) order.push((await claimNext(t, { actionTypes: [type] }))!.action.id);
    expect(order).toEqual([kMinus, k0, k1, k2, k3, k4]);
  });

  it("GetQueueStats: counts by status and type, claimable, the oldest claimable age, the pauses and the policy version", async () => {
    await cancelAllApproved(t);
    const sa = unique("stats_a");
    const sb = unique("stats_b");
    const project = unique("stats_p");
    const firstApproved = Date.now();
    await enqueue(t, { actionType: sa });
    await enqueue(t, { actionType: sa });
    await enqueue(t, { actionType: sa, approvalRequired: true });
    const completed = (await enqueue(t, { actionType: sb, project })).action;
    await enqueue(t, { actionType: sb, project });
    const claim = (await claimNext(t, { actionTypes: [sb] }))!;
    expect(claim.action.id).toBe(completed.id);
    await t.grpc.unary("CompleteAction", { id: claim.action.id, claimToken: claim.claimToken, resultRef: "ok" });
    await sleep(300);

    const mine = (stats: Awaited<ReturnType<typeof queueStats>>) =>
      stats.counts
        .filter((c) => c.actionType === sa || c.actionType === sb)
        .map((c) => ({ status: c.status, actionType: c.actionType, count: String(c.count) }))
        .sort((x, y) => (x.actionType + x.status).localeCompare(y.actionType + y.status));
    let stats = await queueStats(t);
    expect(mine(stats)).toEqual(
      [
        { status: STATUS.approved, actionType: sa, count: "2" },
        { status: STATUS.pending, actionType: sa, count: "1" },
        { status: STATUS.approved, actionType: sb, count: "1" },
        { status: STATUS.completed, actionType: sb, count: "1" },
      ].sort((x, y) => (x.actionType + x.status).localeCompare(y.actionType + y.status)),
    );
    expect(String(stats.claimable)).toBe("3");
    const age = durationMs(stats.oldestClaimableAge);
    expect(age).toBeGreaterThanOrEqual(250);
    expect(age).toBeLessThanOrEqual(Date.now() - firstApproved + 1000);
    expect(stats.pauses).toEqual([]);
    expect(stats.policyVersion).toBe((await getPolicy(t)).policyVersion);
    expect(stats.policyVersion).toMatch(/^builtin@/);
    // The built-in policy has no name, and shows none rather than a null.
    expect((await getPolicy(t)).policy).not.toHaveProperty("name");

    // Paused work is not claimable.
    const typePause = (await pause(t, KIND.type, sa)).pause;
    stats = await queueStats(t);
    expect(String(stats.claimable)).toBe("1");
    expect(stats.pauses).toEqual([typePause]);
    const projectPause = (await pause(t, KIND.project, project)).pause;
    stats = await queueStats(t);
    expect(String(stats.claimable)).toBe("0");
    expect(stats.oldestClaimableAge ?? null).toBeNull();
    expect(stats.pauses).toHaveLength(2);
    expect(stats.pauses).toEqual(expect.arrayContaining([typePause, projectPause]));
    // Counts are about statuses: the paused actions are still APPROVED.
    expect(mine(stats).filter((c) => c.status === STATUS.approved)).toEqual([
      { status: STATUS.approved, actionType: sa, count: "2" },
      { status: STATUS.approved, actionType: sb, count: "1" },
    ]);
    await resume(t, KIND.project, project);
    await resume(t, KIND.type, sa);

    // An auto-approval pause holds no claims.
    await pause(t, KIND.auto);
    stats = await queueStats(t);
    expect(String(stats.claimable)).toBe("3");
    expect(stats.pauses.map((p) => p.scope)).toEqual([{ kind: KIND.auto, value: "" }]);
  });

  it("oldest_claimable_age counts from the approval, not from the enqueue", async () => {
    await cancelAllApproved(t);
    const { action } = await enqueue(t, { actionType: unique("late_approval"), approvalRequired: true });
    expect((await queueStats(t)).oldestClaimableAge ?? null).toBeNull();
    await sleep(800);
    const approving = Date.now();
    await t.grpc.unary("ApproveAction", { id: action.id, approver: "human:bob" });
    const justApproved = durationMs((await queueStats(t)).oldestClaimableAge);
    // No older than the time since the approval was asked for; counted from
    // the enqueue it would be 800 ms more, however slow the calls.
    expect(justApproved).toBeLessThanOrEqual(Date.now() - approving + 1);
    await sleep(300);
    expect(durationMs((await queueStats(t)).oldestClaimableAge)).toBeGreaterThanOrEqual(justApproved + 250);
  });

  it("a claim stream stays open through a pause, with heartbeats, and delivers at once when it is lifted", async () => {
    const type = unique("stream_paused");
    const worker = stream(t, { worker: "worker:patient", actionTypes: [type], maxInFlight: 2 });
    await worker.atLeast(1, isHeartbeat, "the opening heartbeat");
    await pause(t, KIND.all);
    const { action } = await enqueue(t, { actionType: type });
    const heartbeatsBefore = worker.received.filter(isHeartbeat).length;
    await sleep(1000);
    expect(claimsOf(worker)).toEqual([]);
    expect(worker.done).toBe(false);
    await worker.atLeast(heartbeatsBefore + 3, isHeartbeat, "heartbeats while paused");
    expect((await getAction(t, action.id)).action.status).toBe(STATUS.approved);

    const resumedAt = Date.now();
    await resume(t, KIND.all);
    // Within seconds: the resume's notification, not the hourly poll.
    const claim = await nthClaim(worker, 1, 5000);
    expect(Date.now() - resumedAt).toBeLessThan(5000);
    expect(claim.action.id).toBe(action.id);
    await t.grpc.unary("AckClaim", { id: claim.action.id, claimToken: claim.claimToken });
  });

  it("a stream opened while its type is paused waits, then delivers when the type is resumed", async () => {
    const type = unique("stream_type_paused");
    await pause(t, KIND.type, type);
    const { action } = await enqueue(t, { actionType: type });
    const worker = stream(t, { worker: "worker:late", actionTypes: [type], maxInFlight: 1 });
    await worker.atLeast(4, isHeartbeat, "heartbeats while paused", 10_000);
    expect(claimsOf(worker)).toEqual([]);
    const resumedAt = Date.now();
    await resume(t, KIND.type, type);
    // Within seconds: the resume's notification, not the hourly poll.
    const claim = await nthClaim(worker, 1, 5000);
    expect(Date.now() - resumedAt).toBeLessThan(5000);
    expect(claim.action.id).toBe(action.id);
    await t.grpc.unary("AckClaim", { id: claim.action.id, claimToken: claim.claimToken });
  });
});

describe("two replicas on one schema", () => {
  let a: TestServer;
  let b: TestServer;
  beforeAll(async () => {
    a = await startTestServer(ENV);
    b = await startTestServer(ENV, a.schema);
  });
  afterAll(async () => {
    // b first: a's close drops the shared schema.
    await closeWithin(b);
    await closeWithin(a);
  });
  afterEach(async () => {
    await resumeAll(a);
  });

  it("a pause made on A stops claims on B at once, and shows in B's stats", async () => {
    const type = unique("replica_paused");
    const { action } = await enqueue(b, { actionType: type });
    await pause(a, KIND.type, type);
    expect(await claimNext(b, { actionTypes: [type] })).toBeNull();
    const stats = await queueStats(b);
    expect(stats.pauses.map((p) => p.scope)).toEqual([{ kind: KIND.type, value: type }]);
    await resume(b, KIND.type, type);
    expect((await claimNext(b, { actionTypes: [type] }))?.action.id).toBe(action.id);
  });

  it("an auto-approval pause made on A holds enqueues on B at once", async () => {
    await pause(a, KIND.auto);
    const { action } = await enqueue(b, { actionType: unique("replica_auto") });
    expect(action).toMatchObject({ status: STATUS.pending, autonomousEligible: true });
  });

  it("a stream on B stays quiet while A pauses everything, and a resume on A wakes it", async () => {
    const type = unique("replica_wake");
    const worker = stream(b, { worker: "worker:b", actionTypes: [type], maxInFlight: 4 });
    await worker.atLeast(1, isHeartbeat, "the opening heartbeat");
    await pause(a, KIND.all);
    const viaA = (await enqueue(a, { actionType: type })).action;
    const viaB = (await enqueue(b, { actionType: type })).action;
    await sleep(800);
    expect(claimsOf(worker)).toEqual([]);
    expect(worker.done).toBe(false);
    expect(await claimNext(b, { actionTypes: [type] })).toBeNull();

    const resumedAt = Date.now();
    await resume(a, KIND.all);
    // Within seconds: the resume's NOTIFY from A, not B's hourly poll.
    await nthClaim(worker, 2, 5000);
    expect(Date.now() - resumedAt).toBeLessThan(5000);
    expect(
      claimsOf(worker)
        .map((c) => c.action.id)
        .sort(),
    ).toEqual([viaA.id, viaB.id].sort());
    for (const claim of claimsOf(worker)) await b.grpc.unary("AckClaim", { id: claim.action.id, claimToken: claim.claimToken });
  });
});
