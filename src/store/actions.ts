// Named queries on the actions table. Each takes arrays, so that one
// statement serves one call or a batch of many; state is guarded in SQL
// (`WHERE status = ...`), and a row that does not change is explained
// afterwards by looking at what it is now.
import type { JsonObject } from "@bufbuild/protobuf";
import type pg from "pg";
import { ActionqError, actionNotFound, claimTokenMismatch, invalidTransition } from "../errors.js";
import { inTransaction } from "./db.js";
import { type ActionRow, type EventRow, type RiskLevel, type Status, actionColumns, eventColumns } from "./rows.js";
import { FINISH_CLAIM_SET, REQUEUE_SET, changeWithEvent } from "./transitions.js";

export type Outcome = { ok: true; action: ActionRow; created?: boolean } | { ok: false; error: ActionqError };

export interface NewAction {
  actionType: string;
  project: string;
  targetRef: string;
  sourceRefs: string[];
  payload: JsonObject;
  priority: number;
  riskLevel: RiskLevel;
  confidence: number | null;
  approvalRequired: boolean;
  createdBy: string;
  correlationId: string;
  node: string;
  service: string;
  parentId: string | null;
  rollbackRef: string;
  idempotencyKey: string | null;
  /** Digest of the request, to tell a retry from a reused key. */
  requestDigest: string;
  /** What the approval policy decided for this action. */
  decision: { status: "pending" | "approved"; approvedBy: string | null; detail: JsonObject };
}

export interface StoreLimits {
  maxChainDepth: number;
  rateLimitPerHour: number;
  ackTimeoutMs: number;
}

/** Producers whose enqueues are rate limited. */
export function isRateLimitedProducer(createdBy: string): boolean {
  return createdBy.startsWith("agent:") || createdBy.startsWith("script:");
}

const ActionInsertMany = `
WITH input AS (
  SELECT r.*, nextval('actions_id_seq') AS id
  FROM jsonb_to_recordset($1::jsonb) AS r(
    ord int, action_type text, project text, target_ref text, source_refs text[], payload jsonb, priority int,
    status text, risk_level text, confidence float8, approval_required bool, created_by text, correlation_id text,
    node text, service text, parent_id bigint, chain_depth int, rollback_ref text, idempotency_key text,
    request_digest text, approved_by text, decision jsonb)
),
ins AS (
  INSERT INTO actions (id, action_type, project, target_ref, source_refs, payload, priority, status, risk_level,
    confidence, approval_required, created_by, correlation_id, node, service, parent_id, chain_depth, rollback_ref,
    idempotency_key, request_digest, approved_by, approved_at)
  SELECT id, action_type, project, target_ref, source_refs, payload, priority, status, risk_level,
    confidence, approval_required, created_by, correlation_id, node, service, parent_id, chain_depth, rollback_ref,
    idempotency_key, request_digest, approved_by, CASE WHEN status = 'approved' THEN now() END
  FROM input ORDER BY ord
  ON CONFLICT (created_by, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
  RETURNING *
),
ev AS (
  INSERT INTO events (action_id, event_type, actor, payload)
  SELECT ins.id, v.event_type, v.actor, v.payload
  FROM ins JOIN input USING (id)
  CROSS JOIN LATERAL (VALUES
    (1, 'action_enqueued', ins.created_by, jsonb_build_object(
      'status', ins.status, 'risk_level', ins.risk_level, 'approval_required', ins.approval_required,
      'priority', ins.priority, 'parent_id', ins.parent_id, 'chain_depth', ins.chain_depth,
      'policy', input.decision)),
    (2, 'action_approved', ins.approved_by, input.decision)
  ) AS v(seq, event_type, actor, payload)
  WHERE v.seq = 1 OR ins.status = 'approved'
  ORDER BY ins.id, v.seq
)
SELECT input.ord, ${actionColumns("ins")} FROM input LEFT JOIN ins USING (id) ORDER BY input.ord`;

const ActionGetByIdempotencyKeys = `
SELECT ${actionColumns("a")} FROM actions a
JOIN unnest($1::text[], $2::text[]) AS k(created_by, idempotency_key)
  ON a.created_by = k.created_by AND a.idempotency_key = k.idempotency_key`;

const ActionGetDepths = `SELECT id, chain_depth FROM actions WHERE id = ANY($1::bigint[])`;

