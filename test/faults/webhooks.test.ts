// Scenario 8: outgoing webhooks under faults, against a receiver on
// loopback that verifies every signature.
// (a) kill -9 the server while a delivery is in flight (the receiver holds
//     the request open), and again right after enqueues return while the
//     endpoint answers 500: after the restart every notification arrives;
//     repeats carry the same webhook-id; none is lost.
// (b) an endpoint that answers 500 for a whole minute, then recovers, gets
//     every notification, in event order, once each;
// (c) meanwhile another endpoint hangs (never answers): the queue does not
//     notice. Safe actions enqueued and completed by streaming workers flow
//     the whole minute while its one request stays outstanding.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import { type Received, Receiver, newSecret } from "../support/webhook-receiver.js";
import { sleep } from "../support/wait.js";
import { createClient, unary } from "./worker.mjs";
import { beginScenario, endScenario, serverEnv, until } from "./lib/scenario.js";

afterEach(endScenario);

const SECRET = newSecret();
/** The outage of (b); the issue asks for a minute. */
const OUTAGE_MS = Number(process.env.ACTIONQ_FAULT_WEBHOOK_OUTAGE_MS ?? 60_000);

async function webhooksFile(
  receiver: Receiver,
  endpoints: { name: string; path: string; timeout?: string }[],
): Promise<{ file: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), "actionq-fault-webhooks-"));
  const file = path.join(dir, "webhooks.yaml");
  const lines = ["retry: { initial: 200ms, max: 2s }", "endpoints:"];
  for (const endpoint of endpoints) {
    lines.push(
      `  - name: ${endpoint.name}`,
      `    url: ${receiver.url(endpoint.path)}`,
      `    secret: ${SECRET}`,
      "    events: [approval_requested]",
      `    timeout: ${endpoint.timeout ?? "60s"}`,
    );
  }
  await writeFile(file, `${lines.join("\n")}\n`);
  return { file, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** Event ids of every approval request committed, in order. */
async function approvalRequests(db: pg.Pool): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    "SELECT e.id::text AS id FROM events e WHERE e.event_type = 'action_enqueued' AND e.payload->>'status' = 'pending' ORDER BY e.id",
  );
  return rows.map((row) => row.id);
}

async function enqueuePending(address: string, count: number, tag: string): Promise<void> {
  const client = createClient(address);
  try {
    for (let i = 0; i < count; i++) {
      await unary(client, "EnqueueAction", { actionType: "redeploy_service", project: "hooks", targetRef: `${tag}-${i}`, createdBy: "human:faults" });
    }
  } finally {
    client.close();
  }
}

/** Repeats, order and signatures of what an endpoint got. */
function tally(records: Received[], expected: string[]) {
  const delivered = records.filter((r) => r.status !== null && r.status >= 200 && r.status < 300).map((r) => r.id);
  const distinct = new Set(delivered);
  const requestsPerId = new Map<string, number>();
  for (const r of records) requestsPerId.set(r.id, (requestsPerId.get(r.id) ?? 0) + 1);
  const ordered = delivered.every((id, i) => i === 0 || BigInt(id) > BigInt(delivered[i - 1]!) || id === delivered[i - 1]);
  return {
    expected: expected.length,
    delivered: distinct.size,
    missing: expected.filter((id) => !distinct.has(id)),
    duplicateDeliveries: delivered.length - distinct.size,
    requests: records.length,
    idsSentMoreThanOnce: [...requestsPerId.values()].filter((n) => n > 1).length,
    ordered,
    unverified: records.filter((r) => !r.verified).length,
  };
}

describe("scenario 8a: kill -9 between the commit and the delivery", () => {
  it("every notification arrives after the restart, repeats with the same webhook-id, none lost", async () => {
    const scenario = beginScenario("8a webhooks kill -9");
    const { url, schema, db } = scenario.database("hooks_kill");
    const receiver = await Receiver.start(SECRET);
    const { file, remove } = await webhooksFile(receiver, [{ name: "crash", path: "/crash" }]);
    scenario.atEnd(
      () => receiver.close(),
      () => remove(),
    );
    const env = serverEnv(url, schema, { ACTIONQ_WEBHOOKS_FILE: file });

    // 1. The endpoint holds the first request open; the server dies with it in flight.
    receiver.answer("/crash", () => "hang");
    let server = await scenario.server("hooks-1", env);
    await enqueuePending(server.address, 10, "first");
    await until("a delivery in flight", () => receiver.hanging === 1, 20_000);
    const inFlight = receiver.all("/crash")[0]!.id;
    server.kill9();
    await server.exitWithin(5000);

    // 2. The endpoint now answers 500; the server dies again right after
    // five more enqueues return, before any could be delivered.
    receiver.answer("/crash", () => 500);
    server = await scenario.server("hooks-2", env);
    await until("the restarted server retrying", () => receiver.all("/crash").some((r) => r.status === 500), 20_000);
    await enqueuePending(server.address, 5, "second");
    server.kill9();
    await server.exitWithin(5000);

    // 3. The endpoint recovers; a third server delivers everything.
    receiver.answer("/crash", () => 204);
    server = await scenario.server("hooks-3", env);
    const expected = await approvalRequests(db);
    expect(expected).toHaveLength(15);
    await until("all fifteen delivered", () => tally(receiver.all("/crash"), expected).missing.length === 0, 30_000);
    const result = tally(receiver.all("/crash"), expected);
    const inFlightRequests = receiver.all("/crash").filter((r) => r.id === inFlight).length;
    console.log(`FAULT 8a webhooks kill -9: ${JSON.stringify({ ...result, missing: result.missing.length, inFlightId: inFlight, inFlightRequests })}`);
    expect(result.missing).toEqual([]);
    expect(result.unverified).toBe(0);
    expect(result.ordered).toBe(true);
    // The request cut by the kill was sent again, under the same id.
    expect(inFlightRequests).toBeGreaterThanOrEqual(2);
    expect(scenario.servers.flatMap((s) => s.internalErrors)).toEqual([]);
    server.sigterm();
    expect(await server.exitWithin(20_000)).toEqual({ code: 0, signal: null });
  });
});

