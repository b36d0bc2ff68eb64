// The fault scenarios are only as good as their final check: this proves
// that verify() does catch what it is meant to catch (a lost action, an
// action run twice, two executions at once, a completion without its
// event or with two, a watcher that missed an event), so a passing scenario
// means something.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, closeWithin, startTestServer } from "../support/harness.js";
import { type ActionRow, pool, verify, waitForAll } from "./lib/check.js";
import { Crew } from "./lib/scenario.js";
import { createClient, unary } from "./worker.mjs";
import type { ExecutionRecord } from "./worker.mjs";
import type { WatchedEvent } from "./lib/load.js";

let t: TestServer;
let db: ReturnType<typeof pool>;
const keys = ["check-0", "check-1", "check-2", "check-3"];
let records: ExecutionRecord[] = [];
let log: WatchedEvent[] = [];
let rows: ActionRow[] = [];

beforeAll(async () => {
  t = await startTestServer({ ACTIONQ_HEARTBEAT_SECONDS: "0.5" });
  db = pool(t.databaseUrl, t.schema);
  const client = createClient(t.address);
  try {
    for (const key of keys) await unary(client, "EnqueueAction", { actionType: "check_job", createdBy: "human:checker", idempotencyKey: key });
  } finally {
    client.close();
  }
  const crew = new Crew();
  crew.add({ name: "checker-worker", addresses: [t.address], actionTypes: ["check_job"], maxInFlight: 2, workMs: 5 });
  await waitForAll(db, keys.length, 20_000);
  await crew.stop();
  records = crew.records;
  const events = await db.query<{ id: string; action_id: string | null; event_type: string }>(
    "SELECT e.id::text AS id, e.action_id::text AS action_id, e.event_type FROM events e ORDER BY e.id",
  );
  log = events.rows.map((row) => ({ id: row.id, actionId: row.action_id ?? "0", eventType: row.event_type }));
  rows = (
    await db.query<ActionRow>(
      "SELECT id::text, status, attempt, failures, lost_deliveries, max_attempts, claim_token::text, idempotency_key FROM actions ORDER BY id",
    )
  ).rows;
});
afterAll(async () => {
  await db?.end();
  await closeWithin(t);
});

const startOf = (id: string) => records.find((r) => r.ev === "start" && r.id === id)!;

describe("the fault suite's final check", () => {
  it("passes a clean run", async () => {
    const report = await verify(db, { keys, records, watched: log });
    expect(report.problems).toEqual([]);
    expect(report).toMatchObject({ actions: 4, completed: 4, duplicates: 0, lost: 0 });
  });

  it("counts a key without an action as lost", async () => {
    const report = await verify(db, { keys: [...keys, "check-never"], records, watched: log });
    expect(report.lost).toBe(1);
    expect(report.problems).toEqual(["key check-never has no action"]);
  });

  it("counts an action executed twice (a second, later execution that completed) as a duplicate", async () => {
    const first = startOf(rows[1]!.id);
    const again: ExecutionRecord[] = [
      { ...first, token: "00000000-0000-4000-8000-00000000000a", t: first.t + 10_000 },
      { ...first, ev: "done", token: "00000000-0000-4000-8000-00000000000a", t: first.t + 10_010 },
    ];
    const report = await verify(db, { keys, records: [...records, ...again], watched: log });
    expect(report.duplicates).toBe(1);
    expect(report.problems.join("\n")).toMatch(/completed by 2 executions/);
  });

  it("flags two executions of one action at the same time, and work done under a lost claim", async () => {
    const first = startOf(rows[2]!.id);
    const overlapping: ExecutionRecord[] = [
      { ...first, worker: "intruder", token: "00000000-0000-4000-8000-00000000000b", t: first.t },
      { ...first, worker: "intruder", ev: "refused", token: "00000000-0000-4000-8000-00000000000b", t: first.t + 1 },
    ];
    const report = await verify(db, { keys, records: [...records, ...overlapping], watched: log });
    expect(report.duplicates).toBe(1);
    expect(report.problems.join("\n")).toMatch(/overlapped/);
    expect(report.problems.join("\n")).toMatch(/under a claim it had lost/);
  });

  it("accepts a rerun only after a worker killed mid-execution", async () => {
    const first = startOf(rows[3]!.id);
    const interrupted: ExecutionRecord = { ...first, worker: "killed-one", token: "00000000-0000-4000-8000-00000000000c", t: first.t - 5000 };
    const killed = new Map([["killed-one", first.t - 4000]]);
    const explained = await verify(db, { keys, records: [...records, interrupted], watched: log, killed });
    expect(explained.problems).toEqual([]);
    expect(explained.reruns).toBe(1);
    const unexplained = await verify(db, { keys, records: [...records, interrupted], watched: log });
    expect(unexplained.problems.length).toBeGreaterThan(0);
  });

  it("flags a watcher that missed an event or saw one twice", async () => {
    const missing = await verify(db, { keys, records, watched: log.filter((_, i) => i !== 3) });
    expect(missing.problems.join("\n")).toMatch(/the watcher saw/);
    const twice = await verify(db, { keys, records, watched: [...log.slice(0, 4), log[3]!, ...log.slice(4)] });
    expect(twice.problems.join("\n")).toMatch(/the watcher saw/);
  });

  it("flags a history that does not match the row: a completion event too many", async () => {
    await db.query("INSERT INTO events (action_id, event_type, actor, payload) VALUES ($1, 'action_completed', 'forger', '{}')", [rows[0]!.id]);
    const report = await verify(db, { keys, records });
    expect(report.problems.join("\n")).toMatch(new RegExp(`action ${rows[0]!.id} \\(completed\\) has 2 action_completed events`));
    expect(report.problems.join("\n")).toMatch(/is not a legal transition from completed/);
  });
});
