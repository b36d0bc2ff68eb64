// WatchEvents with max_batch, driven through the real server over the
// network: a watcher that is behind gets many events per message, a
// caught-up one gets each new event at once, cursors resume without a gap,
// filters apply inside batches, bad sizes are refused before anything is
// written, and a watcher that does not ask keeps getting one event per
// message.
import { status as GrpcCode } from "@grpc/grpc-js";
import { Code, ConnectError } from "@connectrpc/connect";
import type { WatchEventsResponse } from "../gen/actionq/v1/action_queue_service_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, closeWithin, startTestServer } from "./support/harness.js";
import { ConnectStream, type GrpcStream, allEventIds, cancelAfterEach, eventsOf, isHeartbeat, openWatch } from "./support/streams.js";
import { sleep } from "./support/wait.js";
import type { WireEvent, WireTimestamp } from "./support/wire.js";

/** WatchEventsResponse as grpc-js hands it over (`oneofs: true`). */
type BatchStreamMessage =
  | { kind: "event"; event: WireEvent; cursor: string }
  | { kind: "events"; events: { events: WireEvent[] }; cursor: string }
  | { kind: "heartbeat"; heartbeat: { serverTime: WireTimestamp }; cursor: string };

const track = cancelAfterEach();

function watch(t: TestServer, request: Record<string, unknown>): GrpcStream<BatchStreamMessage> {
  return track(openWatch(t, request) as unknown as GrpcStream<BatchStreamMessage>);
}

function watchWithConnect(
  t: TestServer,
  request: { afterId?: bigint; fromNow?: boolean; maxBatch?: number; actionId?: bigint },
): ConnectStream<WatchEventsResponse> {
  return track(new ConnectStream((signal) => t.client.watchEvents(request, { signal })));
}

const batchesOf = (stream: { received: BatchStreamMessage[] }) =>
  stream.received.flatMap((message) => (message.kind === "events" ? [{ ids: message.events.events.map((event) => event.id), cursor: message.cursor }] : []));
const batchedIds = (stream: { received: BatchStreamMessage[] }) => batchesOf(stream).flatMap((batch) => batch.ids);

const connectBatchesOf = (stream: { received: WatchEventsResponse[] }) =>
  stream.received.flatMap((message) =>
    message.kind.case === "events" ? [{ ids: message.kind.value.events.map((event) => event.id.toString()), cursor: message.cursor.toString() }] : [],
  );
const connectBatchedIds = (stream: { received: WatchEventsResponse[] }) => connectBatchesOf(stream).flatMap((batch) => batch.ids);

/** Enqueues `count` SAFE actions in EnqueueActions calls: two events each
 * (action_enqueued, action_approved), committed together per call. */
async function enqueueInBulk(t: TestServer, actionType: string, count: number, perCall = 625): Promise<string[]> {
  const ids: string[] = [];
  for (let done = 0; done < count; done += perCall) {
    const requests = Array.from({ length: Math.min(perCall, count - done) }, (_, i) => ({
      actionType,
      createdBy: "human:tester",
      targetRef: `${actionType}-${done + i}`,
    }));
    const { results } = await t.client.enqueueActions({ requests });
    for (const result of results) {
      if (result.result.case !== "ok") throw new Error(`enqueue refused: ${JSON.stringify(result.result.value)}`);
      ids.push(result.result.value.action!.id.toString());
    }
  }
  return ids;
}

async function eventIdsWhere(t: TestServer, where: string, params: unknown[] = []): Promise<string[]> {
  const { rows } = await t.db.query<{ id: string }>(`SELECT e.id::text AS id FROM events e WHERE ${where} ORDER BY e.id`, params);
  return rows.map((row) => row.id);
}

