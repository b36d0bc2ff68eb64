// The named queries on schedules and schedule_ticks (migration 011). Every
// change of a schedule is a guarded UPDATE on its live row plus its event,
// in the transaction the store holds.

const SCHEDULE_FIELDS = [
  "key",
  "id",
  "template",
  "project",
  "cron",
  "interval_ms",
  "time_zone",
  "anchor_time",
  "start_time",
  "end_time",
  "jitter_ms",
  "overlap_policy",
  "catch_up_ms",
  "paused",
  "pause_reason",
  "owner",
  "description",
  "created_at",
  "updated_at",
  "next_tick_time",
  "buffered_tick_time",
  "revision",
  "deleted_at",
];

export function scheduleColumns(alias: string): string {
  return SCHEDULE_FIELDS.map((field) => `${alias}.${field}`).join(", ");
}

/** The transaction's clock, truncated to what JavaScript dates hold. */
export const DatabaseNow = "SELECT date_trunc('milliseconds', now()) AS now";

export const ScheduleInsert = `
INSERT INTO schedules (id, template, project, cron, interval_ms, time_zone, anchor_time, start_time, end_time, jitter_ms,
  overlap_policy, catch_up_ms, owner, description, next_tick_time)
VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (id) WHERE deleted_at IS NULL DO NOTHING
RETURNING ${scheduleColumns("schedules")}`;

/** The live schedule `id`, locked for a change. */
export const ScheduleLock = `SELECT ${scheduleColumns("s")} FROM schedules s WHERE s.id = $1 AND s.deleted_at IS NULL FOR UPDATE`;

export const ScheduleGet = `SELECT ${scheduleColumns("s")} FROM schedules s WHERE s.id = $1 AND s.deleted_at IS NULL`;

export const ScheduleReplace = `
UPDATE schedules SET template = $2::jsonb, project = $3, cron = $4, interval_ms = $5, time_zone = $6, anchor_time = $7,
  start_time = $8, end_time = $9, jitter_ms = $10, overlap_policy = $11, catch_up_ms = $12, description = $13,
  next_tick_time = $14, revision = revision + 1, updated_at = now()
WHERE key = $1 AND deleted_at IS NULL
RETURNING ${scheduleColumns("schedules")}`;

export const SchedulePause = `
UPDATE schedules SET paused = true, pause_reason = $2, next_tick_time = NULL, buffered_tick_time = NULL,
  revision = revision + 1, updated_at = now()
WHERE key = $1 AND deleted_at IS NULL AND NOT paused
RETURNING ${scheduleColumns("schedules")}`;

export const ScheduleResume = `
UPDATE schedules SET paused = false, pause_reason = '', next_tick_time = $2, revision = revision + 1, updated_at = now()
WHERE key = $1 AND deleted_at IS NULL AND paused
RETURNING ${scheduleColumns("schedules")}`;

export const ScheduleDelete = `
UPDATE schedules SET deleted_at = now(), next_tick_time = NULL, buffered_tick_time = NULL, revision = revision + 1, updated_at = now()
WHERE key = $1 AND deleted_at IS NULL
RETURNING ${scheduleColumns("schedules")}`;

export const ScheduleList = `
SELECT ${scheduleColumns("s")} FROM schedules s
WHERE s.deleted_at IS NULL AND s.id > $1 AND (cardinality($2::text[]) = 0 OR s.project = ANY ($2::text[]))
ORDER BY s.id LIMIT $3`;

/** One schedule with work to do, locked so that no other replica acts on
 * it meanwhile: a tick is due by the database's clock, or a buffered tick
 * can go because no action of the schedule is unfinished. Schedules this
 * replica just failed on are passed over for a while. */
export const ScheduleLockDue = `
SELECT ${scheduleColumns("s")}, date_trunc('milliseconds', now()) AS now FROM schedules s
WHERE s.deleted_at IS NULL AND NOT s.paused AND NOT (s.key = ANY ($1::bigint[]))
  AND (s.next_tick_time <= now()
    OR (s.buffered_tick_time IS NOT NULL AND NOT EXISTS (
      SELECT 1 FROM actions a WHERE a.schedule_key = s.key AND a.status IN ('pending', 'approved', 'claimed'))))
ORDER BY s.next_tick_time NULLS LAST
LIMIT 1
FOR UPDATE OF s SKIP LOCKED`;

