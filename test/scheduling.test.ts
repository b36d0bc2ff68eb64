// Scheduling, driven through the real server over the network: run_after
// keeps an action unclaimable until it is due and then pushes it to a
// waiting stream; an approval of a future action waits for its time; and
// deferred actions stay out of the ready index, so the claim path never
// reads them (checked with EXPLAIN and the index's own row count).
import { status as GrpcCode } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ActionClaimMany } from "../src/store/action-queries.js";
import { type TestServer, closeWithin, grpcError, snapshot, startTestServer } from "./support/harness.js";
import { type WireAction, type WireClaim, type WireTimestamp, enqueue, errorInfoOf, millis } from "./support/wire.js";
import { cancelAfterEach, claimsOf, nthClaim, openClaimStream } from "./support/streams.js";
import { eventually, sleep } from "./support/wait.js";

const track = cancelAfterEach();

let t: TestServer;
beforeAll(async () => {
  // An hour's backstop poll: a deferred action must come due by the
  // scheduler's own timer.
  t = await startTestServer({ ACTIONQ_POLL_INTERVAL_SECONDS: "3600", ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600", ACTIONQ_HEARTBEAT_SECONDS: "0.2" });
});
afterAll(async () => {
  await closeWithin(t);
});

let counter = 0;
const unique = (label: string) => `${label}_${++counter}`;
const timestamp = (ms: number) => ({ seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 });
const claim = async (actionType: string) =>
  (await t.grpc.unary<{ claim: WireClaim | null }>("ClaimAction", { worker: "worker:sched", actionTypes: [actionType] })).claim ?? null;
const deferredFlag = async (id: string) => (await t.db.query<{ deferred: boolean }>("SELECT deferred FROM actions WHERE id = $1", [id])).rows[0]!.deferred;

/** The server's clock, from a fresh row's created_at. */
async function serverNow(): Promise<number> {
  const { rows } = await t.db.query<{ now: Date }>("SELECT now() AS now");
  return rows[0]!.now.getTime();
}

describe("run_after", () => {
  it("a deferred action is not counted as claimable in GetQueueStats until it is due", async () => {
    const actionType = unique("not_yet");
    const stats = () => t.grpc.unary<{ claimable: string; counts: { status: string; actionType: string; count: string }[] }>("GetQueueStats", {});
    const before = BigInt((await stats()).claimable);
    await enqueue(t, { actionType, runAfter: timestamp((await serverNow()) + 60_000) });
    const after = await stats();
    expect(after.counts).toContainEqual({ status: "ACTION_STATUS_APPROVED", actionType, count: "1" });
    expect(BigInt(after.claimable)).toBe(before);
  });

  it("an action enqueued to run later is APPROVED but not claimable, and a waiting stream gets it when it is due", async () => {
    const actionType = unique("later");
    const stream = openClaimStream(t, { worker: "waiting-worker", actionTypes: [actionType], maxInFlight: 1 });
    track(stream);
    await stream.atLeast(1, () => true, "the stream's first message");

    // Far enough ahead that the checks before it are still early on a slow machine.
    const due = (await serverNow()) + 2500;
    const action = (await enqueue(t, { actionType, runAfter: timestamp(due) })).action;
    expect(action.status).toBe("ACTION_STATUS_APPROVED");
    expect(millis(action.runAfter)).toBe(due);
    expect(await deferredFlag(action.id)).toBe(true);

    await sleep(600);
    expect(await claim(actionType)).toBeNull();
    expect(claimsOf(stream)).toHaveLength(0);

    const pushed = await nthClaim(stream, 1, 10_000);
    expect(pushed.action.id).toBe(action.id);
    const claimTime = millis((pushed.action as unknown as { claimTime: WireTimestamp }).claimTime);
    expect(claimTime).toBeGreaterThanOrEqual(due);
    // Within seconds: the scheduler's timer, not the hourly poll.
    expect(claimTime - due).toBeLessThan(5000);
    expect(await deferredFlag(action.id)).toBe(false);
  });

  it("a run_after in the past is claimable at once", async () => {
    const actionType = unique("past");
    const action = (await enqueue(t, { actionType, runAfter: timestamp(Date.now() - 60_000) })).action;
    expect(await deferredFlag(action.id)).toBe(false);
    expect((await claim(actionType))?.action.id).toBe(action.id);
  });

  it("deferred actions keep claim order among themselves once due (priority, then age)", async () => {
    const actionType = unique("order");
    // Far enough ahead that `now` is claimed before either is due, on a slow machine too.
    const due = (await serverNow()) + 2000;
    const low = (await enqueue(t, { actionType, priority: 5, runAfter: timestamp(due) })).action;
    const high = (await enqueue(t, { actionType, priority: 1, runAfter: timestamp(due + 100) })).action;
    const now = (await enqueue(t, { actionType, priority: 9 })).action;
    expect((await claim(actionType))?.action.id).toBe(now.id);
    await eventually(async () => !(await deferredFlag(low.id)) && !(await deferredFlag(high.id)), "both deferred actions due");
    expect((await claim(actionType))?.action.id).toBe(high.id);
    expect((await claim(actionType))?.action.id).toBe(low.id);
  });

  it("a deferred action can be superseded by a new proposal before it is due", async () => {
    const actionType = unique("supersede_later");
    const old = (await enqueue(t, { actionType, runAfter: timestamp((await serverNow()) + 60_000) })).action;
    const { action: replacement } = await t.grpc.unary<{ action: WireAction }>("EnqueueAction", {
      createdBy: "human:scheduler",
      actionType,
      supersedesId: old.id,
      runAfter: timestamp((await serverNow()) + 120_000),
    });
    expect(replacement.status).toBe("ACTION_STATUS_APPROVED");
    const { action: cancelled } = await t.grpc.unary<{ action: WireAction }>("GetAction", { id: old.id });
    expect(cancelled.status).toBe("ACTION_STATUS_CANCELLED");
    expect(await deferredFlag(old.id)).toBe(false);
  });

  it("refuses a run_after more than a year ahead, changing nothing", async () => {
    const before = await snapshot(t.db);
    const error = await grpcError(enqueue(t, { actionType: unique("far"), runAfter: timestamp(Date.now() + 400 * 86_400_000) }));
    expect(error.code).toBe(GrpcCode.INVALID_ARGUMENT);
    expect(errorInfoOf(error)?.metadata.field).toBe("run_after");
    expect(await snapshot(t.db)).toBe(before);
  });

  it("a deferred action can be cancelled before it is due, and never comes to a stream", async () => {
    const actionType = unique("cancel_later");
    const stream = openClaimStream(t, { worker: "never-gets-it", actionTypes: [actionType], maxInFlight: 1 });
    track(stream);
    // Far enough ahead that the cancel comes first on a slow machine too.
    const due = (await serverNow()) + 2000;
    const action = (await enqueue(t, { actionType, runAfter: timestamp(due) })).action;
    const { action: cancelled } = await t.grpc.unary<{ action: WireAction }>("CancelAction", { id: action.id, actor: "human:op", reason: "not needed" });
    expect(cancelled.status).toBe("ACTION_STATUS_CANCELLED");
    expect(await deferredFlag(action.id)).toBe(false);
    // Until past its time.
    await sleep(Math.max(0, due - Date.now()) + 500);
    expect(claimsOf(stream)).toHaveLength(0);
  });
});

describe("approving an action that is to run later", () => {
  it("an approval before run_after leaves it deferred until then; one after run_after makes it claimable at once", async () => {
    const actionType = unique("approve_later");
    // Far enough ahead that the approval comes first on a slow machine too.
    const due = (await serverNow()) + 2500;
    const early = (await enqueue(t, { actionType, approvalRequired: true, runAfter: timestamp(due) })).action;
    const late = (await enqueue(t, { actionType, approvalRequired: true, runAfter: timestamp(due) })).action;
    expect(early.status).toBe("ACTION_STATUS_PENDING");
    expect(millis(early.runAfter)).toBe(due);

    const { action: approved } = await t.grpc.unary<{ action: WireAction }>("ApproveAction", { id: early.id, approver: "human:bob" });
    expect(approved.status).toBe("ACTION_STATUS_APPROVED");
    expect(millis(approved.runAfter)).toBe(due);
    expect(await deferredFlag(early.id)).toBe(true);
    expect(await claim(actionType)).toBeNull();

    const stream = openClaimStream(t, { worker: "approved-later", actionTypes: [actionType], maxInFlight: 2 });
    track(stream);
    const first = await nthClaim(stream, 1, 10_000);
    expect(first.action.id).toBe(early.id);
    expect(millis((first.action as unknown as { claimTime: WireTimestamp }).claimTime)).toBeGreaterThanOrEqual(due);

    // Past its run_after, an approval makes it claimable straight away.
    await t.grpc.unary("ApproveAction", { id: late.id, approver: "human:bob" });
    expect(await deferredFlag(late.id)).toBe(false);
    // Within seconds: the approval's wakeup, not the hourly poll.
    const second = await nthClaim(stream, 2, 5000);
    expect(second.action.id).toBe(late.id);
  });
});

describe("the claim path and deferred actions", () => {
  it("the claim statements use the ready indexes, which hold no deferred action however many wait", async () => {
    // 20 000 deferred actions, as a big backlog of future work would leave,
    // and a few ready ones.
    const bulkType = unique("backlog");
    await t.db.query(
      `INSERT INTO actions (action_type, status, risk_level, created_by, approved_by, approved_at, run_after, deferred)
       SELECT $1, 'approved', 'safe', 'human:bulk', 'policy:standard', now(), now() + interval '1 day', true
       FROM generate_series(1, 20000)`,
      [bulkType],
    );
    const viaApi = (await enqueue(t, { actionType: bulkType, runAfter: timestamp(Date.now() + 3_600_000) })).action;
    expect(await deferredFlag(viaApi.id)).toBe(true);
    const readyType = unique("ready");
    const ready = [];
    for (let i = 0; i < 5; i++) ready.push((await enqueue(t, { actionType: readyType })).action);
    await t.db.query("VACUUM ANALYZE actions");

    /** The scans of the actions table in a statement's plan. */
    const scans = async (sql: string, params: unknown[]) => {
      const { rows } = await t.db.query(`EXPLAIN (FORMAT JSON) ${sql}`, params);
      const found: { node: string; index?: string }[] = [];
      const walk = (node: Record<string, unknown>) => {
        if (node["Relation Name"] === "actions") found.push({ node: String(node["Node Type"]), index: node["Index Name"] as string | undefined });
        for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) walk(child);
      };
      walk((rows[0]["QUERY PLAN"] as { Plan: Record<string, unknown> }[])[0]!.Plan);
      return found;
    };
    const slot = ["00000000-0000-4000-8000-000000000001"];
    const base = [slot, ["worker:explain"], [60_000], 1, 10_000];
    // The pick of the next action reads actions_ready; the other scan is the
    // UPDATE's own lookup of the picked row by primary key.
    const anyScans = await scans(ActionClaimMany.any, base);
    expect(anyScans.map((scan) => scan.index)).toContain("actions_ready");
    expect(anyScans.filter((scan) => /Seq Scan/.test(scan.node))).toEqual([]);
    const typesScans = await scans(ActionClaimMany.types, [...base, [readyType]]);
    expect(typesScans.some((scan) => scan.index === "actions_ready" || scan.index === "actions_ready_by_type")).toBe(true);
    expect(typesScans.filter((scan) => /Seq Scan/.test(scan.node))).toEqual([]);

    // The partial indexes leave deferred rows out: VACUUM counted their
    // entries exactly.
    const { rows } = await t.db.query<{ relname: string; reltuples: number }>(
      "SELECT relname, reltuples::int AS reltuples FROM pg_class WHERE relname IN ('actions_ready', 'actions_ready_by_type', 'actions_deferred') AND relnamespace = $1::regnamespace",
      [t.schema],
    );
    const entries = Object.fromEntries(rows.map((row) => [row.relname, row.reltuples]));
    const { rows: counts } = await t.db.query<{ ready: number; deferred: number }>(
      "SELECT count(*) FILTER (WHERE status = 'approved' AND NOT deferred)::int AS ready, count(*) FILTER (WHERE status = 'approved' AND deferred)::int AS deferred FROM actions",
    );
    expect(counts[0]!.deferred).toBeGreaterThanOrEqual(20_001);
    expect(entries.actions_ready).toBe(counts[0]!.ready);
    expect(entries.actions_ready_by_type).toBe(counts[0]!.ready);
    expect(entries.actions_deferred).toBe(counts[0]!.deferred);

    // And claiming still works, in order (its speed is bench/'s business).
    for (const action of ready) expect((await claim(readyType))?.action.id).toBe(action.id);
  });
});
