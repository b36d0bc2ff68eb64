// ListEvents and WatchEvents, driven through the real server over the
// network: paging by cursor, filters, replay then live delivery without a gap
// or a repeat at the seam, a slow reconnecting follower under concurrent
// writers, and how watch streams end.
import { status as GrpcCode } from "@grpc/grpc-js";
import { Code, ConnectError } from "@connectrpc/connect";
import type { WatchEventsResponse } from "../gen/actionq/v1/action_queue_service_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, closeWithin, grpcError, startTestServer } from "./support/harness.js";
import {
  ConnectStream,
  type GrpcStream,
  type WatchStreamMessage,
  allEventIds,
  cancelAfterEach,
  enqueueMany,
  eventsOf,
  isHeartbeat,
  openOnServer,
  openWatch,
} from "./support/streams.js";
import { eventually, sleep } from "./support/wait.js";

const track = cancelAfterEach();

const eventIds = (stream: { received: WatchStreamMessage[] }) => stream.received.flatMap((message) => (message.kind === "event" ? [message.event.id] : []));
const connectEventIds = (stream: { received: WatchEventsResponse[] }) =>
  stream.received.flatMap((message) => (message.kind.case === "event" ? [message.kind.value.id.toString()] : []));

function expectStrictlyIncreasing(ids: string[]): void {
  const out = ids.findIndex((id, index) => index > 0 && BigInt(id) <= BigInt(ids[index - 1]!));
  expect(out, `ids out of order or repeated at index ${out}: ${ids.slice(Math.max(0, out - 2), out + 2).join(", ")}`).toBe(-1);
}

/** Claims and completes one action of this type through ClaimAction. */
async function claimAndComplete(t: TestServer, actionType: string, worker = "worker:events"): Promise<string> {
  const { claim } = await t.client.claimAction({ worker, actionTypes: [actionType] });
  if (!claim?.action) throw new Error(`nothing of type ${actionType} to claim`);
  await t.client.completeAction({ id: claim.action.id, claimToken: claim.claimToken, resultRef: "done" });
  return claim.action.id.toString();
}

function watchWithConnect(t: TestServer, request: { afterId?: bigint; actionId?: bigint; eventTypes?: string[] }): ConnectStream<WatchEventsResponse> {
  return track(new ConnectStream((signal) => t.client.watchEvents(request, { signal })));
}