// Serializes enqueues per rate-limited producer, so that concurrent calls
// cannot both pass the count. 1633907827 keeps these apart from other locks.
const ProducerLockMany = `
SELECT pg_advisory_xact_lock(1633907827, hashtext(p)) FROM unnest($1::text[]) AS p ORDER BY p`;

const ProducerCountRecent = `
SELECT created_by, count(*)::int AS n FROM actions
WHERE created_by = ANY($1::text[]) AND created_at > now() - interval '1 hour'
GROUP BY created_by`;

const ActionGetWithEvents = `
SELECT ${actionColumns("a")},
  coalesce((
    SELECT jsonb_agg(jsonb_build_object(
      'id', e.id::text, 'action_id', e.action_id::text, 'event_type', e.event_type, 'actor', e.actor,
      'payload', e.payload, 'created_at', e.created_at) ORDER BY e.id)
    FROM events e WHERE e.action_id = a.id
  ), '[]'::jsonb) AS events
FROM actions a WHERE a.id = $1`;

const ActionGetMany = `SELECT ${actionColumns("a")} FROM actions a WHERE a.id = ANY($1::bigint[])`;

const ActionList = `
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
 * order; a NULL session means a unary ClaimAction (acknowledged at once). */
function claimQuery(filter: "any" | "types" | "projects" | "both"): string {
  // $1-$5 always; the filters' arrays follow only when used.
  const conditions = ["status = 'approved'"];
  let next = 6;
  if (filter === "types" || filter === "both") conditions.push(`action_type = ANY($${next++}::text[])`);
  if (filter === "projects" || filter === "both") conditions.push(`project = ANY($${next++}::text[])`);
  return changeWithEvent({
    lock: `
      SELECT id, row_number() OVER () AS n FROM (
        SELECT id FROM actions
        WHERE ${conditions.join(" AND ")}
        ORDER BY priority, id
        LIMIT $4
        FOR UPDATE SKIP LOCKED
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
      payload: `jsonb_build_object('claim_deadline', c.claim_deadline, 'attempt', c.attempt,
        'lease_ms', (extract(epoch FROM c.lease) * 1000)::float8, 'streamed', c.claim_session IS NOT NULL)`,
    },
  });
}

const ActionClaimMany = {
  any: claimQuery("any"),
  types: claimQuery("types"),
  projects: claimQuery("projects"),
  both: claimQuery("both"),
};

/** Lock clause for a transition guarded by status and, for claims, token. */
const lockByIdAndToken = (statuses: Status[]) => `
  SELECT a.id, a.status AS old_status FROM actions a JOIN i USING (id)
  WHERE a.status IN (${statuses.map((s) => `'${s}'`).join(", ")}) AND a.claim_token = i.token
  FOR UPDATE OF a`;
const lockById = (statuses: Status[]) => `
  SELECT a.id, a.status AS old_status, a.claimed_by AS old_worker FROM actions a JOIN i USING (id)
  WHERE a.status IN (${statuses.map((s) => `'${s}'`).join(", ")})
  FOR UPDATE OF a`;

const ActionAckMany = changeWithEvent({
  inputs: "SELECT * FROM unnest($1::bigint[], $2::uuid[]) AS i(id, token)",
  lock: lockByIdAndToken(["claimed"]),
  set: "acked_at = coalesce(a.acked_at, now()), ack_deadline = NULL",
});

const ActionExtendMany = changeWithEvent({
  inputs: "SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::float8[]) AS i(id, token, lease_ms)",
  lock: lockByIdAndToken(["claimed"]),
  // `lease` stays the length the claim was taken with: an extension without
  // one renews that.
  set: `claim_deadline = now() + coalesce(i.lease_ms * interval '1 millisecond', a.lease),
    acked_at = coalesce(a.acked_at, now()), ack_deadline = NULL`,
  event: {
    type: "'claim_extended'",
    actor: "c.claimed_by",
    payload: "jsonb_build_object('claim_deadline', c.claim_deadline, 'attempt', c.attempt)",
  },
});

