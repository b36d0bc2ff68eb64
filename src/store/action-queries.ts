// The named queries on the actions table, built once at module load. Each
// takes arrays, so that one statement serves one call or a batch; state is
// guarded in the SQL itself (`WHERE status = ...`). One file for the
// table, as River keeps one per table: it runs past our usual 400 lines
// because every statement spells out its guard and its event, and one file
// lets a reader see every statement that writes a column.
import { READY_KEYS } from "./concurrency.js";
import { claimableWhere, windowHolds } from "./pauses.js";
import { type Status, actionColumns, eventColumns } from "./rows.js";
import { CLEAR_CLAIM_SET, FINISH_CLAIM_SET, REQUEUE_LOST_SET, changeWithEvent } from "./transitions.js";

// Each input carries two decisions: the policy's, and the one that holds
// while auto-approval is paused. The statement picks between them itself,
// so that a pause committed before it is always obeyed.
/** The unkeyed actions ready to claim that a stream with the filter of
 * `input` accepts and that come before it (priority, then age: every one
 * already written is older). Two forms, so that each uses its index. */
const READY_AHEAD = `
  CASE WHEN cardinality(input.handoff_types) = 0 THEN EXISTS (
    SELECT 1 FROM actions a
    WHERE a.status = 'approved' AND NOT a.deferred AND a.concurrency_key IS NULL AND a.priority <= input.priority
      AND (cardinality(input.handoff_projects) = 0 OR a.project = ANY (input.handoff_projects)))
  ELSE EXISTS (
    SELECT 1 FROM actions a
    WHERE a.status = 'approved' AND NOT a.deferred AND a.concurrency_key IS NULL AND a.priority <= input.priority
      AND a.action_type = ANY (input.handoff_types)
      AND (cardinality(input.handoff_projects) = 0 OR a.project = ANY (input.handoff_projects)))
  END`;

/** Inserts a batch of actions with their events. An input may carry a
 * waiting stream's slot (handoff_*): the action is then written already
 * claimed for it, with its claim event, when it could be claimed at once
 * (approved, due, unkeyed, not paused, not held by a change window) and
 * nothing that stream accepts is ready before it. Otherwise it is written
 * as usual and the stream's slot is freed. */
