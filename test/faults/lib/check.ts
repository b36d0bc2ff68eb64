// The end of every fault scenario: read the database and prove that the
// queue lost nothing and ran nothing twice by accident.
//
// - Every producer key has exactly one action, and every action is in a
//   final state (or legitimately still waiting, when the scenario says so).
// - Replaying each action's events reproduces its row (status, attempt,
//   failures, lost_deliveries) through legal transitions only: every
//   transition has its event, and no event describes an impossible one.
// - Exactly one action_completed per COMPLETED action, none for others.
// - From the workers' own records: each COMPLETED action was completed by
//   exactly one execution, with the token the row keeps; no execution ran
//   under a claim it had lost (refused on completion); no two executions of
//   one action overlapped; and every execution beyond the first is explained
//   (a deliberate failure, or a worker killed in the middle of it).
// - The watcher saw exactly the log, in order.
import pg from "pg";
import type { ExecutionRecord } from "../worker.mjs";
import type { WatchedEvent } from "./load.js";
import { crashedServer } from "./processes.js";
import { sleep } from "../../support/wait.js";

export interface ActionRow {
  id: string;
  status: string;
  attempt: number;
  failures: number;
  lost_deliveries: number;
  max_attempts: number;
  claim_token: string | null;
  idempotency_key: string | null;
}

interface EventRow {
  id: string;
  action_id: string | null;
  event_type: string;
  payload: Record<string, unknown>;
}

export function pool(url: string, schema: string): pg.Pool {
  const db = new pg.Pool({ connectionString: url, options: `-c search_path="${schema}"`, max: 2, application_name: "actionq-faults" });
  db.on("error", () => {});
  return db;
}

/** Polls until every action is COMPLETED (or `settled` says it may stay as
 * it is) and at least `expected` exist; returns how long it took. Fails
 * with the stragglers when the time runs out. */
export async function waitForAll(db: pg.Pool, expected: number, timeoutMs: number, settled: (row: ActionRow) => boolean = () => false): Promise<number> {
  const started = Date.now();
  for (;;) {
    let rows: ActionRow[] = [];
    try {
      rows = (
        await db.query<ActionRow>(
          "SELECT id::text, status, attempt, failures, lost_deliveries, max_attempts, claim_token::text, idempotency_key FROM actions ORDER BY id",
        )
      ).rows;
    } catch {
      // The database may be restarting in this very scenario.
    }
    const open = rows.filter((row) => row.status !== "completed" && !settled(row));
    if (rows.length >= expected && open.length === 0) return Date.now() - started;
    const crash = crashedServer();
    if (crash) throw new Error(`while waiting for every action to finish: ${crash}`);
    if (Date.now() - started > timeoutMs) {
      const sample = open.slice(0, 10).map((row) => `${row.id}:${row.status}(attempt ${row.attempt})`);
      throw new Error(`after ${timeoutMs} ms, ${rows.length}/${expected} actions exist and ${open.length} are not finished: ${sample.join(", ")}`);
    }
    await sleep(200);
  }
}

const FINAL = new Set(["completed", "failed", "rejected", "cancelled"]);

/** Replays one action's events; returns the problems found. */
function replay(row: ActionRow, events: EventRow[]): string[] {
  const problems: string[] = [];
  let status: string | undefined;
  let attempt = 0;
  let failures = 0;
  let lost = 0;
  const bad = (event: EventRow, why: string) => problems.push(`action ${row.id}: event ${event.id} ${event.event_type} ${why} (status was ${status})`);
  const from = (event: EventRow, allowed: string[], next: string) => {
    if (!status || !allowed.includes(status)) bad(event, `is not a legal transition from ${status}`);
    status = next;
  };
  for (const event of events) {
    switch (event.event_type) {
      case "action_enqueued":
        if (status !== undefined) bad(event, "after the action existed");
        status = String(event.payload.status);
        break;
      case "approval_granted":
        from(event, ["pending"], "pending");
        break;
      case "action_approved":
        from(event, ["pending", "approved"], "approved");
        break;
      case "action_claimed":
        from(event, ["approved"], "claimed");
        attempt++;
        if (event.payload.attempt !== attempt) bad(event, `says attempt ${String(event.payload.attempt)}, expected ${attempt}`);
        break;
      case "claim_released":
      case "claim_timed_out":
        from(event, ["claimed"], "approved");
        lost++;
        break;
      case "action_retry_scheduled":
        from(event, ["claimed"], "approved");
        failures++;
        break;
      case "action_failed":
        from(event, ["claimed"], "failed");
        failures++;
        break;
      case "action_completed":
        from(event, ["claimed"], "completed");
        break;
      case "action_rejected":
        from(event, ["pending", "claimed"], "rejected");
        break;
      case "action_cancelled":
        from(event, ["pending", "approved", "claimed"], "cancelled");
        break;
      case "action_retried":
        from(event, ["failed"], "approved");
        break;
      case "claim_extended":
      case "action_progress":
        if (status !== "claimed") bad(event, "while not claimed");
        break;
      default:
        bad(event, "is an unknown event type for an action");
    }
  }
  if (status !== row.status) problems.push(`action ${row.id}: its events end in ${status}, the row says ${row.status}`);
  if (attempt !== row.attempt) problems.push(`action ${row.id}: ${attempt} action_claimed events, the row says attempt ${row.attempt}`);
  if (failures !== row.failures) problems.push(`action ${row.id}: ${failures} failure events, the row says failures ${row.failures}`);
  if (lost !== row.lost_deliveries) problems.push(`action ${row.id}: ${lost} release/timeout events, the row says lost_deliveries ${row.lost_deliveries}`);
  return problems;
}

