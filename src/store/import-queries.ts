// Named queries of ImportActions: finding actions already here under an
// external id, and inserting imported actions with their events.
import { actionColumns } from "./rows.js";

/** Actions already here under these external ids: imported ones by the id
 * they keep ($1), native ones by their derived id, looked up by the action
 * id decoded from it ($2) and compared by the caller with the external_id
 * column, which SQL derives (only the database knows the deployment's tag).
 * Archived actions count: they were here. */
export const ActionGetByExternalIds = `
SELECT ${actionColumns("a")} FROM (
  SELECT * FROM /*schema*/actions WHERE external_id = ANY($1::text[])
  UNION ALL
  SELECT * FROM /*schema*/actions WHERE id = ANY($2::bigint[]) AND external_id IS NULL
  UNION ALL
  SELECT * FROM /*schema*/actions_archive WHERE external_id = ANY($1::text[])
  UNION ALL
  SELECT * FROM /*schema*/actions_archive WHERE id = ANY($2::bigint[]) AND external_id IS NULL
) a`;

/** Which of these strings ($1), each with the action id decoded from it
 * ($2), this deployment derived: they name actions of its own. */
export const DerivedHereMany = `
SELECT i.given FROM unnest($1::text[], $2::bigint[]) AS i(given, id)
WHERE /*schema*/derived_external_id(i.id) = lower(i.given)`;

/** Inserts imported actions ($1: a JSON array, one object per action, in
 * `ord` order) and their events, in the order each action's `events` lists
 * them. The status and every column are decided by the caller; SQL adds
 * only the times that are now (and the expiry to action_enqueued). An external id taken meanwhile (a
 * concurrent import that won the unique index, or an earlier item of the
 * same call) inserts nothing: that input's row comes back with a null id.
 * $2, validate only: the caller rolls back; the actions take ids no action
 * has (negative) and no events are written, so that not even a sequence
 * moves. */
export const ActionImportMany = `
WITH input AS (
  SELECT r.*, CASE WHEN $2::bool THEN -1 - r.ord ELSE nextval('/*schema*/actions_id_seq') END AS id
  FROM jsonb_to_recordset($1::jsonb) AS r(
    ord int, external_id text, action_type text, payload jsonb, status text, risk_level text, confidence float8,
    approval_required bool, created_by text, correlation_id text, node text, service text, rollback_ref text,
    approved_by text, approved_now bool, approvals_required int, approval_requirements jsonb, ttl_seconds float8,
    policy_version text, autonomous_eligible bool, max_attempts int, concurrency_key text, concurrency_limit int,
    created_at timestamptz, finished_at timestamptz, failure_reason text, result_ref text, events jsonb)
),
ins AS (
  INSERT INTO /*schema*/actions (id, external_id, action_type, payload, status, risk_level, confidence, approval_required,
    created_by, correlation_id, node, service, rollback_ref, approved_by, approved_at, approvals_required,
    approval_requirements, approval_expires_at, policy_version, autonomous_eligible, max_attempts, concurrency_key,
    concurrency_limit, created_at, updated_at, finished_at, failure_reason, result_ref)
  SELECT id, external_id, action_type, payload, status, risk_level, confidence, approval_required,
    created_by, correlation_id, node, service, rollback_ref, approved_by, CASE WHEN approved_now THEN now() END,
    approvals_required, approval_requirements, now() + ttl_seconds * interval '1 second', policy_version,
    autonomous_eligible, max_attempts, concurrency_key, concurrency_limit, created_at,
    -- A finished action was last changed when it finished (there, or now
    -- when that time is unknown).
    CASE WHEN status IN ('completed', 'failed', 'rejected', 'cancelled') THEN coalesce(finished_at, now()) ELSE now() END,
    CASE WHEN status IN ('completed', 'failed', 'rejected', 'cancelled') THEN coalesce(finished_at, now()) END,
    failure_reason, result_ref
  -- In one order for every call, so that two calls importing the same ids
  -- in different orders wait for each other instead of deadlocking.
  FROM input ORDER BY external_id COLLATE "C", ord
  ON CONFLICT (external_id) WHERE external_id IS NOT NULL DO NOTHING
  RETURNING *
),
ev AS (
  INSERT INTO /*schema*/events (action_id, event_type, actor, payload)
  SELECT ins.id, e.value->>'event_type', e.value->>'actor',
    -- The expiry is counted from now, here, as an enqueue's is.
    e.value->'payload' || CASE WHEN e.value->>'event_type' = 'action_enqueued'
      THEN jsonb_strip_nulls(jsonb_build_object('approval_expires_at', /*schema*/rfc3339(ins.approval_expires_at))) ELSE '{}' END
  FROM ins JOIN input USING (id)
  CROSS JOIN LATERAL jsonb_array_elements(input.events) WITH ORDINALITY AS e(value, seq)
  WHERE NOT $2::bool
  ORDER BY ins.id, e.seq
)
SELECT input.ord, ${actionColumns("ins")} FROM input LEFT JOIN ins USING (id) ORDER BY input.ord`;