export const ActionInsertMany = `
WITH paused AS (SELECT EXISTS (SELECT 1 FROM pauses WHERE kind = 'auto_approval') AS auto_approval),
input AS (
  SELECT r.*, nextval('actions_id_seq') AS id,
    CASE WHEN paused.auto_approval THEN r.paused_decision ELSE r.decision END AS d
  FROM jsonb_to_recordset($1::jsonb) AS r(
    ord int, action_type text, project text, target_ref text, source_refs text[], payload jsonb, priority int,
    risk_level text, confidence float8, created_by text, correlation_id text, node text, service text,
    parent_id bigint, chain_depth int, rollback_ref text, rollback_payload jsonb, rollback_of bigint,
    supersedes_id bigint, idempotency_key text, request_digest text, autonomous_eligible bool, policy_version text,
    decision jsonb, paused_decision jsonb, note jsonb, max_attempts int, run_after timestamptz,
    concurrency_key text, concurrency_limit int, schedule_key bigint, schedule_id text, schedule_tick_time timestamptz,
    handoff_session uuid, handoff_worker text, handoff_lease_ms float8, handoff_types text[], handoff_projects text[])
  CROSS JOIN paused
),
-- MATERIALIZED: the INSERT reads handed nine times; inlined, the whole
-- check would be planned nine times over.
decided AS MATERIALIZED (
  SELECT input.*,
    -- CASE: the checks cost index probes, spent only on a handoff.
    CASE WHEN input.handoff_session IS NULL THEN false ELSE input.d->>'status' = 'approved'
      AND (input.run_after IS NULL OR input.run_after <= now()) AND input.concurrency_key IS NULL
      AND NOT EXISTS (SELECT 1 FROM pauses p WHERE p.kind = 'all' OR (p.kind = 'action_type' AND p.value = input.action_type)
        OR (p.kind = 'project' AND p.value = input.project))
      AND NOT EXISTS (SELECT 1 FROM change_window_intervals w WHERE ${windowHolds("w", "input")})
      AND NOT ${READY_AHEAD}
      -- Keyed work is claimed in its key's order, which a handoff would not see.
      AND NOT EXISTS (SELECT 1 FROM actions a WHERE a.status = 'approved' AND NOT a.deferred AND a.concurrency_key IS NOT NULL)
    END AS handed
  FROM input
),
ins AS (
  INSERT INTO actions (id, action_type, project, target_ref, source_refs, payload, priority, status, risk_level,
    confidence, approval_required, created_by, correlation_id, node, service, parent_id, chain_depth, rollback_ref,
    rollback_payload, rollback_of, supersedes_id, idempotency_key, request_digest, approved_by, approved_at,
    approvals_required, approval_expires_at, policy_version, autonomous_eligible, max_attempts, run_after, deferred,
    concurrency_key, concurrency_limit, approval_requirements, schedule_key, schedule_id, schedule_tick_time,
    claimed_by, claim_token, claim_session, claimed_at, claim_deadline, lease, ack_deadline, attempt)
  SELECT id, action_type, project, target_ref, source_refs, payload, priority,
    CASE WHEN handed THEN 'claimed' ELSE d->>'status' END, risk_level,
    confidence, d->>'status' = 'pending', created_by, correlation_id, node, service, parent_id, chain_depth, rollback_ref,
    rollback_payload, rollback_of, supersedes_id, idempotency_key, request_digest, d->>'approved_by',
    CASE WHEN d->>'status' = 'approved' THEN now() END,
    (d->>'approvals_required')::int, now() + (d->>'ttl_seconds')::float8 * interval '1 second',
    policy_version, autonomous_eligible, max_attempts, run_after,
    d->>'status' = 'approved' AND run_after IS NOT NULL AND run_after > now(),
    concurrency_key, concurrency_limit,
    coalesce(d->'approval_requirements', '[]'::jsonb), schedule_key, schedule_id, schedule_tick_time,
    CASE WHEN handed THEN handoff_worker END,
    CASE WHEN handed THEN gen_random_uuid() END,
    CASE WHEN handed THEN handoff_session END,
    CASE WHEN handed THEN now() END,
    CASE WHEN handed THEN now() + handoff_lease_ms * interval '1 millisecond' END,
    CASE WHEN handed THEN handoff_lease_ms * interval '1 millisecond' END,
    CASE WHEN handed THEN now() + $2::float8 * interval '1 millisecond' END,
    CASE WHEN handed THEN 1 ELSE 0 END
  FROM decided ORDER BY ord
  ON CONFLICT (created_by, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
  RETURNING *
),
ev AS (
  INSERT INTO events (action_id, event_type, actor, payload)
  SELECT ins.id, v.event_type, v.actor, v.payload
  FROM ins JOIN input USING (id)
  CROSS JOIN LATERAL (VALUES
    (1, 'action_enqueued', ins.created_by, jsonb_strip_nulls(jsonb_build_object(
      'status', input.d->>'status', 'risk_level', ins.risk_level, 'approval_required', ins.approval_required,
      'priority', ins.priority, 'parent_id', ins.parent_id, 'chain_depth', ins.chain_depth,
      'approvals_required', ins.approvals_required, 'approval_expires_at', rfc3339(ins.approval_expires_at),
      'supersedes_id', ins.supersedes_id, 'rollback_of', ins.rollback_of, 'note', input.note,
      'max_attempts', ins.max_attempts, 'run_after', rfc3339(ins.run_after),
      'schedule_id', ins.schedule_id, 'schedule_tick_time', rfc3339(ins.schedule_tick_time))) || jsonb_build_object('policy', input.d->'detail')),
    (2, 'action_approved', ins.approved_by, input.d->'detail'),
    (3, 'action_claimed', ins.claimed_by, jsonb_build_object('claim_deadline', rfc3339(ins.claim_deadline), 'attempt', ins.attempt,
      'lease_ms', (extract(epoch FROM ins.lease) * 1000)::float8, 'streamed', true, 'handed_off', true))
  ) AS v(seq, event_type, actor, payload)
  WHERE v.seq = 1 OR (v.seq = 2 AND input.d->>'status' = 'approved') OR (v.seq = 3 AND ins.status = 'claimed')
  ORDER BY ins.id, v.seq
)
SELECT input.ord, ${actionColumns("ins")} FROM input LEFT JOIN ins USING (id) ORDER BY input.ord`;

/** Locks the actions named by `supersedes_id`, so that none moves on while
 * its replacement is written. */
export const ActionLockForSupersede = `SELECT ${actionColumns("a")} FROM actions a WHERE a.id = ANY($1::bigint[]) ORDER BY a.id FOR UPDATE`;