export interface Expectations {
  /** Every idempotency key the producers used. */
  keys: string[];
  records: ExecutionRecord[];
  /** Workers killed with -9, and when: their unfinished executions may run again. */
  killed?: Map<string, number>;
  /** What a watcher saw, if the scenario ran one. */
  watched?: WatchedEvent[];
  /** Rows that may legitimately stay unfinished. */
  settled?: (row: ActionRow) => boolean;
}

export interface Report {
  actions: number;
  completed: number;
  /** Actions run more than once by accident, or completed twice. */
  duplicates: number;
  /** Keys without an action, and actions that never finished. */
  lost: number;
  /** Executions beyond the first that a fault explains (a killed worker). */
  reruns: number;
  lostDeliveries: number;
  failures: number;
  events: number;
  watcherEvents: number | undefined;
  problems: string[];
  /** For each action with a problem of executions: the workers' records
   * and the action's events, in order, so that a failure explains itself. */
  traces: string[];
}

/** One line per record and event of an action, merged in time order where
 * the records have times (events are in log order after them). */
function traceOf(id: string, records: ExecutionRecord[], events: EventRow[]): string {
  const token = (value: unknown) => (typeof value === "string" ? value.slice(0, 8) : "-");
  const lines = [
    ...records
      .filter((record) => record.id === id)
      .map((record) => `    t=${record.t} ${record.worker} ${record.ev} token=${token(record.token)} attempt=${String(record.attempt ?? "-")}`),
    ...events.filter((event) => event.action_id === id).map((event) => `    event ${event.id} ${event.event_type} ${JSON.stringify(event.payload)}`),
  ];
  return `action ${id}:\n${lines.join("\n")}`;
}

