// The variant of test/pgbouncer.test.ts without a direct LISTEN
// connection: three replicas whose only way to PostgreSQL is a real
// PgBouncer in transaction mode, ACTIONQ_DATABASE_POOLER=transaction and
// no ACTIONQ_LISTEN_URL, so each polls every ACTIONQ_FALLBACK_POLL_SECONDS.
// The backstop poll is an hour: whatever crosses replicas promptly crossed
// by the fallback poll.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { databaseUrl, freshSchema } from "./support/database.js";
import { type TestServer, closeWithin, startTestServer } from "./support/harness.js";
import { PGBOUNCER_MISSING, type PgBouncer, startPgBouncer } from "./support/pgbouncer.js";
import { type ClaimStreamMessage, type GrpcStream, cancelAfterEach, claimsOf, nthClaim, openClaimStream, openWatch, waitingFor } from "./support/streams.js";
import { eventually, sleep } from "./support/wait.js";
import { Receiver, newSecret } from "./support/webhook-receiver.js";
import type { WireAction } from "./support/wire.js";

const SECRET = newSecret();
/** The fallback poll (0.2 s), a claim statement through the pooler, and
 * ample room for a busy machine: still far below the backstop poll (an
 * hour), so what arrives within it crossed by the fallback poll. */
const BOUND_MS = 10_000;

describe.skipIf(PGBOUNCER_MISSING !== undefined)("three replicas through PgBouncer without a direct LISTEN connection", () => {
  let bouncer: PgBouncer;
  let receiver: Receiver;
  let dir: string;
  const schema = freshSchema("pgbpoll");
  const replicas: TestServer[] = [];
  const track = cancelAfterEach();

  beforeAll(async () => {
    bouncer = await startPgBouncer(databaseUrl(), { connectQuery: "SET search_path TO public" });
    receiver = await Receiver.start(SECRET);
    dir = await mkdtemp(path.join(tmpdir(), "actionq-pgbpoll-"));
    const webhooks = path.join(dir, "webhooks.yaml");
    await writeFile(
      webhooks,
      `retry: { initial: 100ms, max: 1s }\nendpoints:\n  - { name: polled, url: "${receiver.url("/polled")}", secret: "${SECRET}", events: [approval_requested] }\n`,
    );
    const env = {
      ACTIONQ_URL: bouncer.url,
      ACTIONQ_DATABASE_POOLER: "transaction",
      ACTIONQ_FALLBACK_POLL_SECONDS: "0.2",
      ACTIONQ_POLL_INTERVAL_SECONDS: "3600",
      ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600",
      ACTIONQ_ACK_TIMEOUT_SECONDS: "60",
      ACTIONQ_HEARTBEAT_SECONDS: "0.5",
      ACTIONQ_POOL_SIZE: "4",
    };
    // Only the third sends webhooks: the others' enqueues reach it by polling.
    const extras: Record<string, string>[] = [{}, {}, { ACTIONQ_WEBHOOKS_FILE: webhooks }];
    for (const extra of extras) replicas.push(await startTestServer({ ...env, ...extra }, schema));
  }, 60_000);

  afterAll(async () => {
    for (const replica of replicas.slice(1).reverse()) await closeWithin(replica);
    await closeWithin(replicas[0]);
    await receiver?.close();
    await bouncer?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const a = () => replicas[0]!;
  const b = () => replicas[1]!;
  const c = () => replicas[2]!;
  const enqueue = (t: TestServer, request: Record<string, unknown>) =>
    t.grpc.unary<{ action: WireAction }>("EnqueueAction", { createdBy: "human:ann", ...request }).then((response) => response.action);

  /** A claim stream that has looked once and found nothing: the server
   * counts it among the streams waiting for work. */
  async function waitingStream(t: TestServer, actionTypes: string[], maxInFlight = 4): Promise<GrpcStream<ClaimStreamMessage>> {
    const worker = `worker:${actionTypes[0]}`;
    const stream = track(openClaimStream(t, { worker, actionTypes, maxInFlight, leaseDuration: { seconds: 60 } }));
    await stream.until("the first heartbeat", () => stream.received.length > 0);
    await waitingFor(t, worker);
    return stream;
  }

  it("every replica polls, having no direct connection for LISTEN", () => {
    for (const replica of replicas) expect(replica.server.stats).toMatchObject({ listening: false, wakeups: "poll" });
  });

  it("enqueue on one, claim on another's stream, watched on the third, each within the poll", async () => {
    const watch = track(openWatch(c(), { afterId: 0 }));
    await watch.until("the watcher is live", () => watch.received.some((message) => message.kind === "heartbeat"));
    const stream = await waitingStream(b(), ["polled_job"]);
    const started = Date.now();
    const action = await enqueue(a(), { actionType: "polled_job", targetRef: "host:1" });
    const claim = await nthClaim(stream, 1, BOUND_MS);
    expect(claim.action.id).toBe(action.id);
    expect(Date.now() - started).toBeLessThan(BOUND_MS);
    await c().grpc.unary("AckClaim", { id: action.id, claimToken: claim.claimToken });
    await a().grpc.unary("CompleteAction", { id: action.id, claimToken: claim.claimToken, resultRef: "ok" });
    const seen = () => watch.received.flatMap((message) => (message.kind === "event" && message.event.actionId === action.id ? [message.event.eventType] : []));
    await watch.until("the completion in the watch", () => seen().includes("action_completed"), BOUND_MS);
    expect(seen()[0]).toBe("action_enqueued");
  });

  it("a cancel on one replica ends the claim of a stream on another, whose freed slot takes the next action", async () => {
    const stream = await waitingStream(b(), ["polled_slot"], 1);
    const first = await enqueue(a(), { actionType: "polled_slot" });
    const claim = await nthClaim(stream, 1, BOUND_MS);
    await b().grpc.unary("AckClaim", { id: first.id, claimToken: claim.claimToken });
    const second = await enqueue(a(), { actionType: "polled_slot" });
    await sleep(600);
    expect(claimsOf(stream)).toHaveLength(1);
    await c().grpc.unary("CancelAction", { id: first.id, actor: "human:ann", reason: "not needed" });
    expect((await nthClaim(stream, 2, BOUND_MS)).action.id).toBe(second.id);
  });

  it("a resume on one replica releases a stream on another; a webhook is sent by the replica that has the endpoint", async () => {
    const scope = { kind: "PAUSE_KIND_ACTION_TYPE", value: "polled_paused" };
    await a().grpc.unary("PauseClaims", { scope, actor: "human:ops", reason: "maintenance" });
    const stream = await waitingStream(b(), ["polled_paused"]);
    const held = await enqueue(a(), { actionType: "polled_paused" });
    await sleep(600);
    expect(claimsOf(stream)).toEqual([]);
    await c().grpc.unary("ResumeClaims", { scope, actor: "human:ops", reason: "done" });
    expect((await nthClaim(stream, 1, BOUND_MS)).action.id).toBe(held.id);

    const pending = await enqueue(a(), { actionType: "polled_risky", riskLevel: "RISK_LEVEL_GUARDED", createdBy: "agent:bot" });
    expect(pending.status).toBe("ACTION_STATUS_PENDING");
    await eventually(() => receiver.received.some((request) => String(request.body.data?.event.actionId) === pending.id), "the webhook", BOUND_MS);
  });
});
