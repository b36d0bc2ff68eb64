// Limits against hostile or broken clients, over the wire: every cap is a
// setting, a request over it is refused naming the setting and changes
// nothing, per-principal stream caps hold and give their slots back, and a
// client that stops reading its stream is cut instead of holding memory.
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, grpcError, snapshot, startTestServer } from "./support/harness.js";
import { enqueue, errorInfoOf, messageOf, toStruct } from "./support/wire.js";
import { GrpcStream, openClaimStream, openWatch } from "./support/streams.js";
import { eventually, sleep } from "./support/wait.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({
    ACTIONQ_MAX_PAYLOAD_BYTES: "2048",
    ACTIONQ_MAX_TEXT_LENGTH: "100",
    ACTIONQ_MAX_REF_LENGTH: "64",
    ACTIONQ_MAX_SOURCE_REFS: "3",
    ACTIONQ_MAX_PAGE_SIZE: "20",
    ACTIONQ_MAX_BATCH: "5",
    ACTIONQ_MAX_MESSAGE_BYTES: "16384",
    ACTIONQ_MAX_STREAMS_PER_PRINCIPAL: "3",
    ACTIONQ_MAX_WATCHERS_PER_PRINCIPAL: "2",
    ACTIONQ_MAX_IN_FLIGHT: "10",
    ACTIONQ_MAX_LEASE_SECONDS: "60",
    ACTIONQ_LEASE_SECONDS: "30",
    ACTIONQ_SLOW_CONSUMER_SECONDS: "1",
  });
});
afterAll(async () => {
  await t?.close();
});

/** Expects the call to be refused with `code`, naming `setting`, and
 * nothing stored to change. */
async function refused(call: () => Promise<unknown>, code: grpc.status, setting: string, field?: string): Promise<void> {
  const before = await snapshot(t.db);
  const error = await grpcError(call());
  expect(grpc.status[error.code]).toBe(grpc.status[code]);
  expect(messageOf(error)).toContain(setting);
  if (field) expect(errorInfoOf(error)?.metadata.field).toBe(field);
  expect(await snapshot(t.db)).toBe(before);
}

const base = { actionType: "limit_probe", createdBy: "human:lim" };

describe("caps on one request, each a setting named in the refusal", () => {
  it("payload size (ACTIONQ_MAX_PAYLOAD_BYTES)", async () => {
    await enqueue(t, { ...base, payload: toStruct({ blob: "x".repeat(1900) }) });
    await refused(
      () => enqueue(t, { ...base, payload: toStruct({ blob: "x".repeat(2100) }) }),
      grpc.status.INVALID_ARGUMENT,
      "ACTIONQ_MAX_PAYLOAD_BYTES",
      "payload",
    );
  });

  it("free text and reference lengths (ACTIONQ_MAX_TEXT_LENGTH, ACTIONQ_MAX_REF_LENGTH)", async () => {
    const { action } = await enqueue(t, { ...base, approvalRequired: true, targetRef: "t".repeat(64) });
    await refused(() => enqueue(t, { ...base, targetRef: "t".repeat(65) }), grpc.status.INVALID_ARGUMENT, "ACTIONQ_MAX_REF_LENGTH", "target_ref");
    await refused(
      () => t.grpc.unary("CancelAction", { id: action.id, actor: "human:lim", reason: "r".repeat(101) }),
      grpc.status.INVALID_ARGUMENT,
      "ACTIONQ_MAX_TEXT_LENGTH",
      "reason",
    );
  });

  it("source_refs entries (ACTIONQ_MAX_SOURCE_REFS)", async () => {
    await enqueue(t, { ...base, sourceRefs: ["a", "b", "c"] });
    await refused(() => enqueue(t, { ...base, sourceRefs: ["a", "b", "c", "d"] }), grpc.status.INVALID_ARGUMENT, "ACTIONQ_MAX_SOURCE_REFS", "source_refs");
  });

  it("page size (ACTIONQ_MAX_PAGE_SIZE): refused above, not clamped", async () => {
    const page = await t.grpc.unary<{ events: unknown[] }>("ListEvents", { pageSize: 20 });
    expect(page.events.length).toBeLessThanOrEqual(20);
    await refused(() => t.grpc.unary("ListEvents", { pageSize: 21 }), grpc.status.INVALID_ARGUMENT, "ACTIONQ_MAX_PAGE_SIZE", "page_size");
    await refused(() => t.grpc.unary("ListActions", { pageSize: 21 }), grpc.status.INVALID_ARGUMENT, "ACTIONQ_MAX_PAGE_SIZE", "page_size");
  });

  it("batch size (ACTIONQ_MAX_BATCH)", async () => {
    const six = Array.from({ length: 6 }, () => ({ ...base }));
    await refused(() => t.grpc.unary("EnqueueActions", { requests: six }), grpc.status.INVALID_ARGUMENT, "ACTIONQ_MAX_BATCH", "requests");
    await refused(
      () => t.grpc.unary("CompleteActions", { requests: six.map((_, i) => ({ id: String(i + 1), claimToken: "00000000-0000-4000-8000-000000000000" })) }),
      grpc.status.INVALID_ARGUMENT,
      "ACTIONQ_MAX_BATCH",
      "requests",
    );
  });

  it("message size (ACTIONQ_MAX_MESSAGE_BYTES) is RESOURCE_EXHAUSTED, before any field is looked at", async () => {
    await refused(() => enqueue(t, { ...base, payload: toStruct({ blob: "y".repeat(20_000) }) }), grpc.status.RESOURCE_EXHAUSTED, "ACTIONQ_MAX_MESSAGE_BYTES");
  });

  it("max_in_flight (ACTIONQ_MAX_IN_FLIGHT) and lease length (ACTIONQ_MAX_LEASE_SECONDS)", async () => {
    const tooMany = openClaimStream(t, { worker: "w:cap", maxInFlight: 11 });
    const status = await tooMany.status;
    expect(grpc.status[status.code]).toBe(grpc.status[grpc.status.INVALID_ARGUMENT]);
    expect(status.details).toContain("ACTIONQ_MAX_IN_FLIGHT");
    await refused(
      () => t.grpc.unary("ClaimAction", { worker: "w:cap", leaseDuration: { seconds: "61", nanos: 0 } }),
      grpc.status.INVALID_ARGUMENT,
      "ACTIONQ_MAX_LEASE_SECONDS",
      "lease_duration",
    );
  });
});

