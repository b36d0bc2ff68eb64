// Named queries on the webhook outbox and each endpoint's delivery state
// (migration 008). The sender of an endpoint runs them on its own
// connection, which holds the endpoint's advisory lock: a state write can
// only come from the session that holds the lock. Retention and the
// metrics' backlog run on the pool.
import type pg from "pg";
import { type ActionRow, type EventRow, actionColumns, eventColumns } from "./rows.js";

// 1633907827: actionq's third advisory-lock class (after the event ids and
// the migrations); one lock per schema and endpoint name.
const EndpointTryLock = "SELECT pg_try_advisory_lock(1633907827, hashtext(current_schema() || ':' || $1) & 2147483647) AS locked";
const EndpointUnlock = "SELECT pg_advisory_unlock(1633907827, hashtext(current_schema() || ':' || $1) & 2147483647)";

// A new endpoint starts at the horizon: notifications committed before it
// was first seen are not replayed. A known one is only marked as seen.
const EndpointEnsureMany = `
INSERT INTO webhook_endpoints (name, cursor)
SELECT n, h.horizon FROM unnest($1::text[]) AS n CROSS JOIN (SELECT event_horizon() AS horizon) h
ON CONFLICT (name) DO UPDATE SET seen_at = now()`;

const EndpointGet = `
SELECT name, cursor::text AS cursor, attempts, next_attempt_at, failing_since, last_error
FROM webhook_endpoints WHERE name = $1`;

// The horizon first, then the rows: every notification up to it has
// committed (or never will), so nothing below the last row read can still
// appear.
const OutboxPendingHorizon = "SELECT event_horizon()::text AS horizon";
const OutboxPendingAfter = `
SELECT ${eventColumns("e")}
FROM webhook_outbox o JOIN events e ON e.id = o.event_id
WHERE o.event_id > $1 AND o.event_id <= $2
ORDER BY o.event_id
LIMIT $3`;

/** The action as the event left it, read back into an actions row. */
const OutboxActions = `
SELECT o.event_id::text AS event_id, ${actionColumns("a")}
FROM webhook_outbox o CROSS JOIN LATERAL jsonb_populate_record(NULL::actions, o.action) a
WHERE o.event_id = ANY($1::bigint[]) AND o.action IS NOT NULL`;

const EndpointAdvance = `
UPDATE webhook_endpoints
SET cursor = greatest(cursor, $2), attempts = 0, next_attempt_at = now(), failing_since = NULL,
  last_delivered_at = CASE WHEN $3::boolean THEN now() ELSE last_delivered_at END
WHERE name = $1`;

const EndpointFailed = `
UPDATE webhook_endpoints
SET attempts = attempts + 1, next_attempt_at = now() + $2::float8 * interval '1 millisecond',
  failing_since = coalesce(failing_since, now()), last_error = $3
WHERE name = $1
RETURNING attempts, failing_since`;

const EndpointSeen = "UPDATE webhook_endpoints SET seen_at = now() WHERE name = ANY($1::text[])";

// Rows every endpoint seen in the last week has passed may go; an endpoint
// no server has had in its file for a week is forgotten (added again, it
// starts from the horizon like a new one).
const OutboxPrune = `
WITH forgotten AS (DELETE FROM webhook_endpoints WHERE seen_at < now() - interval '7 days'),
bound AS (SELECT coalesce((SELECT min(cursor) FROM webhook_endpoints WHERE seen_at >= now() - interval '7 days'), event_horizon()) AS upto)
DELETE FROM webhook_outbox o USING bound WHERE o.event_id <= bound.upto`;

/** For the metrics: notifications of these event types after the cursor. */
const EndpointBacklog = `
SELECT w.attempts, w.last_error, count(o.event_id)::int AS n, min(o.created_at) AS oldest
FROM webhook_endpoints w
LEFT JOIN webhook_outbox o ON o.event_id > w.cursor
  AND EXISTS (SELECT 1 FROM events e WHERE e.id = o.event_id AND e.event_type = ANY($2::text[]))
WHERE w.name = $1
GROUP BY w.attempts, w.last_error`;

export interface EndpointState {
  name: string;
  cursor: string;
  attempts: number;
  next_attempt_at: Date;
  failing_since: Date | null;
  last_error: string | null;
}

/** A pool, a client, or anything that runs one query at a time for us. */
export interface Queryable {
  query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

export async function tryLockEndpoint(db: Queryable, name: string): Promise<boolean> {
  const { rows } = await db.query<{ locked: boolean }>(EndpointTryLock, [name]);
  return rows[0]!.locked;
}

export async function unlockEndpoint(db: Queryable, name: string): Promise<void> {
  await db.query(EndpointUnlock, [name]);
}

export async function ensureEndpoints(db: Queryable, names: string[]): Promise<void> {
  if (names.length > 0) await db.query(EndpointEnsureMany, [names]);
}

export async function endpointState(db: Queryable, name: string): Promise<EndpointState | undefined> {
  const { rows } = await db.query<EndpointState>(EndpointGet, [name]);
  return rows[0];
}

/** Outbox events after `cursor`, settled ones only, in id order, each with
 * the action as the event left it. */
export async function pendingNotifications(db: Queryable, cursor: string, limit: number): Promise<{ event: EventRow; action: ActionRow | null }[]> {
  const { rows: horizonRows } = await db.query<{ horizon: string }>(OutboxPendingHorizon);
  const horizon = horizonRows[0]!.horizon;
  if (BigInt(horizon) <= BigInt(cursor)) return [];
  const { rows: events } = await db.query<EventRow>(OutboxPendingAfter, [cursor, horizon, limit]);
  if (events.length === 0) return [];
  const { rows: actions } = await db.query<ActionRow & { event_id: string }>(OutboxActions, [events.map((event) => event.id)]);
  const byEvent = new Map(actions.map(({ event_id, ...action }) => [event_id, action as ActionRow]));
  return events.map((event) => ({ event, action: byEvent.get(event.id) ?? null }));
}

/** Moves the cursor (never backwards) and clears the failure state. */
export async function advanceEndpoint(db: Queryable, name: string, cursor: string, delivered: boolean): Promise<void> {
  await db.query(EndpointAdvance, [name, cursor, delivered]);
}

export async function endpointFailed(db: Queryable, name: string, delayMs: number, error: string): Promise<{ attempts: number; failing_since: Date }> {
  const { rows } = await db.query<{ attempts: number; failing_since: Date }>(EndpointFailed, [name, delayMs, error.slice(0, 1000)]);
  return rows[0] ?? { attempts: 0, failing_since: new Date() };
}

export async function markEndpointsSeen(db: Queryable, names: string[]): Promise<void> {
  if (names.length > 0) await db.query(EndpointSeen, [names]);
}

export async function pruneOutbox(db: Queryable): Promise<number> {
  const result = await db.query(OutboxPrune);
  return result.rowCount ?? 0;
}

export async function endpointBacklog(
  db: Queryable,
  name: string,
  eventTypes: string[],
): Promise<{ attempts: number; last_error: string | null; n: number; oldest: Date | null } | undefined> {
  const { rows } = await db.query<{ attempts: number; last_error: string | null; n: number; oldest: Date | null }>(EndpointBacklog, [name, eventTypes]);
  return rows[0];
}