const ActionCompleteMany = changeWithEvent({
  inputs: "SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[]) AS i(id, token, result_ref)",
  lock: lockByIdAndToken(["claimed"]),
  set: `status = 'completed', result_ref = i.result_ref, ${FINISH_CLAIM_SET}`,
  event: {
    type: "'action_completed'",
    actor: "c.claimed_by",
    payload: "jsonb_build_object('result_ref', c.result_ref, 'attempt', c.attempt)",
  },
});

const ActionFailMany = changeWithEvent({
  inputs: "SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[]) AS i(id, token, reason)",
  lock: lockByIdAndToken(["claimed"]),
  set: `status = 'failed', failure_reason = i.reason, ${FINISH_CLAIM_SET}`,
  event: {
    type: "'action_failed'",
    actor: "c.claimed_by",
    payload: "jsonb_build_object('reason', c.failure_reason, 'attempt', c.attempt)",
  },
});

const ActionRejectClaimedMany = changeWithEvent({
  inputs: "SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[]) AS i(id, token, actor, reason)",
  lock: lockByIdAndToken(["claimed"]),
  set: `status = 'rejected', failure_reason = i.reason, ${FINISH_CLAIM_SET}`,
  event: {
    type: "'action_rejected'",
    actor: "i.actor",
    payload: "jsonb_build_object('reason', i.reason, 'from_status', o.old_status, 'worker', c.claimed_by, 'attempt', c.attempt)",
  },
});

const ActionRejectPendingMany = changeWithEvent({
  inputs: "SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) AS i(id, actor, reason)",
  lock: lockById(["pending"]),
  set: "status = 'rejected', failure_reason = i.reason, finished_at = now()",
  event: {
    type: "'action_rejected'",
    actor: "i.actor",
    payload: "jsonb_build_object('reason', i.reason, 'from_status', o.old_status)",
  },
});

const ActionApproveMany = changeWithEvent({
  inputs: "SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) AS i(id, approver, note)",
  lock: lockById(["pending"]),
  set: "status = 'approved', approved_by = i.approver, approved_at = now()",
  event: {
    type: "'action_approved'",
    actor: "i.approver",
    payload: "jsonb_build_object('note', i.note)",
  },
});

const ActionCancelMany = changeWithEvent({
  inputs: "SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) AS i(id, actor, reason)",
  lock: lockById(["pending", "approved", "claimed"]),
  set: `status = 'cancelled', failure_reason = i.reason, ${FINISH_CLAIM_SET}`,
  event: {
    type: "'action_cancelled'",
    actor: "i.actor",
    payload: "jsonb_build_object('reason', i.reason, 'from_status', o.old_status, 'worker', o.old_worker)",
  },
});

/** Streamed claims that were never acknowledged, of one stream (all of
 * them, or the listed ones), back to the queue. */
const ActionReleaseUnacked = changeWithEvent({
  lock: `
    SELECT id, claimed_by AS old_worker FROM actions
    WHERE status = 'claimed' AND claim_session = $1::uuid AND acked_at IS NULL
      AND ($2::bigint[] IS NULL OR (id, attempt) IN (SELECT * FROM unnest($2::bigint[], $5::int[])))
    ORDER BY id
    FOR UPDATE`,
  set: REQUEUE_SET,
  event: {
    type: "'claim_released'",
    actor: "$3::text",
    payload: "jsonb_build_object('worker', o.old_worker, 'reason', $4::text, 'attempt', c.attempt)",
  },
});

const ActionRequeueExpiredLeases = changeWithEvent({
  lock: `
    SELECT id, claimed_by AS old_worker, claim_deadline AS old_deadline FROM actions
    WHERE status = 'claimed' AND claim_deadline < now()
    ORDER BY claim_deadline
    LIMIT $2
    FOR UPDATE SKIP LOCKED`,
  set: REQUEUE_SET,
  event: {
    type: "'claim_timed_out'",
    actor: "$1::text",
    payload: "jsonb_build_object('worker', o.old_worker, 'claim_deadline', o.old_deadline, 'attempt', c.attempt)",
  },
});

const ActionReleaseExpiredDeliveries = changeWithEvent({
  lock: `
    SELECT id, claimed_by AS old_worker, ack_deadline AS old_deadline FROM actions
    WHERE status = 'claimed' AND acked_at IS NULL AND ack_deadline < now()
    ORDER BY ack_deadline
    LIMIT $2
    FOR UPDATE SKIP LOCKED`,
  set: REQUEUE_SET,
  event: {
    type: "'claim_released'",
    actor: "$1::text",
    payload: "jsonb_build_object('worker', o.old_worker, 'reason', 'ack_timeout', 'ack_deadline', o.old_deadline, 'attempt', c.attempt)",
  },
});

