// What concurrency keys hold back: for one action (GetAction) and for the
// queue (GetQueueStats). The limit itself is enforced by the claim
// statement (action-queries.ts) and the counting trigger (migration 007).
import type pg from "pg";

/** The concurrency keys that have approved, due actions, one index probe
 * per key (a loose index scan), however long each key's queue is. */
export const READY_KEYS = `
  WITH RECURSIVE r(k) AS (
    (SELECT concurrency_key FROM /*schema*/actions
     WHERE status = 'approved' AND NOT deferred AND concurrency_key IS NOT NULL
     ORDER BY concurrency_key LIMIT 1)
    UNION ALL
    SELECT (SELECT a.concurrency_key FROM /*schema*/actions a
            WHERE a.status = 'approved' AND NOT a.deferred AND a.concurrency_key IS NOT NULL AND a.concurrency_key > r.k
            ORDER BY a.concurrency_key LIMIT 1)
    FROM r WHERE r.k IS NOT NULL
  )
  SELECT k FROM r WHERE k IS NOT NULL`;

const holders = (key: string) =>
  `ARRAY(SELECT c.id FROM /*schema*/actions c WHERE c.concurrency_key = ${key} AND c.status = 'claimed' ORDER BY c.claimed_at, c.id)`;

// `ahead` walks the key's queue up to the action: a GetAction question,
// answered from the key's index.
const ConcurrencyHoldOf = `
SELECT k.key, k.claim_limit, ${holders("k.key")} AS holder_ids, ahead.n::text AS ahead
FROM /*schema*/actions a
JOIN /*schema*/concurrency_keys k ON k.key = a.concurrency_key
CROSS JOIN LATERAL (
  SELECT count(*) AS n FROM /*schema*/actions b
  WHERE b.concurrency_key = a.concurrency_key AND b.status = 'approved' AND NOT b.deferred AND (b.priority, b.id) < (a.priority, a.id)
) ahead
WHERE a.id = $1 AND a.status = 'approved' AND NOT a.deferred
  AND ahead.n + k.claimed >= k.claim_limit`;

const HeldKeys = `
SELECT k.key, k.claim_limit, ${holders("k.key")} AS holder_ids, (w.n - (k.claim_limit - least(k.claimed, k.claim_limit)))::text AS waiting
FROM /*schema*/concurrency_keys k
CROSS JOIN LATERAL (
  SELECT count(*) AS n FROM /*schema*/actions a WHERE a.concurrency_key = k.key AND a.status = 'approved' AND NOT a.deferred
) w
WHERE k.key = ANY (ARRAY(${READY_KEYS})) AND w.n > k.claim_limit - least(k.claimed, k.claim_limit)
ORDER BY w.n DESC, k.key
LIMIT $1`;

export interface ConcurrencyHold {
  key: string;
  claim_limit: number;
  holder_ids: string[];
  ahead: string;
}

export interface HeldKey {
  key: string;
  claim_limit: number;
  holder_ids: string[];
  /** Approved, due actions of the key beyond its free slots. */
  waiting: string;
}

/** Why this approved, due action waits for its key; undefined when it does
 * not (no key, not approved, or it is among the next the key lets run). */
export async function concurrencyHold(pool: pg.Pool, id: string): Promise<ConcurrencyHold | undefined> {
  const { rows } = await pool.query<ConcurrencyHold>(ConcurrencyHoldOf, [id]);
  return rows[0];
}

/** The keys whose approved actions wait for a slot, most waiting first. */
export async function heldKeys(pool: pg.Pool, limit = 100): Promise<HeldKey[]> {
  const { rows } = await pool.query<HeldKey>(HeldKeys, [limit]);
  return rows;
}