/** How long until the earliest next tick, in ms (negative when overdue). */
export const ScheduleNextDue = `
SELECT (extract(epoch FROM min(next_tick_time) - now()) * 1000)::float8 AS due_in_ms FROM schedules
WHERE next_tick_time IS NOT NULL AND NOT (key = ANY ($1::bigint[]))`;

export const ScheduleAdvance = `
UPDATE schedules SET next_tick_time = $2, buffered_tick_time = $3 WHERE key = $1`;

/** The unfinished actions of a schedule, oldest first. */
export const ScheduleUnfinished = `
SELECT id::text, status, schedule_tick_time FROM actions
WHERE schedule_key = $1 AND status IN ('pending', 'approved', 'claimed') ORDER BY id`;

export const TicksRecorded = `
SELECT t.tick_time, t.outcome, t.action_id::text, t.reason, t.backfill, t.recorded_at, a.status AS action_status
FROM schedule_ticks t LEFT JOIN actions a ON a.id = t.action_id
WHERE t.schedule_key = $1 AND t.tick_time = ANY ($2::timestamptz[])`;

/** A buffered tick does not outlive a pause. */
export const TickUnbuffer = `
UPDATE schedule_ticks SET outcome = 'skipped_overlap', reason = 'the schedule was paused'
WHERE schedule_key = $1 AND tick_time = $2 AND outcome = 'buffered'`;

/** Records what became of a tick. A tick recorded without an action
 * (skipped, buffered, failed) may be acted on again (a backfill, a
 * buffered tick let go); one with an action never changes. */
export const TickRecord = `
INSERT INTO schedule_ticks (schedule_key, tick_time, outcome, action_id, reason, backfill)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (schedule_key, tick_time) DO UPDATE
  SET outcome = excluded.outcome, action_id = excluded.action_id, reason = excluded.reason,
    backfill = excluded.backfill, recorded_at = now()
  WHERE schedule_ticks.action_id IS NULL
RETURNING tick_time, outcome, action_id::text, reason, backfill, recorded_at`;

/** Ticks of a long outage skipped by the catch-up window, up to a cap. */
export const TicksRecordSkipped = `
INSERT INTO schedule_ticks (schedule_key, tick_time, outcome, reason)
SELECT $1, t, 'skipped_catch_up', $3 FROM unnest($2::timestamptz[]) AS t
ON CONFLICT (schedule_key, tick_time) DO NOTHING`;

/** A schedule's latest ticks, newest first, with their actions' status. */
export const TicksRecent = `
SELECT t.tick_time, t.outcome, t.action_id::text, t.reason, t.backfill, t.recorded_at,
  coalesce(a.status, aa.status) AS action_status
FROM schedule_ticks t
LEFT JOIN actions a ON a.id = t.action_id
LEFT JOIN actions_archive aa ON aa.id = t.action_id AND a.id IS NULL
WHERE t.schedule_key = $1
ORDER BY t.tick_time DESC
LIMIT $2`;

/** The latest tick of each schedule, for lists. */
export const TicksLatest = `
SELECT DISTINCT ON (t.schedule_key) t.schedule_key::text, t.tick_time, t.outcome, t.action_id::text, t.reason, t.backfill, t.recorded_at,
  a.status AS action_status
FROM schedule_ticks t LEFT JOIN actions a ON a.id = t.action_id
WHERE t.schedule_key = ANY ($1::bigint[])
ORDER BY t.schedule_key, t.tick_time DESC`;

export const ScheduleEvent = `
INSERT INTO events (action_id, event_type, actor, payload) VALUES (NULL, $1, $2, $3::jsonb)`;

/** Ticks that enqueued nothing (skipped, failed) past the retention age,
 * oldest first, a batch at a time. Ticks with an action stay: they are
 * what a backfill checks, as long as the action exists. */
export const TicksPrune = `
DELETE FROM schedule_ticks t USING (
  SELECT schedule_key, tick_time FROM schedule_ticks
  WHERE action_id IS NULL AND outcome <> 'buffered' AND recorded_at < now() - $1::float8 * interval '1 millisecond'
  ORDER BY recorded_at LIMIT $2 FOR UPDATE SKIP LOCKED) old
WHERE t.schedule_key = old.schedule_key AND t.tick_time = old.tick_time`;