export const ActionSupersedeMany = changeWithEvent({
  inputs: "SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS i(id, new_id, actor)",
  lock: `
    SELECT a.id, a.status AS old_status FROM actions a JOIN i USING (id)
    WHERE a.status IN ('pending', 'approved')
    FOR UPDATE OF a`,
  set: "status = 'cancelled', failure_reason = 'superseded by action ' || i.new_id, finished_at = now(), deferred = false",
  event: {
    type: "'action_cancelled'",
    actor: "i.actor",
    payload: "jsonb_build_object('reason', c.failure_reason, 'from_status', o.old_status, 'superseded_by', i.new_id)",
  },
});

/** An action_progress event, only from the worker holding the claim. Like
 * any call with the token, it acknowledges a streamed claim; the update
 * also keeps the claim from ending until the event is written. */
export const ActionProgress = `
WITH a AS (
  UPDATE actions SET acked_at = coalesce(acked_at, now()), ack_deadline = NULL
  WHERE id = $1 AND status = 'claimed' AND claim_token = $2::uuid
  RETURNING id, attempt
)
INSERT INTO events (action_id, event_type, actor, payload)
SELECT a.id, 'action_progress', $3, $4::jsonb || jsonb_build_object('attempt', a.attempt) FROM a
RETURNING ${eventColumns("events")}`;

/** The action to roll back, locked so that two RollbackAction calls take
 * turns. */
export const ActionLockForRollback = `SELECT ${actionColumns("a")} FROM actions a WHERE a.id = $1 FOR UPDATE`;

/** Its live rollback, read in a statement of its own, after the lock: a
 * snapshot taken before the lock was granted would miss the rollback the
 * previous holder just committed. */
export const ActionLiveRollback = `
SELECT ${actionColumns("r")} FROM actions r
WHERE r.rollback_of = $1 AND r.status IN ('pending', 'approved', 'claimed', 'completed')`;

/** A key names its action also after the action was archived. */
export const ActionGetByIdempotencyKeys = `
SELECT ${actionColumns("a")} FROM (
  SELECT * FROM actions WHERE idempotency_key IS NOT NULL
  UNION ALL
  SELECT * FROM actions_archive WHERE idempotency_key IS NOT NULL
) a
JOIN unnest($1::text[], $2::text[]) AS k(created_by, idempotency_key)
  ON a.created_by = k.created_by AND a.idempotency_key = k.idempotency_key`;

/** Parents may be live or archived. */
export const ActionGetDepths = `
SELECT id, chain_depth FROM actions WHERE id = ANY($1::bigint[])
UNION ALL
SELECT id, chain_depth FROM actions_archive WHERE id = ANY($1::bigint[])`;

// Serializes enqueues per rate-limited producer, so that concurrent calls
// cannot both pass the count. 1633907827 keeps these apart from other locks.
export const ProducerLockMany = `
SELECT pg_advisory_xact_lock(1633907827, hashtext(p)) FROM unnest($1::text[]) AS p ORDER BY p`;

// With the count, when the producer may enqueue again if it is at the
// limit ($2): once enough of its last hour's actions are older than an hour
// that one more fits.
export const ProducerCountRecent = `
SELECT created_by, count(*)::int AS n,
  CASE WHEN count(*) >= $2::int THEN
    ceil(extract(epoch FROM (array_agg(created_at ORDER BY created_at))[count(*)::int - $2::int + 1] + interval '1 hour' - now()) * 1000)::bigint
  END AS free_in_ms
FROM actions
WHERE created_by = ANY($1::text[]) AND created_at > now() - interval '1 hour'
  AND (created_by LIKE 'agent:%' OR created_by LIKE 'script:%')
GROUP BY created_by`;

export const ActionGetWithEvents = `
SELECT ${actionColumns("a")},
  coalesce((
    SELECT jsonb_agg(jsonb_build_object(
      'id', e.id::text, 'action_id', e.action_id::text, 'event_type', e.event_type, 'actor', e.actor,
      'payload', e.payload, 'created_at', e.created_at) ORDER BY e.id)
    FROM events e WHERE e.action_id = a.id
  ), '[]'::jsonb) AS events
FROM (SELECT * FROM actions WHERE id = $1 UNION ALL SELECT * FROM actions_archive WHERE id = $1) a`;

/** Finished actions past the retention age move to actions_archive, oldest
 * first; SKIP LOCKED lets every replica run it. */
