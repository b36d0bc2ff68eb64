-- Actions brought over from another system (ImportActions) keep their id
-- there, so that importing the same set twice creates nothing. Native
-- actions have none stored: their external id is derived from this
-- deployment and their id (derived_external_id below), so that an action
-- exported to the filesystem layout and imported back is recognised too.
ALTER TABLE actions ADD COLUMN external_id text;
-- The unique index decides between concurrent imports of the same id: the
-- loser's INSERT ... ON CONFLICT DO NOTHING writes nothing.
CREATE UNIQUE INDEX actions_external_id ON actions (external_id) WHERE external_id IS NOT NULL;

-- actions_archive keeps the columns of actions in the same order; an
-- archived import is still found by its id.
ALTER TABLE actions_archive ADD COLUMN external_id text;
CREATE INDEX actions_archive_external_id ON actions_archive (external_id) WHERE external_id IS NOT NULL;

-- A UUID version 8, TTTTTTTT-TTTT-8000-8III-IIIIIIIIIIII: T is a tag of 12
-- random hex digits chosen once, here, for this deployment (so that two
-- deployments' actions never share an external id), I the action id as 15
-- hex digits (60 bits: far beyond any id the sequence will reach). The tag
-- is baked in as a literal: the function stays IMMUTABLE and a plain SQL
-- expression the planner inlines into every read of an action, and the
-- server never needs to know the tag. Built-in functions only, so no search
-- path is needed (see 012_through_a_pooler).
DO $migration$
DECLARE
  -- A version 4 UUID's first 12 hex digits are all random.
  tag text := substr(replace(gen_random_uuid()::text, '-', ''), 1, 12);
BEGIN
  EXECUTE format(
    $fn$CREATE FUNCTION derived_external_id(id bigint) RETURNS text
      LANGUAGE sql IMMUTABLE PARALLEL SAFE
      AS %L$fn$,
    format(
      $body$SELECT %L || substr(lpad(to_hex($1), 15, '0'), 1, 3) || '-' || substr(lpad(to_hex($1), 15, '0'), 4)$body$,
      substr(tag, 1, 8) || '-' || substr(tag, 9, 4) || '-8000-8'
    )
  );
END
$migration$;