describe("scenario 8b: an endpoint down for a minute, another hanging", () => {
  it("the failing one gets every notification in order after it recovers; claims flow while the other hangs", async () => {
    const scenario = beginScenario("8b webhooks outage and hang");
    const { crew } = scenario;
    const { url, schema, db } = scenario.database("hooks_outage");
    const receiver = await Receiver.start(SECRET);
    const { file, remove } = await webhooksFile(receiver, [
      { name: "outage", path: "/outage" },
      { name: "hang", path: "/hang", timeout: "120s" },
    ]);
    scenario.atEnd(
      () => receiver.close(),
      () => remove(),
    );
    let outageEnds = Number.POSITIVE_INFINITY;
    receiver.answer("/outage", () => (Date.now() < outageEnds ? 500 : 204));
    receiver.answer("/hang", () => "hang");
    const server = await scenario.server("hooks", serverEnv(url, schema, { ACTIONQ_WEBHOOKS_FILE: file }));
    outageEnds = Date.now() + OUTAGE_MS;

    // The hanging endpoint's first request stays outstanding from here on.
    await enqueuePending(server.address, 1, "opening");
    await until("the hanging request", () => receiver.hanging === 1, 20_000);
    const hangStarted = receiver.all("/hang")[0]!.at;

    crew.add({ name: "worker-0", addresses: [server.address], actionTypes: ["collect_diagnostics"], maxInFlight: 4, leaseSeconds: 30, workMs: 5 });
    crew.add({ name: "worker-1", addresses: [server.address], actionTypes: ["collect_diagnostics"], maxInFlight: 4, leaseSeconds: 30, workMs: 5 });
    const producer = createClient(server.address);
    scenario.atEnd(async () => producer.close());
    let jobs = 0;
    let pending = 1;
    // Through the minute: safe jobs every 100 ms (auto-approved, claimed
    // and completed by the workers) and an approval request every 2 s.
    while (Date.now() < outageEnds - 500) {
      await unary(producer, "EnqueueAction", { actionType: "collect_diagnostics", targetRef: `node-${jobs}`, createdBy: "human:faults" });
      jobs++;
      if (jobs % 20 === 0) {
        await unary(producer, "EnqueueAction", { actionType: "redeploy_service", project: "hooks", targetRef: `svc-${pending}`, createdBy: "human:faults" });
        pending++;
      }
      await sleep(100);
    }
    await until("every job completed", () => crew.finished >= jobs, 20_000);
    const completedAt = Date.now();
    // Everything ran while the one request to /hang stayed outstanding.
    expect(receiver.hanging).toBe(1);
    expect(receiver.all("/hang")).toHaveLength(1);
    const { rows: latency } = await db.query<{ p50: number; p95: number; max: number; n: string }>(
      `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) AS p95, max(ms) AS max, count(*) AS n FROM (
         SELECT (extract(epoch FROM c.created_at - e.created_at) * 1000)::float8 AS ms
         FROM events c JOIN events e ON e.action_id = c.action_id AND e.event_type = 'action_enqueued'
         WHERE c.event_type = 'action_claimed') x`,
    );
    expect(Number(latency[0]!.n)).toBe(jobs);

    // The outage is over: every approval request reaches /outage, in order.
    const expected = await approvalRequests(db);
    expect(expected).toHaveLength(pending);
    await until("every notification at the recovered endpoint", () => tally(receiver.all("/outage"), expected).missing.length === 0, 30_000);
    const recoveredIn = Math.max(...receiver.delivered("/outage").map((r) => r.at)) - outageEnds;
    const result = tally(receiver.all("/outage"), expected);
    const failedRequests = receiver.all("/outage").filter((r) => r.status === 500).length;
    console.log(
      `FAULT 8b webhooks outage: ${JSON.stringify({ ...result, missing: result.missing.length, failedRequests, outageMs: OUTAGE_MS, lastDeliveredMsAfterOutage: recoveredIn })}; ` +
        `hang: jobs=${jobs} completed_while_hanging=${crew.finished} hanging_for_ms=${completedAt - hangStarted} claim_latency_ms p50=${Math.round(latency[0]!.p50)} p95=${Math.round(latency[0]!.p95)} max=${Math.round(latency[0]!.max)}`,
    );
    expect(result.missing).toEqual([]);
    expect(result.ordered).toBe(true);
    expect(result.unverified).toBe(0);
    expect(result.duplicateDeliveries).toBe(0);
    expect(receiver.delivered("/outage").map((r) => r.id)).toEqual(expected);
    expect(failedRequests).toBeGreaterThan(10);
    expect(scenario.servers.flatMap((s) => s.internalErrors)).toEqual([]);
    server.sigterm();
    expect(await server.exitWithin(20_000)).toEqual({ code: 0, signal: null });
  });
});