describe("ListEvents", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
    // A log with every kind of writer in it.
    await enqueueMany(t, "list_job", 25);
    for (let i = 0; i < 5; i++) await claimAndComplete(t, "list_job");
    for (let i = 0; i < 3; i++) await t.client.emitEvent({ eventType: "coordinator_cycle", actor: "dispatcher:main", payload: { cycle: i } });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("pages through the whole log by next_after_id, every event once and in id order", async () => {
    const seen: string[] = [];
    let afterId = 0n;
    for (let page = 0; page < 100; page++) {
      const res = await t.client.listEvents({ afterId, pageSize: 7 });
      if (res.events.length === 0) {
        expect(res.nextAfterId).toBe(afterId);
        break;
      }
      expect(res.events.length).toBeLessThanOrEqual(7);
      if (res.events.length === 7) expect(res.nextAfterId).toBe(res.events.at(-1)!.id);
      expect(res.nextAfterId).toBeGreaterThanOrEqual(res.events.at(-1)!.id);
      seen.push(...res.events.map((event) => event.id.toString()));
      afterId = res.nextAfterId;
    }
    expectStrictlyIncreasing(seen);
    expect(seen).toEqual(await allEventIds(t.db));
    expect(seen.length).toBe(25 * 2 + 5 * 2 + 3);
  });

  it("filters by action_id and by event_types", async () => {
    const [id] = await enqueueMany(t, "list_filter_job");
    await claimAndComplete(t, "list_filter_job");
    const ofAction = await t.client.listEvents({ actionId: BigInt(id!), pageSize: 1000 });
    expect(ofAction.events.map((event) => [event.id.toString(), event.eventType])).toEqual(
      (await eventsOf(t.db, id!)).map((event) => [event.id, event.event_type]),
    );
    expect(ofAction.events.map((event) => event.eventType)).toEqual(["action_enqueued", "action_approved", "action_claimed", "action_completed"]);

    const finished = await t.client.listEvents({ eventTypes: ["action_completed", "coordinator_cycle"], pageSize: 1000 });
    const { rows } = await t.db.query<{ id: string }>(
      "SELECT e.id::text AS id FROM events e WHERE e.event_type IN ('action_completed', 'coordinator_cycle') ORDER BY e.id",
    );
    expect(finished.events.map((event) => event.id.toString())).toEqual(rows.map((row) => row.id));
    expect(new Set(finished.events.map((event) => event.eventType))).toEqual(new Set(["action_completed", "coordinator_cycle"]));

    const both = await t.client.listEvents({ actionId: BigInt(id!), eventTypes: ["action_claimed"] });
    expect(both.events.map((event) => [event.actionId.toString(), event.eventType])).toEqual([[id, "action_claimed"]]);
  });

  it("rejects an unknown event type filter with INVALID_ARGUMENT", async () => {
    const viaGrpc = await grpcError(t.grpc.unary("ListEvents", { eventTypes: ["action_completed", "action_exploded"] }));
    expect(viaGrpc.code).toBe(GrpcCode.INVALID_ARGUMENT);
    expect(viaGrpc.details).toContain("event_types[1]");
    const viaConnect = await t.client.listEvents({ eventTypes: ["nope"] }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(viaConnect).toBeInstanceOf(ConnectError);
    expect((viaConnect as ConnectError).code).toBe(Code.InvalidArgument);
  });

  it("lets a follower continue from next_after_id of a non-full page without missing later events", async () => {
    const caughtUp = await t.client.listEvents({ afterId: 0n, pageSize: 1000 });
    const known = await allEventIds(t.db);
    expect(caughtUp.events.length).toBe(known.length);
    expect(caughtUp.nextAfterId).toBe(BigInt(known.at(-1)!));

    // A filtered follower's cursor may run past the last event it got.
    const cycles = await t.client.listEvents({ eventTypes: ["coordinator_cycle"], pageSize: 1000 });
    expect(cycles.nextAfterId).toBeGreaterThanOrEqual(cycles.events.at(-1)!.id);

    await enqueueMany(t, "list_later_job", 2);
    const emitted = await t.client.emitEvent({ eventType: "coordinator_cycle", actor: "dispatcher:main", payload: { late: true } });

    const next = await t.client.listEvents({ afterId: caughtUp.nextAfterId, pageSize: 1000 });
    const { rows } = await t.db.query<{ id: string }>("SELECT e.id::text AS id FROM events e WHERE e.id > $1 ORDER BY e.id", [caughtUp.nextAfterId.toString()]);
    expect(next.events.map((event) => event.id.toString())).toEqual(rows.map((row) => row.id));
    expect(next.events).toHaveLength(5);

    const nextCycles = await t.client.listEvents({ afterId: cycles.nextAfterId, eventTypes: ["coordinator_cycle"], pageSize: 1000 });
    expect(nextCycles.events.map((event) => event.id)).toEqual([emitted.event!.id]);
  });

  it("records an EmitEvent coordinator_cycle with its payload", async () => {
    const payload = { cycle: 42, decided: ["approve", "defer"], budget: { used: 3.5, left: null }, note: "nightly" };
    const res = await t.client.emitEvent({ eventType: "coordinator_cycle", actor: "dispatcher:main", payload });
    expect(res.event).toMatchObject({ eventType: "coordinator_cycle", actor: "dispatcher:main", actionId: 0n, payload });

    const listed = await t.client.listEvents({ afterId: res.event!.id - 1n, eventTypes: ["coordinator_cycle"], pageSize: 1 });
    expect(listed.events).toHaveLength(1);
    expect(listed.events[0]).toMatchObject({ id: res.event!.id, eventType: "coordinator_cycle", actor: "dispatcher:main", payload });
    const { rows } = await t.db.query("SELECT action_id, event_type, actor, payload FROM events WHERE id = $1", [res.event!.id.toString()]);
    expect(rows[0]).toEqual({ action_id: null, event_type: "coordinator_cycle", actor: "dispatcher:main", payload });
  });
});

