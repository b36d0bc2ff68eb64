-- Change windows and break-glass (issue 17).
--
-- The closed intervals of the policy's hold_claims windows for the next
-- days, as the server expanded them from the policy (src/policy/windows.ts):
-- the claim statement reads them with now(), so every replica holds the
-- same actions at the same instant and a held action is claimable the
-- moment its interval ends, without a sweep. Matchers are LIKE patterns
-- (the policy's globs, escaped); NULL matches anything.
--
-- One set is in force: a server replaces the whole set in one transaction
-- when it loads or reloads the policy (the last load wins), and extends it
-- periodically only while the set is from its own policy version (or has
-- run short), so a replica with an older policy cannot undo a reload.
CREATE TABLE change_window_intervals (
  window_name  text NOT NULL,
  starts_at    timestamptz NOT NULL,
  ends_at      timestamptz NOT NULL,
  action_types text[],
  projects     text[],
  risk_levels  text[],
  CHECK (ends_at > starts_at)
);
CREATE INDEX change_window_intervals_by_end ON change_window_intervals (ends_at);

-- Which policy wrote the set, and how far ahead it reaches. One row.
CREATE TABLE change_window_source (
  singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  policy_version text NOT NULL,
  horizon_end    timestamptz NOT NULL,
  written_at     timestamptz NOT NULL DEFAULT now()
);

-- Break-glass: an operator lets one action run inside a closed window.
-- actions_archive keeps the columns of actions in the same order.
ALTER TABLE actions
  ADD COLUMN break_glass_by     text,
  ADD COLUMN break_glass_reason text,
  ADD COLUMN break_glass_at     timestamptz;
ALTER TABLE actions_archive
  ADD COLUMN break_glass_by     text,
  ADD COLUMN break_glass_reason text,
  ADD COLUMN break_glass_at     timestamptz;

-- A break-glass on an APPROVED action may make it claimable at once, on
-- any replica: say so as an enqueue does. Only statements that set the
-- column fire it.
CREATE FUNCTION notify_break_glass() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  PERFORM pg_notify('actionq_' || TG_TABLE_SCHEMA, 'w:' || NEW.action_type);
  RETURN NULL;
END
$$;
CREATE TRIGGER actions_notify_break_glass AFTER UPDATE OF break_glass_at ON actions
  FOR EACH ROW WHEN (NEW.status = 'approved' AND NOT NEW.deferred AND NEW.break_glass_at IS NOT NULL)
  EXECUTE FUNCTION notify_break_glass();
