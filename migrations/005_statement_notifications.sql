-- One notification per statement, not one per row. A batch of completions
-- used to send one 'f:' per claim it ended, and every row that became
-- claimable ran a trigger function of its own; every replica's listener
-- then handled each of them. Statement-level triggers read the statement's
-- rows from transition tables and send:
--   w:<action_type>            once per type that became claimable (as before)
--   c:<session>:<id>:<attempt>,...  the streamed claims the statement ended,
--                              at most 100 per notification (8000-byte limit)
-- 'f:' (one claim) is no longer sent; servers still understand it, so a
-- replica of the previous version keeps working during an upgrade.
DROP TRIGGER actions_notify_enqueued ON actions;
DROP TRIGGER actions_notify_claimable ON actions;
DROP TRIGGER actions_notify_claim_ended ON actions;
DROP FUNCTION notify_claimable();
DROP FUNCTION notify_claim_ended();

CREATE FUNCTION notify_inserted_claimable() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
  t text;
BEGIN
  FOR t IN SELECT DISTINCT n.action_type FROM new_rows n WHERE n.status = 'approved' AND NOT n.deferred LOOP
    PERFORM pg_notify('actionq_' || TG_TABLE_SCHEMA, 'w:' || t);
  END LOOP;
  RETURN NULL;
END
$$;
CREATE TRIGGER actions_notify_enqueued AFTER INSERT ON actions
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION notify_inserted_claimable();

CREATE FUNCTION notify_updated() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
  t text;
BEGIN
  FOR t IN
    SELECT DISTINCT n.action_type FROM new_rows n JOIN old_rows o USING (id)
    WHERE n.status = 'approved' AND NOT n.deferred AND (o.status <> 'approved' OR o.deferred)
  LOOP
    PERFORM pg_notify('actionq_' || TG_TABLE_SCHEMA, 'w:' || t);
  END LOOP;
  FOR t IN
    SELECT string_agg(e.claim, ',') FROM (
      SELECT o.claim_session || ':' || o.id || ':' || o.attempt AS claim, (row_number() OVER () - 1) / 100 AS chunk
      FROM old_rows o JOIN new_rows n USING (id)
      WHERE o.status = 'claimed' AND n.status <> 'claimed' AND o.claim_session IS NOT NULL
    ) e GROUP BY e.chunk
  LOOP
    PERFORM pg_notify('actionq_' || TG_TABLE_SCHEMA, 'c:' || t);
  END LOOP;
  RETURN NULL;
END
$$;
CREATE TRIGGER actions_notify_updated AFTER UPDATE ON actions
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION notify_updated();

-- The rate limit counts recent enqueues of agent: and script: producers
-- only; every other producer's rows no longer pay for this index on each
-- insert and status change.
DROP INDEX actions_by_producer;
CREATE INDEX actions_by_limited_producer ON actions (created_by, created_at)
  WHERE created_by LIKE 'agent:%' OR created_by LIKE 'script:%';