describe("WatchEvents replay and live delivery", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_HEARTBEAT_SECONDS: "0.2" });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("replays from the cursor, then delivers live events with no gap and no repeat at the seam", async () => {
    // Each SAFE action writes two events: action_enqueued, action_approved.
    const perAction = 2;
    const before = 20;
    const during = 20;
    await enqueueMany(t, "watch_job", before, { concurrency: 4 });

    const watch = track(openWatch(t, { afterId: 0 }));
    await watch.atLeast(1, () => true, "the opening heartbeat");
    expect(watch.received[0]).toMatchObject({ kind: "heartbeat", cursor: "0" });
    // Enqueue while the replay may still be running, so that the seam is
    // crossed while events are being written.
    await enqueueMany(t, "watch_job", during, { concurrency: 4 });
    await watch.atLeast((before + during) * perAction, (message) => message.kind === "event", "replayed and live events", 10_000);

    const ids = eventIds(watch);
    expectStrictlyIncreasing(ids);
    expect(ids).toEqual(await allEventIds(t.db));
    expect(ids).toHaveLength((before + during) * perAction);

    // Quiet now: heartbeats only, and they carry the cursor of the last event.
    const delivered = watch.received.length;
    await watch.atLeast(1, (message) => watch.received.indexOf(message) >= delivered && isHeartbeat(message), "a heartbeat after the last event", 10_000);
    expect(eventIds(watch)).toHaveLength((before + during) * perAction);
    const heartbeat = watch.received.slice(delivered).find(isHeartbeat)!;
    expect(heartbeat.cursor).toBe(ids.at(-1));
    // Every message's cursor is where to resume: never behind an event
    // already delivered.
    for (let i = 1; i < watch.received.length; i++) expect(BigInt(watch.received[i]!.cursor)).toBeGreaterThanOrEqual(BigInt(watch.received[i - 1]!.cursor));

    // Resuming from a received cursor gives exactly the rest.
    const seam = watch.received.find((message) => message.kind === "event" && message.event.id === ids[before * perAction - 1])!;
    const resumed = watchWithConnect(t, { afterId: BigInt(seam.cursor) });
    const rest = ids.slice(before * perAction);
    await resumed.atLeast(rest.length, (message) => message.kind.case === "event", "the remaining events", 5000);
    await sleep(300);
    expect(connectEventIds(resumed)).toEqual(rest);
  });
});

describe("instants inside event payloads", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("are RFC 3339 in UTC with a Z, like every other instant of the API", async () => {
    const RFC3339_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
    const pending = await t.client.enqueueAction({ actionType: "instants_dangerous", createdBy: "human:p", riskLevel: 3 });
    const later = await t.client.enqueueAction({
      actionType: "instants_later",
      createdBy: "human:p",
      runAfter: { seconds: BigInt(Math.floor(Date.now() / 1000) + 3600), nanos: 0 },
    });
    await t.client.enqueueAction({ actionType: "instants_now", createdBy: "human:p", maxAttempts: 3 });
    const { claim } = await t.client.claimAction({ worker: "worker:instants", actionTypes: ["instants_now"] });
    await t.client.failAction({ id: claim!.action!.id, claimToken: claim!.claimToken, reason: "again", retryable: true });
    await t.client.pauseClaims({ scope: { kind: 2, value: "instants_now" }, actor: "human:o", reason: "check" });
    await t.client.resumeClaims({ scope: { kind: 2, value: "instants_now" }, actor: "human:o" });

    const { events } = await t.client.listEvents({ pageSize: 1000 });
    const instants = events.flatMap((event) =>
      Object.entries(event.payload ?? {})
        .filter(([key]) => /(_at|_deadline|run_after)$/.test(key) && event.payload![key] !== null)
        .map(([key, value]) => ({ type: event.eventType, key, value })),
    );
    const keys = new Set(instants.map((i) => `${i.type}.${i.key}`));
    for (const expected of [
      "action_enqueued.approval_expires_at",
      "action_enqueued.run_after",
      "action_claimed.claim_deadline",
      "action_retry_scheduled.run_after",
      "coordinator_resumed.paused_at",
    ]) {
      expect(keys, expected).toContain(expected);
    }
    for (const instant of instants) expect(instant.value, `${instant.type}.${instant.key}`).toMatch(RFC3339_UTC);
    expect(pending.action!.id).not.toBe(later.action!.id);
  });
});