export async function verify(db: pg.Pool, expect: Expectations): Promise<Report> {
  const problems: string[] = [];
  const { rows: actions } = await db.query<ActionRow>(
    "SELECT id::text, status, attempt, failures, lost_deliveries, max_attempts, claim_token::text, idempotency_key FROM actions ORDER BY id",
  );
  const { rows: events } = await db.query<EventRow>(
    "SELECT e.id::text AS id, e.action_id::text AS action_id, e.event_type, e.payload FROM events e ORDER BY e.id",
  );

  // Keys: one action each, nothing else.
  const byKey = new Map<string, ActionRow[]>();
  for (const row of actions) byKey.set(row.idempotency_key ?? "", [...(byKey.get(row.idempotency_key ?? "") ?? []), row]);
  let lost = 0;
  for (const key of expect.keys) {
    const found = byKey.get(key) ?? [];
    if (found.length === 0) {
      lost++;
      problems.push(`key ${key} has no action`);
    } else if (found.length > 1) {
      problems.push(`key ${key} has ${found.length} actions`);
    }
  }
  const known = new Set(expect.keys);
  for (const row of actions) if (!known.has(row.idempotency_key ?? "")) problems.push(`action ${row.id} was not enqueued by a producer of this scenario`);

  // States and histories.
  const eventsOf = new Map<string, EventRow[]>();
  for (const event of events) if (event.action_id) eventsOf.set(event.action_id, [...(eventsOf.get(event.action_id) ?? []), event]);
  for (const row of actions) {
    if (!FINAL.has(row.status) && !expect.settled?.(row)) {
      lost++;
      problems.push(`action ${row.id} is still ${row.status}`);
    }
    problems.push(...replay(row, eventsOf.get(row.id) ?? []));
    const completions = (eventsOf.get(row.id) ?? []).filter((event) => event.event_type === "action_completed").length;
    if (completions !== (row.status === "completed" ? 1 : 0)) problems.push(`action ${row.id} (${row.status}) has ${completions} action_completed events`);
  }

  // Executions, from the workers' records.
  const runs = new Map<string, { token: string; worker: string; start: number; end?: number; outcome?: string }[]>();
  for (const record of expect.records) {
    if (!record.id || !record.token) continue;
    const list = runs.get(record.id) ?? [];
    runs.set(record.id, list);
    if (record.ev === "start") list.push({ token: record.token, worker: record.worker, start: record.t });
    else if (record.ev === "done" || record.ev === "failed" || record.ev === "refused") {
      const run = list.find((r) => r.token === record.token && r.outcome === undefined);
      if (run) {
        run.end = record.worked ?? record.t;
        run.outcome = record.ev;
      } else problems.push(`action ${record.id}: ${record.ev} by ${record.worker} without a start`);
    }
  }
  const duplicated = new Set<string>();
  let reruns = 0;
  for (const row of actions) {
    const list = runs.get(row.id) ?? [];
    const done = list.filter((run) => run.outcome === "done");
    // A worker killed right after its CompleteAction committed never wrote
    // its record: the row keeps that execution's token.
    const completedByKilled = list.some((run) => run.outcome === undefined && expect.killed?.has(run.worker) && run.token === row.claim_token);
    if (row.status === "completed" && !(done.length === 0 && completedByKilled)) {
      if (done.length !== 1) {
        duplicated.add(row.id);
        problems.push(`action ${row.id} was completed by ${done.length} executions`);
      } else if (done[0]!.token !== row.claim_token) problems.push(`action ${row.id} was completed with a token the row does not keep`);
    }
    for (const run of list) {
      if (run.outcome === "refused") {
        duplicated.add(row.id);
        problems.push(`action ${row.id}: ${run.worker} executed it under a claim it had lost (completion refused)`);
      }
    }
    // Two executions of one action at the same time: a double claim. An
    // execution ends when its work ends, not when its outcome got through.
    const spans = list.map((run) => ({ ...run, until: run.end ?? expect.killed?.get(run.worker) ?? Number.POSITIVE_INFINITY }));
    for (let i = 0; i < spans.length; i++) {
      for (let j = i + 1; j < spans.length; j++) {
        const [a, b] = [spans[i]!, spans[j]!];
        if (a.start < b.until && b.start < a.until) {
          duplicated.add(row.id);
          problems.push(`action ${row.id}: executions by ${a.worker} and ${b.worker} overlapped`);
        }
      }
    }
    // Executions after the first: explained by a deliberate failure or a
    // worker killed mid-execution, or else a duplicate.
    const ordered = [...list].sort((a, b) => a.start - b.start);
    for (let k = 1; k < ordered.length; k++) {
      const before = ordered[k - 1]!;
      if (before.outcome === "failed") continue;
      if (before.outcome === undefined && expect.killed?.has(before.worker)) {
        reruns++;
        continue;
      }
      if (before.outcome !== "refused") {
        duplicated.add(row.id);
        problems.push(`action ${row.id} ran again after ${before.worker} ended its execution with ${before.outcome ?? "nothing"}`);
      }
    }
  }
  for (const [id, list] of runs) {
    for (const run of list) {
      if (run.outcome === undefined && !expect.killed?.has(run.worker)) problems.push(`action ${id}: ${run.worker}'s execution never ended`);
    }
  }

  // The watcher's log is the log.
  if (expect.watched) {
    const seen = expect.watched.map((event) => `${event.id}:${event.eventType}`);
    const log = events.map((event) => `${event.id}:${event.event_type}`);
    if (seen.length !== log.length || seen.some((entry, i) => entry !== log[i])) {
      const at = seen.findIndex((entry, i) => entry !== log[i]);
      problems.push(`the watcher saw ${seen.length} events, the log has ${log.length}; first difference at index ${at}: watcher ${seen[at]} vs log ${log[at]}`);
    }
  }

  return {
    actions: actions.length,
    completed: actions.filter((row) => row.status === "completed").length,
    duplicates: duplicated.size,
    lost,
    reruns,
    lostDeliveries: actions.reduce((sum, row) => sum + row.lost_deliveries, 0),
    failures: actions.reduce((sum, row) => sum + row.failures, 0),
    events: events.length,
    watcherEvents: expect.watched?.length,
    problems,
    traces: [...duplicated].slice(0, 5).map((id) => traceOf(id, expect.records, events)),
  };
}

/** The one line each scenario prints. */
export function summary(scenario: string, report: Report, ms: number, extra = ""): string {
  const watcher = report.watcherEvents === undefined ? "" : ` watcher=${report.watcherEvents}/${report.events}`;
  const line =
    `FAULT ${scenario}: actions=${report.actions} completed=${report.completed} duplicates=${report.duplicates} lost=${report.lost} ` +
    `reruns_after_kill=${report.reruns} lost_deliveries=${report.lostDeliveries} failures=${report.failures} events=${report.events}${watcher} ` +
    `problems=${report.problems.length} time=${(ms / 1000).toFixed(1)}s${extra ? ` ${extra}` : ""}`;
  console.log(line);
  for (const problem of report.problems.slice(0, 10)) console.log(`  problem: ${problem.slice(0, 1500)}`);
  for (const trace of report.traces) console.log(`  trace of ${trace}`);
  return line;
}