describe("WatchEvents in batches", () => {
  let t: TestServer;
  let backlog: string[];
  beforeAll(async () => {
    // Long heartbeats: a batch that arrives promptly cannot have ridden on one.
    t = await startTestServer({ ACTIONQ_HEARTBEAT_SECONDS: "30" });
    await enqueueInBulk(t, "batch_backlog", 1250);
    backlog = await allEventIds(t.db);
  }, 120_000);
  afterAll(async () => {
    await closeWithin(t);
  });

  it("a watcher that is behind gets a backlog of 2,500 events in a few batches of at most 500, each event once and in order", async () => {
    expect(backlog).toHaveLength(2500);
    const stream = watch(t, { afterId: "0", maxBatch: 500 });
    await stream.until(
      () => `the backlog (${batchedIds(stream).length} of ${backlog.length} events)`,
      () => batchedIds(stream).length >= backlog.length,
      20_000,
    );
    expect(stream.received[0]).toMatchObject({ kind: "heartbeat", cursor: "0" });
    expect(stream.received.filter((message) => message.kind === "event")).toEqual([]);
    const batches = batchesOf(stream);
    expect(batchedIds(stream).slice(0, backlog.length)).toEqual(backlog);
    expect(batches.length).toBeLessThan(backlog.length);
    expect(batches.length).toBeLessThanOrEqual(Math.ceil(backlog.length / 500) + 1);
    for (const batch of batches) {
      expect(batch.ids.length).toBeGreaterThanOrEqual(1);
      expect(batch.ids.length).toBeLessThanOrEqual(500);
      // Resuming from a batch's cursor repeats nothing and skips nothing.
      expect(batch.cursor).toBe(batch.ids.at(-1));
    }
  });

  it("a caught-up batched watcher gets a new event at once, as a batch of one", async () => {
    const stream = watchWithConnect(t, { fromNow: true, maxBatch: 100 });
    await stream.atLeast(1, (message) => message.kind.case === "heartbeat", "the opening heartbeat", 10_000);
    const started = performance.now();
    const { event } = await t.client.emitEvent({ eventType: "coordinator_cycle", actor: "dispatcher:main", payload: { batch: "of one" } });
    // Well before the 30 s heartbeat: nothing waits to fill the batch.
    await stream.atLeast(1, (message) => message.kind.case === "events", "the batch with the new event", 10_000);
    expect(performance.now() - started).toBeLessThan(10_000);
    const [batch] = connectBatchesOf(stream);
    expect(batch).toEqual({ ids: [event!.id.toString()], cursor: event!.id.toString() });
    expect(stream.received.some((message) => message.kind.case === "event")).toBe(false);
  });

  it("events committed together reach a caught-up batched watcher in batches of at most max_batch", async () => {
    const stream = watchWithConnect(t, { fromNow: true, maxBatch: 100 });
    await stream.atLeast(1, (message) => message.kind.case === "heartbeat", "the opening heartbeat", 10_000);
    const from = stream.received[0]!.cursor;
    await enqueueInBulk(t, "batch_live", 150, 150);
    const expected = await eventIdsWhere(t, "e.id > $1", [from.toString()]);
    expect(expected).toHaveLength(300);
    await stream.until(
      () => `the live events (${connectBatchedIds(stream).length} of ${expected.length})`,
      () => connectBatchedIds(stream).length >= expected.length,
      10_000,
    );
    expect(connectBatchedIds(stream)).toEqual(expected);
    const batches = connectBatchesOf(stream);
    expect(batches.length).toBeLessThan(expected.length);
    for (const batch of batches) {
      expect(batch.ids.length).toBeLessThanOrEqual(100);
      expect(batch.cursor).toBe(batch.ids.at(-1));
    }
  });

  it("resuming from a batch's cursor after a disconnect loses nothing and repeats nothing", async () => {
    const all = await allEventIds(t.db);
    const first = watch(t, { afterId: "0", maxBatch: 300 });
    await first.until("two batches", () => batchesOf(first).length >= 2, 10_000);
    await first.cancel();
    const kept = batchesOf(first).slice(0, 2);
    const cursor = kept[1]!.cursor;
    const resumed = watchWithConnect(t, { afterId: BigInt(cursor), maxBatch: 300 });
    const rest = all.filter((id) => BigInt(id) > BigInt(cursor));
    await resumed.until(
      () => `the rest (${connectBatchedIds(resumed).length} of ${rest.length})`,
      () => connectBatchedIds(resumed).length >= rest.length,
      15_000,
    );
    // Anything more would be a repeat; give it a moment to show.
    await sleep(200);
    expect([...kept.flatMap((batch) => batch.ids), ...connectBatchedIds(resumed)]).toEqual(all);
  });

  it("filters apply inside batches: event_types and action_id", async () => {
    const approved = await eventIdsWhere(t, "e.event_type = 'action_approved'");
    const byType = watch(t, { afterId: "0", maxBatch: 400, eventTypes: ["action_approved"] });
    await byType.until(
      () => `the approvals (${batchedIds(byType).length} of ${approved.length})`,
      () => batchedIds(byType).length >= approved.length,
      15_000,
    );
    expect(batchedIds(byType)).toEqual(approved);
    for (const message of byType.received) {
      if (message.kind === "events") {
        expect(message.events.events.length).toBeLessThanOrEqual(400);
        expect(new Set(message.events.events.map((event) => event.eventType))).toEqual(new Set(["action_approved"]));
      }
    }

    const [id] = await enqueueInBulk(t, "batch_one", 1);
    const { claim } = await t.client.claimAction({ worker: "worker:batches", actionTypes: ["batch_one"] });
    await t.client.completeAction({ id: claim!.action!.id, claimToken: claim!.claimToken, resultRef: "done" });
    const ofAction = (await eventsOf(t.db, id!)).map((event) => event.id);
    expect(ofAction).toHaveLength(4);
    const byAction = watchWithConnect(t, { actionId: BigInt(id!), maxBatch: 50 });
    await byAction.until("the action's events", () => connectBatchedIds(byAction).length >= ofAction.length, 10_000);
    expect(connectBatchedIds(byAction)).toEqual(ofAction);
  });

  it("refuses max_batch below 0 or above the page size cap with INVALID_ARGUMENT naming max_batch, and writes nothing", async () => {
    for (const maxBatch of [-1, 1001]) {
      const stream = watch(t, { afterId: "0", maxBatch });
      const status = await stream.status;
      expect(status.code, `max_batch ${maxBatch}`).toBe(GrpcCode.INVALID_ARGUMENT);
      expect(status.details).toContain("max_batch");
      expect(stream.received).toEqual([]);
    }
    const viaConnect = watchWithConnect(t, { maxBatch: -5 });
    await viaConnect.ended;
    expect(viaConnect.error).toBeInstanceOf(ConnectError);
    expect((viaConnect.error as ConnectError).code).toBe(Code.InvalidArgument);
    expect((viaConnect.error as ConnectError).rawMessage).toContain("max_batch");
    expect(viaConnect.received).toEqual([]);
  });

  it("a watcher that does not set max_batch still gets one bare event per message", async () => {
    const all = await allEventIds(t.db);
    const stream = watch(t, { afterId: "0" });
    await stream.atLeast(all.length, (message) => message.kind === "event", "every event, one per message", 20_000);
    const events = stream.received.filter((message) => message.kind !== "heartbeat");
    expect(events.every((message) => message.kind === "event")).toBe(true);
    expect(events.map((message) => (message.kind === "event" ? message.event.id : ""))).toEqual(all);
    expect(events.every((message) => message.kind === "event" && message.cursor === message.event.id)).toBe(true);
    expect(stream.received.filter(isHeartbeat).length).toBeGreaterThanOrEqual(1);
  });
});