export const ActionArchiveFinished = `
WITH moved AS (
  DELETE FROM actions a WHERE a.id IN (
    SELECT id FROM actions WHERE finished_at < now() - $1::float8 * interval '1 millisecond'
    ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED)
  RETURNING a.*
)
INSERT INTO actions_archive SELECT * FROM moved`;

export const ActionGetMany = `SELECT ${actionColumns("a")} FROM actions a WHERE a.id = ANY($1::bigint[])`;

export const ActionList = `
SELECT ${actionColumns("a")} FROM actions a
WHERE ($1::text[] IS NULL OR a.status = ANY($1))
  AND ($2::text[] IS NULL OR a.action_type = ANY($2))
  AND ($3::text[] IS NULL OR a.project = ANY($3))
  AND ($4::text IS NULL OR a.created_by = $4)
  AND ($5::bigint IS NULL OR a.parent_id = $5)
  AND ($6::text IS NULL OR a.correlation_id = $6)
  AND ($7::bigint IS NULL OR a.id < $7)
ORDER BY a.id DESC
LIMIT $8`;

/** Claims up to one action per slot. Slot k gets the k-th action in claim
 * order; a NULL session means a unary ClaimAction (acknowledged at once).
 *
 * Actions without a concurrency key come from one index in priority order.
 * Keyed ones come from the head of each key that has a free slot: its
 * first (limit - claimed) actions in priority order, whatever their type,
 * so that within a key nothing overtakes (a head this worker cannot take
 * holds its key back for it too). The candidates are read without locks;
 * then only the keys of the ones that may be claimed are locked (SKIP
 * LOCKED: a key another claim is serving is left to it), and the count
 * read under that lock, which is the current one, says how many each key
 * may still take. The trigger of migration 007 counts the new claims in
 * the same transaction. */
function claimQuery(filter: "any" | "types" | "projects" | "both"): string {
  // $1-$5 always; the filters' arrays follow only when used.
  const filters = (alias: string) => {
    const conditions = claimableWhere(alias);
    let next = 6;
    if (filter === "types" || filter === "both") conditions.push(`${alias}.action_type = ANY($${next++}::text[])`);
    if (filter === "projects" || filter === "both") conditions.push(`${alias}.project = ANY($${next++}::text[])`);
    return conditions.join(" AND ");
  };
  return changeWithEvent({
    lock: `
      WITH heads AS MATERIALIZED (
        SELECT h.id, h.priority, h.concurrency_key FROM concurrency_keys k
        CROSS JOIN LATERAL (
          SELECT a.* FROM actions a
          WHERE a.concurrency_key = k.key AND a.status = 'approved' AND NOT a.deferred
          ORDER BY a.priority, a.id LIMIT greatest(k.claim_limit - k.claimed, 0)
        ) h
        WHERE k.key = ANY (ARRAY(${READY_KEYS})) AND k.claimed < k.claim_limit AND ${filters("h")}
        ORDER BY h.priority, h.id LIMIT $4
      ),
      keys AS MATERIALIZED (
        SELECT k.key, k.claim_limit - k.claimed AS free FROM concurrency_keys k
        WHERE k.key IN (SELECT concurrency_key FROM heads) AND k.claimed < k.claim_limit
        FOR UPDATE SKIP LOCKED
      ),
      keyed AS MATERIALIZED (
        SELECT a.id, a.priority FROM actions a
        WHERE a.id IN (
          SELECT x.id FROM (
            SELECT hd.id, keys.free, row_number() OVER (PARTITION BY hd.concurrency_key ORDER BY hd.priority, hd.id) AS rank
            FROM heads hd JOIN keys ON keys.key = hd.concurrency_key
          ) x WHERE x.rank <= x.free)
          AND a.status = 'approved' AND NOT a.deferred
        FOR UPDATE SKIP LOCKED
      ),
      plain AS MATERIALIZED (
        SELECT actions.id, actions.priority FROM actions
        WHERE ${filters("actions")} AND actions.concurrency_key IS NULL
        ORDER BY actions.priority, actions.id
        LIMIT $4
        FOR UPDATE SKIP LOCKED
      )
      SELECT id, row_number() OVER (ORDER BY priority, id) AS n FROM (
        SELECT id, priority FROM (SELECT id, priority FROM plain UNION ALL SELECT id, priority FROM keyed) both_kinds
        ORDER BY priority, id LIMIT $4
      ) picked`,
    from: ` JOIN unnest($1::uuid[], $2::text[], $3::float8[]) WITH ORDINALITY AS s(session, worker, lease_ms, n) ON s.n = o.n`,
    set: `status = 'claimed', claimed_by = s.worker, claim_token = gen_random_uuid(), claim_session = s.session,
      claimed_at = now(), claim_deadline = now() + s.lease_ms * interval '1 millisecond',
      lease = s.lease_ms * interval '1 millisecond',
      ack_deadline = CASE WHEN s.session IS NOT NULL THEN now() + $5::float8 * interval '1 millisecond' END,
      acked_at = CASE WHEN s.session IS NULL THEN now() END,
      attempt = a.attempt + 1`,
    event: {
      type: "'action_claimed'",
      actor: "c.claimed_by",
      payload: `jsonb_build_object('claim_deadline', rfc3339(c.claim_deadline), 'attempt', c.attempt,
        'lease_ms', (extract(epoch FROM c.lease) * 1000)::float8, 'streamed', c.claim_session IS NOT NULL)`,
    },
  });
}

