-- Concurrency keys: at most `claim_limit` actions with the same key are
-- CLAIMED at once, on every server together, and within a key actions are
-- claimed in priority-then-age order.
--
-- Each key has a row in concurrency_keys that counts its claimed actions.
-- A claim locks the rows of the keys it claims for (FOR UPDATE SKIP LOCKED)
-- and the count is kept by a trigger in the same transaction, so two
-- claims for one key are serialized by PostgreSQL itself: the second one
-- either skips the key or, once the first commits, reads the new count
-- (a row changed since the statement's snapshot is re-read when it is
-- locked). A count kept in the row, rather than counted from actions, is
-- what makes that re-read happen.

ALTER TABLE actions
  ADD COLUMN concurrency_key   text CHECK (concurrency_key <> ''),
  ADD COLUMN concurrency_limit integer CHECK (concurrency_limit BETWEEN 1 AND 1000),
  ADD CONSTRAINT concurrency_limit_with_key CHECK ((concurrency_key IS NULL) = (concurrency_limit IS NULL));
-- The archive keeps the columns of actions, in the same order.
ALTER TABLE actions_archive
  ADD COLUMN concurrency_key   text,
  ADD COLUMN concurrency_limit integer;

CREATE TABLE concurrency_keys (
  key         text PRIMARY KEY,
  -- The limit of the latest action enqueued with this key.
  claim_limit integer NOT NULL CHECK (claim_limit BETWEEN 1 AND 1000),
  -- Actions with this key now CLAIMED. Kept by actions_count_claimed.
  claimed     integer NOT NULL DEFAULT 0 CHECK (claimed >= 0)
);

-- The claim statement reads ready actions in two parts: those without a
-- key in priority order, and, for each key that has ready actions, the
-- first few of that key. A long queue on one key is then one index probe
-- for the claim, not a walk through its backlog.
DROP INDEX actions_ready;
DROP INDEX actions_ready_by_type;
CREATE INDEX actions_ready ON actions (priority, id) WHERE status = 'approved' AND NOT deferred AND concurrency_key IS NULL;
CREATE INDEX actions_ready_by_type ON actions (action_type, priority, id) WHERE status = 'approved' AND NOT deferred AND concurrency_key IS NULL;
CREATE INDEX actions_ready_by_key ON actions (concurrency_key, priority, id) WHERE status = 'approved' AND NOT deferred AND concurrency_key IS NOT NULL;
CREATE INDEX actions_claimed_by_key ON actions (concurrency_key) WHERE status = 'claimed' AND concurrency_key IS NOT NULL;

-- A key's row exists before any action with it can be claimed.
CREATE FUNCTION concurrency_keys_enqueued() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  -- Only keys not seen before: the unique check of an insert that
  -- conflicts waits for whichever claim holds the key's row, and a key in
  -- use is claimed from all the time.
  INSERT INTO concurrency_keys (key, claim_limit)
  SELECT DISTINCT ON (n.concurrency_key) n.concurrency_key, n.concurrency_limit
  FROM new_rows n
  WHERE n.concurrency_key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM concurrency_keys k WHERE k.key = n.concurrency_key)
  ORDER BY n.concurrency_key, n.id DESC
  ON CONFLICT (key) DO NOTHING;
  -- An UPDATE whose WHERE matches nothing locks nothing: enqueues with an
  -- unchanged limit never wait for a claim holding the key's row.
  UPDATE concurrency_keys k SET claim_limit = l.concurrency_limit
  FROM (
    SELECT DISTINCT ON (n.concurrency_key) n.concurrency_key, n.concurrency_limit
    FROM new_rows n WHERE n.concurrency_key IS NOT NULL
    ORDER BY n.concurrency_key, n.id DESC
  ) l
  WHERE k.key = l.concurrency_key AND k.claim_limit <> l.concurrency_limit;
  RETURN NULL;
END
$$;
CREATE TRIGGER actions_concurrency_keys_enqueued AFTER INSERT ON actions
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION concurrency_keys_enqueued();

-- Counts claims per key, in the statement that takes or ends them, and
-- wakes the servers when a key has room and work: the types of the actions
-- now at the head of that key are sent as claimable (w:<type>).
CREATE FUNCTION concurrency_keys_count_claimed() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
  types text[];
  t text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM new_rows WHERE concurrency_key IS NOT NULL) THEN
    RETURN NULL;
  END IF;
  -- In key order, so that two statements ending claims of the same keys
  -- cannot deadlock. A claim holds its keys' rows already.
  PERFORM 1 FROM concurrency_keys k
  WHERE k.key IN (
    SELECT n.concurrency_key FROM old_rows o JOIN new_rows n USING (id)
    WHERE n.concurrency_key IS NOT NULL AND (o.status = 'claimed') <> (n.status = 'claimed'))
  ORDER BY k.key FOR UPDATE;
  WITH delta AS (
    SELECT n.concurrency_key AS key,
      sum(CASE WHEN n.status = 'claimed' THEN 1 ELSE -1 END)::integer AS d
    FROM old_rows o JOIN new_rows n USING (id)
    WHERE n.concurrency_key IS NOT NULL AND (o.status = 'claimed') <> (n.status = 'claimed')
    GROUP BY n.concurrency_key
  ),
  counted AS (
    UPDATE concurrency_keys k SET claimed = k.claimed + delta.d
    FROM delta WHERE k.key = delta.key AND delta.d <> 0
    RETURNING k.key, k.claim_limit, k.claimed, delta.d
  )
  SELECT array_agg(DISTINCT h.action_type) INTO types
  FROM counted c
  CROSS JOIN LATERAL (
    SELECT a.action_type FROM actions a
    WHERE a.concurrency_key = c.key AND a.status = 'approved' AND NOT a.deferred
    ORDER BY a.priority, a.id LIMIT c.claim_limit
  ) h
  -- A key with room again, or one a claim took from but left room in
  -- (another claim that met its row locked left it alone, and may be
  -- waiting for a wakeup).
  WHERE c.d < 0 OR c.claimed < c.claim_limit;
  FOREACH t IN ARRAY coalesce(types, '{}') LOOP
    PERFORM pg_notify('actionq_' || TG_TABLE_SCHEMA, 'w:' || t);
  END LOOP;
  RETURN NULL;
END
$$;
CREATE TRIGGER actions_concurrency_keys_count_claimed AFTER UPDATE ON actions
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION concurrency_keys_count_claimed();