export interface ClaimFilter {
  actionTypes: string[];
  projects: string[];
}

export interface ClaimSlot {
  /** The claim stream's id, or null for a unary claim. */
  session: string | null;
  worker: string;
  leaseMs: number;
}

export interface ListFilter {
  statuses: Status[];
  actionTypes: string[];
  projects: string[];
  createdBy: string | null;
  parentId: string | null;
  correlationId: string | null;
  beforeId: string | null;
  limit: number;
}

/** How a transition that changed nothing is explained, per id. */
interface Explainer {
  operation: string;
  allowed: Status[];
  /** The status a successful call leaves behind, and whether the current
   * row is what a repeat of this exact call would have produced. */
  repeat?: { status: Status; matches: (row: ActionRow) => boolean };
  tokenChecked: boolean;
}

export class ActionStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly limits: StoreLimits,
  ) {}

  /** Creates actions in one transaction. Each input gets an outcome: the new
   * action, the earlier action for a repeated idempotency key, or an error
   * (which writes nothing for that input). */
  async enqueueMany(inputs: NewAction[]): Promise<Outcome[]> {
    return inTransaction(this.pool, async (client) => {
      const outcomes: (Outcome | undefined)[] = new Array(inputs.length);

      // Rate-limited producers enqueue one transaction at a time, so that
      // concurrent calls cannot all pass the count, and so that a retry
      // that waited here sees the action its twin just committed.
      const limited = [...new Set(inputs.map((input) => input.createdBy).filter(isRateLimitedProducer))];
      if (limited.length > 0) await client.query(ProducerLockMany, [limited]);

      // Repeats of an idempotency key return the first action, before any
      // other check: a retry must not be refused for rate or depth.
      const keyed = inputs.map((input, index) => ({ input, index })).filter(({ input }) => input.idempotencyKey !== null);
      if (keyed.length > 0) {
        const existing = await this.findByKeys(client, keyed.map(({ input }) => [input.createdBy, input.idempotencyKey!]));
        for (const { input, index } of keyed) {
          const row = existing.get(keyFor(input.createdBy, input.idempotencyKey!));
          if (row) outcomes[index] = repeatOutcome(row, input);
        }
      }

      const parentIds = [...new Set(inputs.filter((input, i) => !outcomes[i] && input.parentId !== null).map((input) => input.parentId!))];
      const depths = new Map<string, number>();
      if (parentIds.length > 0) {
        const { rows } = await client.query<{ id: string; chain_depth: number }>(ActionGetDepths, [parentIds]);
        for (const row of rows) depths.set(row.id, row.chain_depth);
      }

      const counted = [...new Set(inputs.filter((input, i) => !outcomes[i] && isRateLimitedProducer(input.createdBy)).map((input) => input.createdBy))];
      const used = new Map<string, number>();
      if (counted.length > 0) {
        const { rows } = await client.query<{ created_by: string; n: number }>(ProducerCountRecent, [counted]);
        for (const row of rows) used.set(row.created_by, row.n);
      }

      const toInsert: { index: number; input: NewAction; chainDepth: number }[] = [];
      inputs.forEach((input, index) => {
        if (outcomes[index]) return;
        let chainDepth = 0;
        if (input.parentId !== null) {
          const parentDepth = depths.get(input.parentId);
          if (parentDepth === undefined) {
            outcomes[index] = {
              ok: false,
              error: new ActionqError("not_found", "PARENT_NOT_FOUND", `parent_id: action ${input.parentId} does not exist`, {
                field: "parent_id",
                action_id: input.parentId,
              }),
            };
            return;
          }
          chainDepth = parentDepth + 1;
          if (chainDepth > this.limits.maxChainDepth) {
            outcomes[index] = {
              ok: false,
              error: new ActionqError(
                "failed_precondition",
                "CHAIN_TOO_DEEP",
                `parent_id: action ${input.parentId} is at chain depth ${parentDepth}; a child would be at ${chainDepth}, beyond the limit of ${this.limits.maxChainDepth}`,
                { field: "parent_id", chain_depth: String(chainDepth), max_chain_depth: String(this.limits.maxChainDepth) },
              ),
            };
            return;
          }
        }
        if (isRateLimitedProducer(input.createdBy)) {
          const count = used.get(input.createdBy) ?? 0;
          if (count >= this.limits.rateLimitPerHour) {
            outcomes[index] = {
              ok: false,
              error: new ActionqError(
                "resource_exhausted",
                "RATE_LIMITED",
                `created_by: producer ${input.createdBy} has enqueued ${count} actions in the last hour; the limit is ${this.limits.rateLimitPerHour}`,
                { field: "created_by", limit: String(this.limits.rateLimitPerHour), window: "1h" },
              ),
            };
            return;
          }
          used.set(input.createdBy, count + 1);
        }
        toInsert.push({ index, input, chainDepth });
      });

      if (toInsert.length > 0) {
        const payload = toInsert.map(({ input, chainDepth }, ord) => ({
          ord,
          action_type: input.actionType,
          project: input.project,
          target_ref: input.targetRef,
          source_refs: input.sourceRefs,
          payload: input.payload,
          priority: input.priority,
          status: input.decision.status,
          risk_level: input.riskLevel,
          confidence: input.confidence,
          // Whether it had to wait, by the producer's request or by its risk.
          approval_required: input.decision.status === "pending",
          created_by: input.createdBy,
          correlation_id: input.correlationId,
          node: input.node,
          service: input.service,
          parent_id: input.parentId,
          chain_depth: chainDepth,
          rollback_ref: input.rollbackRef,
          idempotency_key: input.idempotencyKey,
          request_digest: input.requestDigest,
          approved_by: input.decision.approvedBy,
          decision: input.decision.detail,
        }));
        const { rows } = await client.query<ActionRow & { ord: number }>(ActionInsertMany, [JSON.stringify(payload)]);
        const lost: { index: number; input: NewAction }[] = [];
        for (const row of rows) {
          const { index, input } = toInsert[row.ord]!;
          if (row.id === null) lost.push({ index, input });
          else outcomes[index] = { ok: true, action: stripOrd(row), created: true };
        }
        // A concurrent call with the same key won the insert: answer as a
        // repeat of it.
        if (lost.length > 0) {
          const existing = await this.findByKeys(client, lost.map(({ input }) => [input.createdBy, input.idempotencyKey!]));
          for (const { index, input } of lost) {
            const row = existing.get(keyFor(input.createdBy, input.idempotencyKey!));
            outcomes[index] = row
              ? repeatOutcome(row, input)
              : { ok: false, error: new ActionqError("unavailable", "CONCURRENT_INSERT", "the idempotency key was taken by a transaction that did not commit; retry") };
          }
        }
      }
      return outcomes.map((outcome) => outcome!);
    });
  }

  private async findByKeys(client: pg.PoolClient, keys: [string, string][]): Promise<Map<string, ActionRow>> {
    const { rows } = await client.query<ActionRow>(ActionGetByIdempotencyKeys, [keys.map((k) => k[0]), keys.map((k) => k[1])]);
    return new Map(rows.map((row) => [keyFor(row.created_by, row.idempotency_key!), row]));
  }

  async get(id: string): Promise<{ action: ActionRow; events: EventRow[] } | undefined> {
    const { rows } = await this.pool.query<ActionRow & { events: (Omit<EventRow, "created_at"> & { created_at: string })[] }>(ActionGetWithEvents, [id]);
    const row = rows[0];
    if (!row) return undefined;
    const { events, ...action } = row;
    return { action, events: events.map((event) => ({ ...event, created_at: new Date(event.created_at) })) };
  }

  async getMany(ids: string[]): Promise<ActionRow[]> {
    const { rows } = await this.pool.query<ActionRow>(ActionGetMany, [ids]);
    return rows;
  }

  async list(filter: ListFilter): Promise<ActionRow[]> {
    const orNull = <T>(values: T[]) => (values.length > 0 ? values : null);
    const { rows } = await this.pool.query<ActionRow>(ActionList, [
      orNull(filter.statuses),
      orNull(filter.actionTypes),
      orNull(filter.projects),
      filter.createdBy,
      filter.parentId,
      filter.correlationId,
      filter.beforeId,
      filter.limit,
    ]);
    return rows;
  }

  /** Claims up to slots.length actions matching the filter, in claim order,
   * and returns them; slot k gets the k-th. */
  async claim(filter: ClaimFilter, slots: ClaimSlot[]): Promise<ActionRow[]> {
    if (slots.length === 0) return [];
    const kind = filter.actionTypes.length > 0 ? (filter.projects.length > 0 ? "both" : "types") : filter.projects.length > 0 ? "projects" : "any";
    const params: unknown[] = [
      slots.map((slot) => slot.session),
      slots.map((slot) => slot.worker),
      slots.map((slot) => slot.leaseMs),
      slots.length,
      this.limits.ackTimeoutMs,
    ];
    if (filter.actionTypes.length > 0) params.push(filter.actionTypes);
    if (filter.projects.length > 0) params.push(filter.projects);
    const { rows } = await this.pool.query<ActionRow>(ActionClaimMany[kind], params);
    return rows;
  }

  ackMany(items: { id: string; token: string }[]): Promise<Outcome[]> {
    return this.transition(items, ActionAckMany, (list) => [list.map((x) => x.id), list.map((x) => x.token)], {
      operation: "acknowledging a claim",
      allowed: ["claimed"],
      tokenChecked: true,
      repeat: { status: "claimed", matches: (row) => items.some((x) => x.id === row.id && x.token === row.claim_token) },
    });
  }

  extendMany(items: { id: string; token: string; leaseMs: number | null }[]): Promise<Outcome[]> {
    return this.transition(items, ActionExtendMany, (list) => [list.map((x) => x.id), list.map((x) => x.token), list.map((x) => x.leaseMs)], {
      operation: "extending a claim",
      allowed: ["claimed"],
      tokenChecked: true,
      repeat: { status: "claimed", matches: (row) => items.some((x) => x.id === row.id && x.token === row.claim_token) },
    });
  }

  completeMany(items: { id: string; token: string; resultRef: string }[]): Promise<Outcome[]> {
    return this.transition(items, ActionCompleteMany, (list) => [list.map((x) => x.id), list.map((x) => x.token), list.map((x) => x.resultRef)], {
      operation: "completing",
      allowed: ["claimed"],
      tokenChecked: true,
      repeat: { status: "completed", matches: (row) => items.some((x) => x.id === row.id && x.token === row.claim_token && x.resultRef === row.result_ref) },
    });
  }

  failMany(items: { id: string; token: string; reason: string }[]): Promise<Outcome[]> {
    return this.transition(items, ActionFailMany, (list) => [list.map((x) => x.id), list.map((x) => x.token), list.map((x) => x.reason)], {
      operation: "failing",
      allowed: ["claimed"],
      tokenChecked: true,
      repeat: { status: "failed", matches: (row) => items.some((x) => x.id === row.id && x.token === row.claim_token && x.reason === row.failure_reason) },
    });
  }

  rejectClaimedMany(items: { id: string; token: string; actor: string; reason: string }[]): Promise<Outcome[]> {
    return this.transition(
      items,
      ActionRejectClaimedMany,
      (list) => [list.map((x) => x.id), list.map((x) => x.token), list.map((x) => x.actor), list.map((x) => x.reason)],
      {
        operation: "rejecting a claimed action",
        allowed: ["claimed"],
        tokenChecked: true,
        repeat: { status: "rejected", matches: (row) => items.some((x) => x.id === row.id && x.token === row.claim_token && x.reason === row.failure_reason) },
      },
    );
  }

  rejectPendingMany(items: { id: string; actor: string; reason: string }[]): Promise<Outcome[]> {
    return this.transition(items, ActionRejectPendingMany, (list) => [list.map((x) => x.id), list.map((x) => x.actor), list.map((x) => x.reason)], {
      operation: "rejecting without a claim token",
      allowed: ["pending"],
      tokenChecked: false,
    });
  }

  approveMany(items: { id: string; approver: string; note: string }[]): Promise<Outcome[]> {
    return this.transition(items, ActionApproveMany, (list) => [list.map((x) => x.id), list.map((x) => x.approver), list.map((x) => x.note)], {
      operation: "approving",
      allowed: ["pending"],
      tokenChecked: false,
    });
  }

  cancelMany(items: { id: string; actor: string; reason: string }[]): Promise<Outcome[]> {
    return this.transition(items, ActionCancelMany, (list) => [list.map((x) => x.id), list.map((x) => x.actor), list.map((x) => x.reason)], {
      operation: "cancelling",
      allowed: ["pending", "approved", "claimed"],
      tokenChecked: false,
    });
  }

  /** Puts a stream's unacknowledged claims (all, or the listed ones, each
   * named by action id and attempt) back in the queue. Returns what it
   * released. */
  async releaseUnacked(session: string, claims: { id: string; attempt: number }[] | null, actor: string, reason: string): Promise<ActionRow[]> {
    const { rows } = await this.pool.query<ActionRow>(ActionReleaseUnacked, [
      session,
      claims && claims.map((claim) => claim.id),
      actor,
      reason,
      claims && claims.map((claim) => claim.attempt),
    ]);
    return rows;
  }

  /** Requeues expired leases and expired deliveries, in batches, until none
   * is left. */
  async sweep(actor: string, batchSize = 1000): Promise<ActionRow[]> {
    const requeued: ActionRow[] = [];
    for (const query of [ActionRequeueExpiredLeases, ActionReleaseExpiredDeliveries]) {
      for (;;) {
        const { rows } = await this.pool.query<ActionRow>(query, [actor, batchSize]);
        requeued.push(...rows);
        if (rows.length < batchSize) break;
      }
    }
    return requeued;
  }

  /** Runs a guarded transition for many ids and explains every id that did
   * not change: missing, in the wrong status, under another claim, or a
   * repeat of a call that already succeeded. */
  private async transition<T extends { id: string; token?: string }>(
    items: T[],
    sql: string,
    params: (items: T[]) => unknown[],
    explain: Explainer,
  ): Promise<Outcome[]> {
    // One change per id and statement: a duplicate is answered like a
    // repeat, from the row the first one left behind.
    const first = new Map<string, T>();
    for (const item of items) if (!first.has(item.id)) first.set(item.id, item);
    const unique = [...first.values()];
    const { rows } = await this.pool.query<ActionRow>(sql, params(unique));
    const changed = new Map(rows.map((row) => [row.id, row]));
    const missing = unique.filter((item) => !changed.has(item.id)).map((item) => item.id);
    const current = new Map<string, ActionRow>();
    if (missing.length > 0) for (const row of await this.getMany(missing)) current.set(row.id, row);
    return items.map((item) => {
      const row = changed.get(item.id);
      if (row) return item === first.get(item.id) ? { ok: true, action: row } : repeatOf(row, item, explain);
      const now = current.get(item.id);
      if (!now) return { ok: false, error: actionNotFound(item.id) };
      return repeatOf(now, item, explain);
    });
  }
}