describe("streams per principal", () => {
  it("a fourth claim stream from one client is RESOURCE_EXHAUSTED naming ACTIONQ_MAX_STREAMS_PER_PRINCIPAL; closing one frees its slot", async () => {
    const open = [0, 1, 2].map((i) => openClaimStream(t, { worker: `w:slot${i}`, actionTypes: ["none_such"] }));
    await Promise.all(open.map((stream) => stream.atLeast(1, () => true, "the first heartbeat")));
    const fourth = openClaimStream(t, { worker: "w:slot3", actionTypes: ["none_such"] });
    const status = await fourth.status;
    expect(grpc.status[status.code]).toBe(grpc.status[grpc.status.RESOURCE_EXHAUSTED]);
    expect(status.details).toContain("ACTIONQ_MAX_STREAMS_PER_PRINCIPAL");
    await open[0]!.cancel();
    await eventually(() => t.server.stats.claimStreams === 2, "the cancelled stream to be let go");
    const again = openClaimStream(t, { worker: "w:slot4", actionTypes: ["none_such"] });
    await again.atLeast(1, () => true, "a heartbeat on the stream that took the freed slot");
    await Promise.all([open[1]!.cancel(), open[2]!.cancel(), again.cancel()]);
  });

  it("a third watcher is RESOURCE_EXHAUSTED naming ACTIONQ_MAX_WATCHERS_PER_PRINCIPAL; claim streams are counted apart", async () => {
    const watchers = [openWatch(t, { afterId: "0", actionId: "999999" }), openWatch(t, { afterId: "0", actionId: "999999" })];
    await Promise.all(watchers.map((w) => w.atLeast(1, () => true, "the first heartbeat")));
    const third = openWatch(t, { afterId: "0", actionId: "999999" });
    const status = await third.status;
    expect(grpc.status[status.code]).toBe(grpc.status[grpc.status.RESOURCE_EXHAUSTED]);
    expect(status.details).toContain("ACTIONQ_MAX_WATCHERS_PER_PRINCIPAL");
    const claims = openClaimStream(t, { worker: "w:apart", actionTypes: ["none_such"] });
    await claims.atLeast(1, () => true, "a claim stream beside two watchers");
    await Promise.all([...watchers.map((w) => w.cancel()), claims.cancel()]);
  });
});

describe("a client that stops reading", () => {
  it("is cut with RESOURCE_EXHAUSTED after ACTIONQ_SLOW_CONSUMER_SECONDS, and its slot is given back", async () => {
    // 2 MB of events: far more than HTTP/2 windows and socket buffers hold.
    for (let i = 0; i < 40; i++) {
      await t.grpc.unary("EmitEvent", { eventType: "coordinator_cycle", actor: "coordinator:big", payload: toStruct({ blob: String(i).padEnd(1900, "x") }) });
    }
    const bulk = { eventType: "coordinator_cycle", actor: "coordinator:big", payload: toStruct({ blob: "q".repeat(1900) }) };
    await Promise.all(Array.from({ length: 1000 }, () => t.grpc.unary("EmitEvent", bulk)));
    const call = t.grpc.stream("WatchEvents", { afterId: "0" });
    const stalled = new GrpcStream(call);
    await stalled.atLeast(1, () => true, "the first message");
    // Stop reading: grpc-js stops taking data off the connection once its
    // buffer is full, as a busy or stuck client would.
    call.pause();
    const started = Date.now();
    const status = await Promise.race([stalled.status, sleep(15_000).then(() => ({ code: -1, details: "still open after 15 s" }))]);
    expect(grpc.status[status.code] ?? status.details).toBe(grpc.status[grpc.status.RESOURCE_EXHAUSTED]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    await eventually(() => t.server.stats.watchers === 0, "the cut watcher to be let go");
    // The watcher slot is free again, and the server still serves.
    const next = openWatch(t, { afterId: "0", actionId: "999999" });
    await next.atLeast(1, () => true, "a new watcher's heartbeat");
    await next.cancel();
  });

  it("a reading client is never cut, however long it stays", async () => {
    const watcher = openWatch(t, { afterId: "0", eventTypes: ["coordinator_paused"] });
    await watcher.atLeast(1, () => true, "the first message");
    await sleep(2500);
    expect(watcher.done).toBe(false);
    await t.grpc.unary("EmitEvent", { eventType: "coordinator_paused", actor: "coordinator:x" });
    await watcher.atLeast(1, (m) => m.kind === "event", "the live event");
    await watcher.cancel();
  });
});