describe("WatchEvents from now", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_HEARTBEAT_SECONDS: "0.2" });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("replays nothing already in the log, then delivers every later event, and its opening cursor resumes without a gap", async () => {
    await enqueueMany(t, "before_now", 10, { concurrency: 4 });
    const before = await allEventIds(t.db);
    const watch = track(openWatch(t, { fromNow: true }));
    await watch.atLeast(1, () => true, "the opening heartbeat");
    const opening = watch.received[0]!;
    expect(opening.kind).toBe("heartbeat");
    expect(BigInt(opening.cursor)).toBeGreaterThanOrEqual(BigInt(before.at(-1)!));

    await enqueueMany(t, "after_now", 10, { concurrency: 4 });
    const after = (await allEventIds(t.db)).filter((id) => !before.includes(id));
    await watch.atLeast(after.length, (message) => message.kind === "event", "the events written after the call", 5000);
    await sleep(300);
    expect(eventIds(watch)).toEqual(after);

    // The opening cursor is a real resume point: from it, the same events.
    const resumed = watchWithConnect(t, { afterId: BigInt(opening.cursor) });
    await resumed.atLeast(after.length, (message) => message.kind.case === "event", "the same events again", 5000);
    await sleep(300);
    expect(connectEventIds(resumed)).toEqual(after);
  });

  it("refuses from_now with an after_id, naming the field, and opens nothing", async () => {
    const error = await new Promise<{ code: number; details: string }>((resolve, reject) => {
      const stream = t.grpc.stream("WatchEvents", { fromNow: true, afterId: "5" });
      stream.on("data", () => reject(new Error("a message arrived")));
      stream.on("error", (e) => resolve(e as never));
    });
    expect(error.code).toBe(GrpcCode.INVALID_ARGUMENT);
    expect(error.details).toContain("after_id");
    expect(openOnServer(t).watchers).toBe(0);
  });
});

