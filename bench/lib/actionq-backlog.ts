// Scenario 5's preload: actions written straight into actionq's actions
// table with INSERT ... SELECT generate_series, in chunks, because a
// million EnqueueAction calls would take longer than the measurement.
// Triggers are off for the load (session_replication_role = replica): no
// NOTIFY per row, and the proposal-freeze trigger only guards UPDATEs. No
// events are written for preloaded rows; the claim path never reads them.
import type pg from "pg";
import { BENCH_TYPE, PRODUCER } from "./actionq-load.js";

const CHUNK = 250_000;

const InsertApproved = `
INSERT INTO actions (action_type, target_ref, payload, status, risk_level, created_by, approved_by, approved_at, policy_version)
SELECT $1, 'backlog-' || g, jsonb_build_object('n', g), 'approved', 'safe', $2, 'policy:standard', now(), 'bench'
FROM generate_series(1, $3::int) AS g`;

const InsertCompleted = `
INSERT INTO actions (action_type, target_ref, payload, status, risk_level, created_by, approved_by, approved_at, policy_version,
  claimed_by, claim_token, attempt, result_ref, created_at, updated_at, finished_at)
SELECT $1, 'history-' || g, jsonb_build_object('n', g), 'completed', 'safe', $2, 'policy:standard', now(), 'bench',
  'worker:history', gen_random_uuid(), 1, 'bench://history/' || g, now() - interval '1 day', now() - interval '1 day', now() - interval '1 day'
FROM generate_series(1, $3::int) AS g`;

async function insertInChunks(db: pg.Pool, sql: string, total: number, what: string, report: (message: string) => void): Promise<void> {
  const client = await db.connect();
  try {
    const started = Date.now();
    for (let done = 0; done < total; ) {
      const n = Math.min(CHUNK, total - done);
      await client.query("BEGIN");
      await client.query("SET LOCAL session_replication_role = replica");
      await client.query(sql, [BENCH_TYPE, PRODUCER, n]);
      await client.query("COMMIT");
      done += n;
      if (total > CHUNK) report(`inserted ${done}/${total} ${what} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
    }
    await client.query("VACUUM ANALYZE actions");
  } finally {
    client.release();
  }
}

export function insertApprovedBacklog(db: pg.Pool, count: number, report: (message: string) => void): Promise<void> {
  return insertInChunks(db, InsertApproved, count, "approved actions", report);
}

export function insertFinishedHistory(db: pg.Pool, count: number, report: (message: string) => void): Promise<void> {
  return insertInChunks(db, InsertCompleted, count, "completed actions", report);
}