export const ActionClaimMany = {
  any: claimQuery("any"),
  types: claimQuery("types"),
  projects: claimQuery("projects"),
  both: claimQuery("both"),
};

/** Lock clause for a transition guarded by status and, for claims, token. */
const lockByIdAndToken = (statuses: Status[], also?: string) => `
  SELECT a.id, a.status AS old_status, a.claimed_at AS old_claimed_at FROM actions a JOIN i USING (id)
  WHERE a.status IN (${statuses.map((s) => `'${s}'`).join(", ")}) AND a.claim_token = i.token${also ? ` AND ${also}` : ""}
  FOR UPDATE OF a`;
const lockById = (statuses: Status[]) => `
  SELECT a.id, a.status AS old_status, a.claimed_by AS old_worker FROM actions a JOIN i USING (id)
  WHERE a.status IN (${statuses.map((s) => `'${s}'`).join(", ")})
  FOR UPDATE OF a`;

// Only claims not yet acknowledged: a repeated ack writes nothing and is
// answered from the row as it is.
export const ActionAckMany = changeWithEvent({
  inputs: "SELECT * FROM unnest($1::bigint[], $2::uuid[]) AS i(id, token)",
  lock: lockByIdAndToken(["claimed"], "a.acked_at IS NULL"),
  set: "acked_at = coalesce(a.acked_at, now()), ack_deadline = NULL",
});

export const ActionExtendMany = changeWithEvent({
  inputs: "SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::float8[]) AS i(id, token, lease_ms)",
  lock: lockByIdAndToken(["claimed"]),
  // `lease` stays the length the claim was taken with: an extension without
  // one renews that.
  set: `claim_deadline = now() + coalesce(i.lease_ms * interval '1 millisecond', a.lease),
    acked_at = coalesce(a.acked_at, now()), ack_deadline = NULL`,
  event: {
    type: "'claim_extended'",
    actor: "c.claimed_by",
    payload: "jsonb_build_object('claim_deadline', rfc3339(c.claim_deadline), 'attempt', c.attempt)",
  },
});

export const ActionCompleteMany = changeWithEvent({
  inputs: "SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[]) AS i(id, token, result_ref)",
  lock: lockByIdAndToken(["claimed"]),
  set: `status = 'completed', result_ref = i.result_ref, ${FINISH_CLAIM_SET}`,
  returning: "o.old_claimed_at AS claimed_since",
  event: {
    type: "'action_completed'",
    actor: "c.claimed_by",
    payload: "jsonb_build_object('result_ref', c.result_ref, 'attempt', c.attempt)",
  },
});

