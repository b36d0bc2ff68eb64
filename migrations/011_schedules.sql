-- Schedules: recurring actions. A schedule is a row with a template (the
-- EnqueueActionRequest each tick sends, as protobuf JSON) and a clock (a
-- cron expression in a time zone, or a fixed interval from an anchor).
--
-- Exactly one action per tick rests on two things the database enforces:
-- the scheduler acts on a schedule only while it holds the schedule's row
-- lock (FOR UPDATE SKIP LOCKED), recording each tick in schedule_ticks
-- (primary key: schedule, tick) in the same transaction as the action; and
-- an action carries (schedule_key, schedule_tick_time), unique while the
-- action is in the hot table. A crash rolls the tick, its action and the
-- advance of next_tick_time back together.
--
-- `key` is internal and never reused; `id` is the caller's name and may be
-- taken again once the schedule is deleted, so old ticks never collide
-- with a new schedule's.

CREATE TABLE schedules (
  key               bigserial PRIMARY KEY,
  id                text NOT NULL,
  -- The EnqueueActionRequest as proto JSON, as checked at create/update.
  template          jsonb NOT NULL CHECK (jsonb_typeof(template) = 'object'),
  -- Denormalised from the template for ListSchedules' filter.
  project           text NOT NULL DEFAULT '',
  cron              text,
  interval_ms       bigint CHECK (interval_ms >= 1000),
  time_zone         text NOT NULL DEFAULT 'UTC',
  -- Interval ticks are anchor + k * interval.
  anchor_time       timestamptz NOT NULL,
  start_time        timestamptz,
  end_time          timestamptz,
  jitter_ms         bigint NOT NULL DEFAULT 0 CHECK (jitter_ms >= 0),
  overlap_policy    text NOT NULL CHECK (overlap_policy IN ('skip', 'buffer_one', 'allow_all', 'cancel_other')),
  catch_up_ms       bigint NOT NULL CHECK (catch_up_ms >= 0),
  paused            boolean NOT NULL DEFAULT false,
  pause_reason      text NOT NULL DEFAULT '',
  owner             text NOT NULL,
  description       text NOT NULL DEFAULT '',
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  -- The next tick to act on; NULL when paused, deleted or past end_time.
  next_tick_time    timestamptz,
  -- A tick waiting (BUFFER_ONE) for the earlier action to finish.
  buffered_tick_time timestamptz,
  revision          bigint NOT NULL DEFAULT 1,
  deleted_at        timestamptz,
  CONSTRAINT one_clock CHECK ((cron IS NULL) <> (interval_ms IS NULL)),
  CONSTRAINT nothing_due_when_paused CHECK (NOT paused OR next_tick_time IS NULL)
);
-- One live schedule per id; a deleted one keeps its row (and its ticks).
CREATE UNIQUE INDEX schedules_live_id ON schedules (id) WHERE deleted_at IS NULL;
CREATE INDEX schedules_due ON schedules (next_tick_time) WHERE next_tick_time IS NOT NULL;
CREATE INDEX schedules_buffered ON schedules (key) WHERE buffered_tick_time IS NOT NULL;

-- What became of each tick acted on. Skipped ticks of a long outage are
-- recorded up to a cap (one event summarises the rest), so this stays
-- bounded whatever the outage.
CREATE TABLE schedule_ticks (
  schedule_key  bigint NOT NULL REFERENCES schedules (key),
  tick_time     timestamptz NOT NULL,
  outcome       text NOT NULL CHECK (outcome IN ('enqueued', 'skipped_overlap', 'skipped_catch_up', 'buffered', 'failed')),
  action_id     bigint,
  reason        text NOT NULL DEFAULT '',
  backfill      boolean NOT NULL DEFAULT false,
  recorded_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (schedule_key, tick_time),
  CONSTRAINT action_when_enqueued CHECK ((outcome = 'enqueued') = (action_id IS NOT NULL))
);
CREATE INDEX schedule_ticks_recent ON schedule_ticks (schedule_key, recorded_at DESC, tick_time DESC);
-- Ticks that enqueued nothing are pruned after ACTIONQ_RETENTION_SECONDS.
CREATE INDEX schedule_ticks_prunable ON schedule_ticks (recorded_at) WHERE action_id IS NULL AND outcome <> 'buffered';

ALTER TABLE actions
  ADD COLUMN schedule_key       bigint,
  ADD COLUMN schedule_id        text,
  ADD COLUMN schedule_tick_time timestamptz,
  ADD CONSTRAINT schedule_tick_with_key CHECK ((schedule_key IS NULL) = (schedule_tick_time IS NULL) AND (schedule_key IS NULL) = (schedule_id IS NULL));
-- The database refuses a second action for the same tick.
CREATE UNIQUE INDEX actions_one_per_tick ON actions (schedule_key, schedule_tick_time) WHERE schedule_key IS NOT NULL;
-- Same columns, same order: archiving copies rows with SELECT *.
ALTER TABLE actions_archive
  ADD COLUMN schedule_key       bigint,
  ADD COLUMN schedule_id        text,
  ADD COLUMN schedule_tick_time timestamptz;

-- A schedule created, changed, paused, resumed or deleted (its revision
-- moves; the scheduler's own advance of next_tick_time does not) wakes the
-- schedulers of every server, as `s`, rather than at their next poll.
CREATE FUNCTION notify_schedule_changed() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  PERFORM pg_notify('actionq_' || TG_TABLE_SCHEMA, 's');
  RETURN NULL;
END
$$;
CREATE TRIGGER schedules_changed_insert AFTER INSERT ON schedules
  FOR EACH ROW EXECUTE FUNCTION notify_schedule_changed();
CREATE TRIGGER schedules_changed_update AFTER UPDATE ON schedules
  FOR EACH ROW WHEN (OLD.revision IS DISTINCT FROM NEW.revision) EXECUTE FUNCTION notify_schedule_changed();