describe("WatchEvents under concurrent writers", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_HEARTBEAT_SECONDS: "0.2" });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("a slow follower that reconnects from its cursor sees every event exactly once while eight writers race", { timeout: 60_000 }, async () => {
    const writers = 8;
    const rounds = 12;
    const writer = async (w: number) => {
      const actionType = `gapless_${w}`;
      for (let round = 0; round < rounds; round++) {
        await t.client.enqueueAction({ actionType, createdBy: `human:writer-${w}` });
        const { claim } = await t.client.claimAction({ worker: `writer-${w}`, actionTypes: [actionType] });
        if (round % 4 === 3) await t.client.failAction({ id: claim!.action!.id, claimToken: claim!.claimToken, reason: "flaky" });
        else await t.client.completeAction({ id: claim!.action!.id, claimToken: claim!.claimToken, resultRef: `r-${w}-${round}` });
        await t.client.emitEvent({ eventType: "coordinator_cycle", actor: `dispatcher:${w}`, payload: { writer: w, round } });
      }
    };

    const seen: string[] = [];
    const cursors: bigint[] = [];
    let cursor = 0n;
    let reconnects = 0;
    let target: bigint | undefined;
    const follower = (async () => {
      while (target === undefined || cursor < target) {
        const abort = new AbortController();
        let sinceConnect = 0;
        try {
          for await (const message of t.client.watchEvents({ afterId: cursor }, { signal: abort.signal })) {
            cursors.push(message.cursor);
            if (message.kind.case === "event") {
              seen.push(message.kind.value.id.toString());
              sinceConnect++;
              await sleep(2);
            }
            cursor = message.cursor;
            // Drop the connection a few times, mid-stream, while writers run.
            if (sinceConnect >= 100 && reconnects < 4) {
              reconnects++;
              abort.abort();
              break;
            }
            if (target !== undefined && cursor >= target) break;
          }
        } catch (error) {
          if (!abort.signal.aborted) throw error;
        }
      }
    })();

    await Promise.all(Array.from({ length: writers }, (_, w) => writer(w)));
    const all = await allEventIds(t.db);
    target = BigInt(all.at(-1)!);
    await Promise.race([
      follower,
      sleep(30_000).then(() => {
        throw new Error(`the follower did not reach event ${target} in 30 s; it is at ${cursor}`);
      }),
    ]);

    expect(reconnects).toBeGreaterThanOrEqual(2);
    expect(all).toHaveLength(writers * rounds * 5);
    expectStrictlyIncreasing(seen);
    expect(seen).toEqual(all);
    for (let i = 1; i < cursors.length; i++) if (cursors[i]! < cursors[i - 1]!) expect.fail(`cursor went back from ${cursors[i - 1]} to ${cursors[i]}`);
  });
});

describe("WatchEvents followers", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_HEARTBEAT_SECONDS: "0.2" });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("a watcher filtered by action_id sees only that action's events, and resumes from a heartbeat's cursor", async () => {
    const [mine] = await enqueueMany(t, "filtered_mine");
    const [other] = await enqueueMany(t, "filtered_other");
    const watch = track(openWatch(t, { afterId: 0, actionId: mine }));
    await claimAndComplete(t, "filtered_mine");
    await claimAndComplete(t, "filtered_other");
    await t.client.emitEvent({ eventType: "coordinator_paused", actor: "dispatcher:main", actionId: BigInt(mine!), payload: { why: "test" } });
    await t.client.emitEvent({ eventType: "coordinator_paused", actor: "dispatcher:main", actionId: BigInt(other!), payload: { why: "test" } });

    await watch.atLeast(5, (message) => message.kind === "event", "the action's five events", 5000);
    const count = watch.received.length;
    await watch.atLeast(1, (message) => watch.received.indexOf(message) >= count && isHeartbeat(message), "a heartbeat after them", 10_000);
    const expected = (await eventsOf(t.db, mine!)).map((event) => event.id);
    expect(eventIds(watch)).toEqual(expected);
    expect(watch.received.every((message) => message.kind !== "event" || message.event.actionId === mine)).toBe(true);

    // The heartbeat's cursor may be past events the filter skipped; resuming
    // from it misses nothing of this action.
    const heartbeat = watch.received.slice(count).find(isHeartbeat)!;
    expect(BigInt(heartbeat.cursor)).toBeGreaterThanOrEqual(BigInt(expected.at(-1)!));
    await watch.cancel();
    const resumed = track(openWatch(t, { afterId: heartbeat.cursor, actionId: mine }));
    await resumed.atLeast(1, () => true, "the opening heartbeat");
    const later = await t.client.emitEvent({ eventType: "coordinator_cycle", actor: "dispatcher:main", actionId: BigInt(mine!) });
    await t.client.emitEvent({ eventType: "coordinator_cycle", actor: "dispatcher:main", actionId: BigInt(other!) });
    await resumed.atLeast(1, (message) => message.kind === "event", "the later event", 10_000);
    await sleep(300);
    expect(eventIds(resumed)).toEqual([later.event!.id.toString()]);
  });

  it("rejects a watch with an unknown event type with INVALID_ARGUMENT", async () => {
    const watch = track(openWatch(t, { eventTypes: ["action_exploded"] }));
    const status = await Promise.race([watch.status, sleep(10_000).then(() => ({ code: -1, details: "no status in 10 s" }))]);
    expect(status.code).toBe(GrpcCode.INVALID_ARGUMENT);
    expect(watch.received).toEqual([]);
  });

  it("ends a watch cleanly when the client cancels, on the wire and on the server", async () => {
    const grpcWatch = track(openWatch(t, { afterId: 0 }));
    const connectWatch = watchWithConnect(t, { afterId: 0n });
    await grpcWatch.atLeast(1, isHeartbeat, "a heartbeat");
    await connectWatch.atLeast(1, (message) => message.kind.case === "heartbeat", "a heartbeat");
    await eventually(() => openOnServer(t).watchers === 2, `two watchers on the server (now ${JSON.stringify(openOnServer(t))})`);

    expect((await grpcWatch.cancel()).code).toBe(GrpcCode.CANCELLED);
    await connectWatch.cancel();
    expect(connectWatch.error).toBeInstanceOf(ConnectError);
    expect((connectWatch.error as ConnectError).code).toBe(Code.Canceled);
    // The server forgets both watchers.
    await eventually(() => openOnServer(t).watchers === 0, "no watchers left on the server");
  });
});