// A failure either schedules a retry (retryable, attempts left: back to
// APPROVED, deferred until the backoff ends) or is final (FAILED, the dead
// letter). o.retry decides, per row, under the row lock. The backoff
// doubles with each failure from $4 ms up to $5 ms, with jitter down to
// half, unless the worker gave its own delay.
const retry = (then: string, otherwise: string) => `CASE WHEN o.retry THEN ${then} ELSE ${otherwise} END`;
export const ActionFailMany = changeWithEvent({
  inputs: "SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $6::bool[], $7::float8[]) AS i(id, token, reason, retryable, delay_ms)",
  lock: `
    SELECT a.id, a.claimed_by AS old_worker, a.claim_token AS old_token, (i.retryable AND a.failures + 1 < a.max_attempts) AS retry
    FROM actions a JOIN i USING (id)
    WHERE a.status = 'claimed' AND a.claim_token = i.token
    FOR UPDATE OF a`,
  set: `status = ${retry("'approved'", "'failed'")},
    failures = a.failures + 1, last_error = i.reason,
    failure_reason = ${retry("NULL", "i.reason")},
    finished_at = ${retry("NULL", "now()")},
    run_after = ${retry("now() + coalesce(i.delay_ms, least($5::float8, $4::float8 * power(2, a.failures)) * (0.5 + random() / 2)) * interval '1 millisecond'", "a.run_after")},
    deferred = o.retry,
    retried_token = ${retry("o.old_token", "a.retried_token")},
    claimed_by = ${retry("NULL", "a.claimed_by")},
    claim_token = ${retry("NULL", "a.claim_token")},
    lease = ${retry("NULL", "a.lease")},
    acked_at = ${retry("NULL", "a.acked_at")},
    claim_deadline = NULL, claim_session = NULL, claimed_at = NULL, ack_deadline = NULL`,
  event: {
    type: `CASE WHEN o.retry THEN 'action_retry_scheduled' ELSE 'action_failed' END`,
    actor: "o.old_worker",
    payload: `jsonb_strip_nulls(jsonb_build_object('reason', i.reason, 'attempt', c.attempt, 'failures', c.failures,
      'max_attempts', c.max_attempts, 'retryable', i.retryable, 'run_after', CASE WHEN o.retry THEN rfc3339(c.run_after) END))`,
  },
  // A retry clears claimed_by; what follows the commit names the worker.
  returning: "o.old_worker AS from_worker",
});

/** An operator sends a FAILED action back to the queue with more attempts. */
export const ActionRetryMany = changeWithEvent({
  inputs: "SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[]) AS i(id, actor, reason, extra)",
  lock: `SELECT a.id, a.failure_reason AS old_reason FROM actions a JOIN i USING (id) WHERE a.status = 'failed' FOR UPDATE OF a`,
  set: `status = 'approved', failure_reason = NULL, finished_at = NULL, run_after = NULL, deferred = false,
    max_attempts = least(1000, a.failures + i.extra), ${CLEAR_CLAIM_SET}`,
  event: {
    type: "'action_retried'",
    actor: "i.actor",
    payload: "jsonb_build_object('reason', i.reason, 'failure_reason', o.old_reason, 'additional_attempts', i.extra, 'max_attempts', c.max_attempts)",
  },
});

/** Deferred actions whose time has come join the ready index (and the
 * trigger wakes every server). */
export const ActionPromoteDue = `
UPDATE actions a SET deferred = false, updated_at = now()
FROM (
  SELECT id FROM actions WHERE status = 'approved' AND deferred AND run_after <= now()
  ORDER BY run_after LIMIT $1 FOR UPDATE SKIP LOCKED
) due
WHERE a.id = due.id
RETURNING a.id, a.action_type`;

export const ActionNextDue = `SELECT min(run_after) AS next FROM actions WHERE status = 'approved' AND deferred`;

export const ActionRejectClaimedMany = changeWithEvent({
  inputs: "SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[]) AS i(id, token, actor, reason)",
  lock: lockByIdAndToken(["claimed"]),
  set: `status = 'rejected', failure_reason = i.reason, ${FINISH_CLAIM_SET}`,
  event: {
    type: "'action_rejected'",
    actor: "i.actor",
    payload: "jsonb_build_object('reason', i.reason, 'from_status', o.old_status, 'worker', c.claimed_by, 'attempt', c.attempt)",
  },
});

export const ActionRejectPendingMany = changeWithEvent({
  inputs: "SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) AS i(id, actor, reason)",
  lock: lockById(["pending"]),
  set: "status = 'rejected', failure_reason = i.reason, finished_at = now()",
  event: {
    type: "'action_rejected'",
    actor: "i.actor",
    payload: "jsonb_build_object('reason', i.reason, 'from_status', o.old_status)",
  },
});

// One approval. The action leaves PENDING when the approvers reach its
// quorum; until then each approval is an approval_granted event. The
// producer cannot approve its own action, an approver counts once, and an
// expired approval window stays closed.
// The approver's groups join the action's; the action leaves PENDING only
// when the quorum and every group requirement are met (approvals_complete,
// migration 010, which the table's constraint also checks).
const groupsAfter = "a.approver_groups || jsonb_build_object(i.approver, i.groups)";
const approvalsComplete = `approvals_complete(a.approvals_required, cardinality(a.approvers) + 1, a.approval_requirements, ${groupsAfter})`;

