-- Retries and scheduling: an action may fail and run again after a
-- backoff, may be enqueued to run later, and counts how its claims ended
-- (failed in the worker, or lost in delivery) separately.

ALTER TABLE actions
  ADD COLUMN max_attempts    integer NOT NULL DEFAULT 1 CHECK (max_attempts BETWEEN 1 AND 1000),
  ADD COLUMN failures        integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
  ADD COLUMN lost_deliveries integer NOT NULL DEFAULT 0 CHECK (lost_deliveries >= 0),
  ADD COLUMN last_error      text,
  -- The token of the claim whose failure scheduled the latest retry, so a
  -- repeated FailAction is answered as the first one was.
  ADD COLUMN retried_token   uuid,
  ADD COLUMN run_after       timestamptz,
  -- True while an APPROVED action waits for run_after. Deferred actions are
  -- kept out of the ready indexes, so that however many wait for later,
  -- the claim path never reads them; the sweeper clears the flag when
  -- run_after comes.
  ADD COLUMN deferred        boolean NOT NULL DEFAULT false;

ALTER TABLE actions
  ADD CONSTRAINT deferred_only_while_approved CHECK (NOT deferred OR (status = 'approved' AND run_after IS NOT NULL));

DROP INDEX actions_ready;
DROP INDEX actions_ready_by_type;
CREATE INDEX actions_ready ON actions (priority, id) WHERE status = 'approved' AND NOT deferred;
CREATE INDEX actions_ready_by_type ON actions (action_type, priority, id) WHERE status = 'approved' AND NOT deferred;
CREATE INDEX actions_deferred ON actions (run_after) WHERE status = 'approved' AND deferred;

-- Claimable means approved and not deferred: wake the servers when an
-- action becomes that, whichever way it got there.
DROP TRIGGER actions_notify_enqueued ON actions;
DROP TRIGGER actions_notify_claimable ON actions;
CREATE TRIGGER actions_notify_enqueued AFTER INSERT ON actions
  FOR EACH ROW WHEN (NEW.status = 'approved' AND NOT NEW.deferred) EXECUTE FUNCTION notify_claimable();
CREATE TRIGGER actions_notify_claimable AFTER UPDATE OF status, deferred ON actions
  FOR EACH ROW WHEN (NEW.status = 'approved' AND NOT NEW.deferred AND (OLD.status <> 'approved' OR OLD.deferred))
  EXECUTE FUNCTION notify_claimable();
