-- Keeping the hot table small. Finished actions older than
-- ACTIONQ_RETENTION_SECONDS move, in batches, to actions_archive: the
-- claim path, the sweeper and the partial indexes then only ever see
-- live work and recent history, however long the queue has run. The event
-- log is not touched: every event stays, with its action id.
--
-- actions_archive has the columns of actions, in the same order, so that a
-- row moves with SELECT *. A migration that adds a column to actions must
-- add it to actions_archive too (test/retention.test.ts checks this).
CREATE TABLE actions_archive (LIKE actions INCLUDING DEFAULTS);
ALTER TABLE actions_archive ADD PRIMARY KEY (id);
CREATE INDEX actions_archive_idempotency ON actions_archive (created_by, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX actions_archive_by_parent ON actions_archive (parent_id) WHERE parent_id IS NOT NULL;

-- The retention job's question: what finished longest ago.
CREATE INDEX actions_finished ON actions (finished_at) WHERE finished_at IS NOT NULL;

-- Every claim and completion rewrites an action row and leaves a dead entry
-- in the ready index until vacuum; with the default thresholds (20% of the
-- table) a busy queue piles up dead entries faster than they are cleaned.
-- Vacuum this table early and without throttling.
ALTER TABLE actions SET (
  autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_vacuum_threshold = 1000,
  autovacuum_analyze_scale_factor = 0.02,
  autovacuum_vacuum_cost_delay = 0
);