/** Which requirements this approval counted toward, such as "group
 * sre-leads (1 of 1)": those of its groups that it was still needed for.
 * Null when it counts only toward the quorum. */
const satisfies = `(
  SELECT string_agg(format('group %s (%s of %s)', r->>'group', n.members, r->>'count'), ', ' ORDER BY r->>'group')
  FROM jsonb_array_elements(c.approval_requirements) AS r
  CROSS JOIN LATERAL (SELECT count(*) AS members FROM jsonb_each(c.approver_groups) AS g(approver, groups) WHERE g.groups ? (r->>'group')) AS n
  WHERE i.groups ? (r->>'group') AND n.members <= (r->>'count')::int)`;

/** An approval by a distinct approver who did not propose the action. It
 * is accepted past the quorum while a group requirement is open, so that a
 * member of the group approving later can always complete the action. */
export const ActionApproveMany = changeWithEvent({
  inputs: "SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::jsonb[]) AS i(id, approver, note, groups)",
  lock: `
    SELECT a.id FROM actions a JOIN i USING (id)
    WHERE a.status = 'pending' AND a.created_by <> i.approver AND NOT (i.approver = ANY (a.approvers))
      AND (a.approval_expires_at IS NULL OR a.approval_expires_at > now())
    FOR UPDATE OF a`,
  set: `approvers = a.approvers || i.approver,
    approver_groups = ${groupsAfter},
    status = CASE WHEN ${approvalsComplete} THEN 'approved' ELSE 'pending' END,
    approved_by = CASE WHEN ${approvalsComplete} THEN i.approver END,
    approved_at = CASE WHEN ${approvalsComplete} THEN now() END,
    deferred = ${approvalsComplete} AND a.run_after IS NOT NULL AND a.run_after > now()`,
  event: {
    type: "CASE WHEN c.status = 'approved' THEN 'action_approved' ELSE 'approval_granted' END",
    actor: "i.approver",
    payload: `jsonb_build_object('note', i.note, 'approvers', to_jsonb(c.approvers), 'approvals_required', c.approvals_required,
      'groups', i.groups, 'satisfies', ${satisfies})`,
  },
});

/** PENDING actions whose approval window closed: rejected, never run. */
export const ActionExpireApprovals = changeWithEvent({
  lock: `
    SELECT id, approval_expires_at AS old_expiry FROM actions
    WHERE status = 'pending' AND approval_expires_at < now()
    ORDER BY approval_expires_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED`,
  set: "status = 'rejected', failure_reason = 'approval_expired', finished_at = now()",
  event: {
    type: "'action_rejected'",
    actor: "$1::text",
    payload: `jsonb_build_object('reason', 'approval_expired', 'from_status', 'pending', 'approval_expired_at', rfc3339(o.old_expiry),
      'approvers', to_jsonb(c.approvers), 'approvals_required', c.approvals_required)`,
  },
});

export const ActionCancelMany = changeWithEvent({
  inputs: "SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) AS i(id, actor, reason)",
  lock: lockById(["pending", "approved", "claimed"]),
  set: `status = 'cancelled', failure_reason = i.reason, deferred = false, ${FINISH_CLAIM_SET}`,
  event: {
    type: "'action_cancelled'",
    actor: "i.actor",
    payload: "jsonb_build_object('reason', i.reason, 'from_status', o.old_status, 'worker', o.old_worker)",
  },
  // Cancelling starts from one of three statuses; what follows the commit
  // (the state log) says which.
  returning: "o.old_status AS from_status",
});

/** A schedule's tick with the CANCEL_OTHER overlap policy cancels its
 * schedule's unfinished actions; the events name the schedule and tick. */
export const ActionCancelForSchedule = changeWithEvent({
  inputs: "SELECT unnest($1::bigint[]) AS id, $2::text AS actor, $3::text AS reason, $4::text AS schedule_id, $5::timestamptz AS tick_time",
  lock: lockById(["pending", "approved", "claimed"]),
  set: `status = 'cancelled', failure_reason = i.reason, deferred = false, ${FINISH_CLAIM_SET}`,
  event: {
    type: "'action_cancelled'",
    actor: "i.actor",
    payload: `jsonb_build_object('reason', i.reason, 'from_status', o.old_status, 'worker', o.old_worker,
      'schedule_id', i.schedule_id, 'schedule_tick_time', rfc3339(i.tick_time))`,
  },
  returning: "o.old_status AS from_status",
});