describe("WatchEvents with a follower that stopped reading", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_HEARTBEAT_SECONDS: "0.2" });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("forgets a watch that closes while the server is blocked sending to it", async () => {
    // 600 events: far more than the HTTP/2 window holds.
    await enqueueMany(t, "backlog_job", 300, { concurrency: 20 });
    const stalled = track(openWatch(t, { afterId: 0 }));
    await stalled.atLeast(1, isHeartbeat, "the opening heartbeat");
    stalled.call.pause();
    await eventually(() => openOnServer(t).watchers === 1, "the watcher on the server");
    await sleep(500);

    expect((await stalled.cancel()).code).toBe(GrpcCode.CANCELLED);
    // Well under the 30 s after which the slow-consumer cut would end the
    // blocked stream anyway: the cancel itself made the server forget it.
    await eventually(() => openOnServer(t).watchers === 0, "no watchers left on the server", 10_000).catch((error: Error) => {
      throw new Error(`${error.message}: the server still has ${openOnServer(t).watchers} watcher(s) 10 s after the only watch was cancelled`);
    });
  });
});

describe("WatchEvents at server shutdown", () => {
  let t: TestServer;
  beforeAll(async () => {
    // A long shutdown grace: watches that did not end at shutdown would
    // hold the close for all of it, then be cut.
    t = await startTestServer({ ACTIONQ_HEARTBEAT_SECONDS: "0.2", ACTIONQ_SHUTDOWN_GRACE_SECONDS: "60" });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("ends watch streams cleanly when the server shuts down", async () => {
    await enqueueMany(t, "shutdown_job", 3);
    const grpcWatch: GrpcStream<WatchStreamMessage> = track(openWatch(t, { afterId: 0 }));
    const connectWatch = watchWithConnect(t, { afterId: 0n });
    await grpcWatch.atLeast(6, (message) => message.kind === "event", "the replayed events");
    await connectWatch.atLeast(6, (message) => message.kind.case === "event", "the replayed events");

    const closing = Date.now();
    await t.server.close();
    // Well under the grace: the watches ended on their own.
    expect(Date.now() - closing).toBeLessThan(15_000);
    expect(await grpcWatch.status).toMatchObject({ code: GrpcCode.OK });
    await connectWatch.ended;
    expect(connectWatch.error).toBeUndefined();
    expect(eventIds(grpcWatch)).toEqual(await allEventIds(t.db));
  });
});