function repeatOf(row: ActionRow, item: { id: string; token?: string }, explain: Explainer): Outcome {
  if (explain.repeat && row.status === explain.repeat.status && explain.repeat.matches(row)) return { ok: true, action: row };
  if (explain.tokenChecked && row.status === "claimed" && row.claim_token !== item.token) {
    return { ok: false, error: claimTokenMismatch(row.id, row.status) };
  }
  if (explain.allowed.includes(row.status)) {
    // The row is in an allowed status now but was not when the statement
    // ran (it changed in between); the caller may retry.
    return { ok: false, error: new ActionqError("unavailable", "CONCURRENT_CHANGE", `action ${row.id} changed while ${explain.operation}; retry`, { action_id: row.id }) };
  }
  return { ok: false, error: invalidTransition(row.id, row.status, explain.operation, explain.allowed) };
}

function keyFor(createdBy: string, key: string): string {
  return `${createdBy}\u0000${key}`;
}

function stripOrd(row: ActionRow & { ord?: number }): ActionRow {
  const { ord: _ord, ...action } = row;
  return action;
}

function repeatOutcome(row: ActionRow, input: NewAction): Outcome {
  if (row.request_digest === input.requestDigest) return { ok: true, action: row, created: false };
  return {
    ok: false,
    error: new ActionqError(
      "already_exists",
      "IDEMPOTENCY_KEY_REUSED",
      `idempotency_key: ${input.createdBy} already used this key for action ${row.id} with a different request`,
      { field: "idempotency_key", action_id: row.id },
    ),
  };
}