/** Break-glass: the action may run inside a closed change window. Again on
 * an action already broken is a new act, recorded again. The event names
 * the hold_claims windows closed for it at that moment. */
export const ActionBreakGlassMany = changeWithEvent({
  inputs: "SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) AS i(id, actor, reason)",
  lock: lockById(["pending", "approved"]),
  set: "break_glass_by = i.actor, break_glass_reason = i.reason, break_glass_at = now()",
  event: {
    type: "'break_glass'",
    actor: "i.actor",
    payload: `jsonb_build_object('reason', i.reason, 'status', o.old_status,
      'closed_windows', coalesce((SELECT jsonb_agg(DISTINCT w.window_name) FROM change_window_intervals w WHERE ${windowHolds("w", "c")}), '[]'::jsonb))`,
  },
  returning: "o.old_status AS from_status",
});

/** Acknowledged claims a worker brings to a new stream: they move to it.
 * Only the worker holding the claim, with its token. */
export const ActionAdoptClaims = `
UPDATE actions a SET claim_session = $1::uuid
FROM unnest($3::bigint[], $4::uuid[]) AS i(id, token)
WHERE a.id = i.id AND a.status = 'claimed' AND a.claim_token = i.token AND a.claimed_by = $2 AND a.acked_at IS NOT NULL
RETURNING a.id, a.attempt`;

/** Streamed claims that were never acknowledged, of one stream (all of
 * them, or the listed ones), back to the queue. */
export const ActionReleaseUnacked = changeWithEvent({
  lock: `
    SELECT id, claimed_by AS old_worker FROM actions
    WHERE status = 'claimed' AND claim_session = $1::uuid AND acked_at IS NULL
      AND ($2::bigint[] IS NULL OR (id, attempt) IN (SELECT * FROM unnest($2::bigint[], $5::int[])))
    ORDER BY id
    FOR UPDATE`,
  set: REQUEUE_LOST_SET,
  event: {
    type: "'claim_released'",
    actor: "$3::text",
    payload: "jsonb_build_object('worker', o.old_worker, 'reason', $4::text, 'attempt', c.attempt)",
  },
});

export const ActionRequeueExpiredLeases = changeWithEvent({
  lock: `
    SELECT id, claimed_by AS old_worker, claim_deadline AS old_deadline FROM actions
    WHERE status = 'claimed' AND claim_deadline < now()
    ORDER BY claim_deadline
    LIMIT $2
    FOR UPDATE SKIP LOCKED`,
  set: REQUEUE_LOST_SET,
  event: {
    type: "'claim_timed_out'",
    actor: "$1::text",
    payload: "jsonb_build_object('worker', o.old_worker, 'claim_deadline', rfc3339(o.old_deadline), 'attempt', c.attempt)",
  },
});

export const ActionReleaseExpiredDeliveries = changeWithEvent({
  lock: `
    SELECT id, claimed_by AS old_worker, ack_deadline AS old_deadline FROM actions
    WHERE status = 'claimed' AND acked_at IS NULL AND ack_deadline < now()
    ORDER BY ack_deadline
    LIMIT $2
    FOR UPDATE SKIP LOCKED`,
  set: REQUEUE_LOST_SET,
  event: {
    type: "'claim_released'",
    actor: "$1::text",
    payload: "jsonb_build_object('worker', o.old_worker, 'reason', 'ack_timeout', 'ack_deadline', rfc3339(o.old_deadline), 'attempt', c.attempt)",
  },
});

/** What access checks look at: an action's project, type and producer,
 * which never change once proposed, live or archived. */
export const ActionScopes = `
SELECT id::text, project, action_type, created_by FROM actions WHERE id = ANY($1::bigint[])
UNION ALL
SELECT id::text, project, action_type, created_by FROM actions_archive WHERE id = ANY($1::bigint[])`;

/** Who holds each claim named by (id, token). A claim token is drawn anew
 * for every claim, so the holder read here is the holder for as long as
 * the token is current. */
export const ClaimHolders = `
SELECT a.id::text, a.claimed_by FROM actions a
JOIN unnest($1::bigint[], $2::uuid[]) AS k(id, token) ON a.id = k.id AND a.claim_token = k.token`;
