// Named queries on the webhook outbox and each endpoint's delivery state
// (migration 008). An endpoint's sender holds a lease on its row
// (migration 012), and every write of the delivery state names the holder:
// a write from a sender that lost the lease changes nothing. Retention and
// the metrics' backlog run on the pool.
import type pg from "pg";
import { type ActionRow, type EventRow, actionColumns, eventColumns } from "./rows.js";

// Taken when free, run out, or already ours; the state comes back with it.
const EndpointLeaseTake = `
UPDATE /*schema*/webhook_endpoints
SET lease_holder = $2, lease_expires_at = now() + $3::float8 * interval '1 millisecond'
WHERE name = $1 AND (lease_holder IS NULL OR lease_holder = $2 OR lease_expires_at < now())
RETURNING name, cursor::text AS cursor, attempts, next_attempt_at, failing_since, last_error`;

const EndpointLeaseRenew = `
UPDATE /*schema*/webhook_endpoints SET lease_expires_at = now() + $3::float8 * interval '1 millisecond'
WHERE name = $1 AND lease_holder = $2`;

const EndpointLeaseRelease = `
UPDATE /*schema*/webhook_endpoints SET lease_holder = NULL, lease_expires_at = NULL
WHERE name = $1 AND lease_holder = $2`;

// A new endpoint starts at the horizon: notifications committed before it
// was first seen are not replayed. A known one is only marked as seen.
const EndpointEnsureMany = `
INSERT INTO /*schema*/webhook_endpoints (name, cursor)
SELECT n, h.horizon FROM unnest($1::text[]) AS n CROSS JOIN (SELECT /*schema*/event_horizon() AS horizon) h
ON CONFLICT (name) DO UPDATE SET seen_at = now()`;

const EndpointGet = `
SELECT name, cursor::text AS cursor, attempts, next_attempt_at, failing_since, last_error
FROM /*schema*/webhook_endpoints WHERE name = $1`;

// The horizon first, then the rows: every notification up to it has
// committed (or never will), so nothing below the last row read can still
// appear.
const OutboxPendingHorizon = "SELECT /*schema*/event_horizon()::text AS horizon";
const OutboxPendingAfter = `
SELECT ${eventColumns("e")}
FROM /*schema*/webhook_outbox o JOIN /*schema*/events e ON e.id = o.event_id
WHERE o.event_id > $1 AND o.event_id <= $2
ORDER BY o.event_id
LIMIT $3`;

/** The action as the event left it, read back into an actions row. */
const OutboxActions = `
SELECT o.event_id::text AS event_id, ${actionColumns("a")}
FROM /*schema*/webhook_outbox o CROSS JOIN LATERAL jsonb_populate_record(NULL::/*schema*/actions, o.action) a
WHERE o.event_id = ANY($1::bigint[]) AND o.action IS NOT NULL`;

const EndpointAdvance = `
UPDATE /*schema*/webhook_endpoints
SET cursor = greatest(cursor, $2), attempts = 0, next_attempt_at = now(), failing_since = NULL,
  last_delivered_at = CASE WHEN $3::boolean THEN now() ELSE last_delivered_at END
WHERE name = $1 AND lease_holder = $4`;

const EndpointFailed = `
UPDATE /*schema*/webhook_endpoints
SET attempts = attempts + 1, next_attempt_at = now() + $2::float8 * interval '1 millisecond',
  failing_since = coalesce(failing_since, now()), last_error = $3
WHERE name = $1 AND lease_holder = $4
RETURNING attempts, failing_since`;

const EndpointSeen = "UPDATE /*schema*/webhook_endpoints SET seen_at = now() WHERE name = ANY($1::text[])";

// Rows every endpoint seen in the last week has passed may go; an endpoint
// no server has had in its file for a week is forgotten (added again, it
// starts from the horizon like a new one).
const OutboxPrune = `
WITH forgotten AS (DELETE FROM /*schema*/webhook_endpoints WHERE seen_at < now() - interval '7 days'),
bound AS (SELECT coalesce((SELECT min(cursor) FROM /*schema*/webhook_endpoints WHERE seen_at >= now() - interval '7 days'), /*schema*/event_horizon()) AS upto)
DELETE FROM /*schema*/webhook_outbox o USING bound WHERE o.event_id <= bound.upto`;

/** For the metrics: notifications of these event types after the cursor. */
const EndpointBacklog = `
SELECT w.attempts, w.last_error, count(o.event_id)::int AS n, min(o.created_at) AS oldest
FROM /*schema*/webhook_endpoints w
LEFT JOIN /*schema*/webhook_outbox o ON o.event_id > w.cursor
  AND EXISTS (SELECT 1 FROM /*schema*/events e WHERE e.id = o.event_id AND e.event_type = ANY($2::text[]))
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

/** The endpoint's state if `holder` now holds its lease for `ms` more
 * milliseconds; undefined if another holder has it (or the row is gone). */
export async function takeEndpointLease(db: Queryable, name: string, holder: string, ms: number): Promise<EndpointState | undefined> {
  const { rows } = await db.query<EndpointState>(EndpointLeaseTake, [name, holder, ms]);
  return rows[0];
}

/** False when `holder` no longer holds the lease. */
export async function renewEndpointLease(db: Queryable, name: string, holder: string, ms: number): Promise<boolean> {
  const result = await db.query(EndpointLeaseRenew, [name, holder, ms]);
  return result.rowCount === 1;
}

export async function releaseEndpointLease(db: Queryable, name: string, holder: string): Promise<void> {
  await db.query(EndpointLeaseRelease, [name, holder]);
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

/** Moves the cursor (never backwards) and clears the failure state. False
 * when `holder` no longer holds the lease: nothing was written. */
export async function advanceEndpoint(db: Queryable, name: string, holder: string, cursor: string, delivered: boolean): Promise<boolean> {
  const result = await db.query(EndpointAdvance, [name, cursor, delivered, holder]);
  return result.rowCount === 1;
}

/** Counts a failed attempt; undefined when `holder` no longer holds the
 * lease: nothing was written. */
export async function endpointFailed(
  db: Queryable,
  name: string,
  holder: string,
  delayMs: number,
  error: string,
): Promise<{ attempts: number; failing_since: Date } | undefined> {
  const { rows } = await db.query<{ attempts: number; failing_since: Date }>(EndpointFailed, [name, delayMs, error.slice(0, 1000), holder]);
  return rows[0];
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
