// The actions store: runs the named queries of action-queries.ts in the
// right order and turns their results into one outcome per input. A row
// that a guarded statement did not change is explained afterwards by
// looking at what it is now.
import type { JsonObject } from "@bufbuild/protobuf";
import type pg from "pg";
import { ActionqError, actionNotFound, claimTokenMismatch, invalidTransition } from "../errors.js";
import {
  ActionAckMany,
  ActionAdoptClaims,
  ActionApproveMany,
  ActionArchiveFinished,
  ActionCancelMany,
  ActionClaimMany,
  ActionCompleteMany,
  ActionExpireApprovals,
  ActionExtendMany,
  ActionFailMany,
  ActionGetByIdempotencyKeys,
  ActionGetDepths,
  ActionGetMany,
  ActionGetWithEvents,
  ActionInsertMany,
  ActionList,
  ActionLiveRollback,
  ActionLockForRollback,
  ActionLockForSupersede,
  ActionProgress,
  ActionRejectClaimedMany,
  ActionRejectPendingMany,
  ActionReleaseExpiredDeliveries,
  ActionNextDue,
  ActionPromoteDue,
  ActionReleaseUnacked,
  ActionRequeueExpiredLeases,
  ActionRetryMany,
  ActionScopes,
  ActionSupersedeMany,
  ClaimHolders,
  ProducerCountRecent,
  ProducerLockMany,
} from "./action-queries.js";
import { Coalescer } from "./coalescer.js";
import { type Queryable, inTransaction } from "./db.js";
import type { ActionRow, EventRow, RiskLevel, Status } from "./rows.js";

/** A policy decision as the insert statement reads it. */
export interface StoredDecision {
  status: "pending" | "approved";
  approvedBy: string | null;
  approvalsRequired: number;
  approvalTtlSeconds: number | null;
  detail: JsonObject;
}

/** `repeated`: the call repeated one that already succeeded; nothing was
 * written. */
export type Outcome = { ok: true; action: ActionRow; created?: boolean; repeated?: boolean } | { ok: false; error: ActionqError };

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
  rollbackPayload: JsonObject | null;
  /** Set on the actions RollbackAction creates. */
  rollbackOf: string | null;
  /** The earlier action this one replaces; it is cancelled. */
  supersedesId: string | null;
  maxAttempts: number;
  runAfter: Date | null;
  idempotencyKey: string | null;
  /** Digest of the request, to tell a retry from a reused key; null
   * without a key. */
  requestDigest: string | null;
  /** Kept on the action_enqueued event when set. */
  note: string | null;
  autonomousEligible: boolean;
  policyVersion: string;
  /** What the approval policy decided for this action, and what it decides
   * while auto-approval is paused; the insert picks one. */
  decision: StoredDecision;
  pausedDecision: StoredDecision;
}

export interface StoreLimits {
  maxChainDepth: number;
  rateLimitPerHour: number;
  ackTimeoutMs: number;
  /** Backoff of the first retry, doubling up to retryBackoffMaxMs. */
  retryBackoffMs: number;
  retryBackoffMaxMs: number;
}

/** Producers whose enqueues are rate limited. */
export function isRateLimitedProducer(createdBy: string): boolean {
  return createdBy.startsWith("agent:") || createdBy.startsWith("script:");
}

/** What access checks need to know of an existing action. */
export interface ActionScope {
  project: string;
  actionType: string;
  createdBy: string;
}

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
interface Explainer<T = { id: string }> {
  operation: string;
  allowed: Status[];
  /** The status a successful call leaves behind, and whether the current
   * row is what a repeat of this exact call would have produced. */
  repeat?: (row: ActionRow) => boolean;
  tokenChecked: boolean;
  /** A more precise reason for a row the statement's guard left alone. */
  explainRow?: (row: ActionRow, item: T) => ActionqError | undefined;
}

export class ActionStore {
  /** Single calls, group-committed: concurrent callers share statements. */
  readonly one: {
    enqueue: (input: NewAction) => Promise<Outcome>;
    ack: (item: { id: string; token: string }) => Promise<Outcome>;
    complete: (item: { id: string; token: string; resultRef: string }) => Promise<Outcome>;
    fail: (item: { id: string; token: string; reason: string; retryable: boolean; delayMs: number | null }) => Promise<Outcome>;
  };

  constructor(
    private readonly pool: pg.Pool,
    private readonly limits: StoreLimits,
    batching: { parallel: number; maxBatch: number } = { parallel: 4, maxBatch: 500 },
  ) {
    const enqueue = new Coalescer((inputs: NewAction[]) => this.enqueueMany(inputs), batching);
    const ack = new Coalescer((items: { id: string; token: string }[]) => this.ackMany(items), batching);
    const complete = new Coalescer((items: { id: string; token: string; resultRef: string }[]) => this.completeMany(items), batching);
    const fail = new Coalescer((items: { id: string; token: string; reason: string; retryable: boolean; delayMs: number | null }[]) => this.failMany(items), batching);
    this.one = {
      enqueue: (input) => enqueue.submit(input),
      ack: (item) => ack.submit(item),
      complete: (item) => complete.submit(item),
      fail: (item) => fail.submit(item),
    };
  }

  /** Creates actions in one transaction. Each input gets an outcome: the new
   * action, the earlier action for a repeated idempotency key, or an error
   * (which writes nothing for that input). */
  async enqueueMany(inputs: NewAction[]): Promise<Outcome[]> {
    // Most enqueues read nothing first (no rate limit, key or parent): their
    // one INSERT statement is a transaction of its own.
    const readsFirst = inputs.some(
      (input) => isRateLimitedProducer(input.createdBy) || input.idempotencyKey !== null || input.parentId !== null || input.supersedesId !== null,
    );
    return readsFirst ? inTransaction(this.pool, (client) => this.enqueueWith(client, inputs)) : this.enqueueWith(this.pool, inputs);
  }

  /** Enqueues inside a transaction the caller holds. */
  private async enqueueWith(client: Queryable, inputs: NewAction[]): Promise<Outcome[]> {
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

    // The actions to supersede stay locked until this transaction ends: none
    // can be claimed or approved between this check and its cancellation.
    const supersedeIds = [...new Set(inputs.filter((input, i) => !outcomes[i] && input.supersedesId !== null).map((input) => input.supersedesId!))];
    const superseded = new Map<string, ActionRow>();
    if (supersedeIds.length > 0) {
      const { rows } = await client.query<ActionRow>(ActionLockForSupersede, [supersedeIds]);
      for (const row of rows) superseded.set(row.id, row);
    }
    const supersedeTaken = new Set<string>();

    const toInsert: { index: number; input: NewAction; chainDepth: number }[] = [];
    inputs.forEach((input, index) => {
      if (outcomes[index]) return;
      if (input.supersedesId !== null) {
        const old = superseded.get(input.supersedesId);
        if (!old) {
          outcomes[index] = { ok: false, error: withField(actionNotFound(input.supersedesId), "supersedes_id") };
          return;
        }
        if ((old.status !== "pending" && old.status !== "approved") || supersedeTaken.has(old.id)) {
          const status = supersedeTaken.has(old.id) ? "cancelled" : old.status;
          outcomes[index] = { ok: false, error: withField(invalidTransition(old.id, status, "superseding", ["pending", "approved"]), "supersedes_id") };
          return;
        }
        supersedeTaken.add(old.id);
      }
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
        risk_level: input.riskLevel,
        confidence: input.confidence,
        created_by: input.createdBy,
        correlation_id: input.correlationId,
        node: input.node,
        service: input.service,
        parent_id: input.parentId,
        chain_depth: chainDepth,
        rollback_ref: input.rollbackRef,
        rollback_payload: input.rollbackPayload,
        rollback_of: input.rollbackOf,
        supersedes_id: input.supersedesId,
        idempotency_key: input.idempotencyKey,
        request_digest: input.requestDigest,
        autonomous_eligible: input.autonomousEligible,
        policy_version: input.policyVersion,
        decision: decisionJson(input.decision),
        paused_decision: decisionJson(input.pausedDecision),
        note: input.note,
        max_attempts: input.maxAttempts,
        run_after: input.runAfter?.toISOString() ?? null,
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
      const replacing = toInsert.flatMap(({ index, input }) => {
        const outcome = outcomes[index];
        return outcome?.ok && outcome.created && input.supersedesId !== null ? [{ id: input.supersedesId, newId: outcome.action.id, actor: input.createdBy }] : [];
      });
      if (replacing.length > 0) {
        const { rows: cancelled } = await client.query<ActionRow>(ActionSupersedeMany, [
          replacing.map((r) => r.id),
          replacing.map((r) => r.newId),
          replacing.map((r) => r.actor),
        ]);
        // Locked above and checked: every one must have been cancelled.
        if (cancelled.length !== replacing.length) throw new Error("superseded actions changed under their lock");
      }
    }
    return outcomes.map((outcome) => outcome!);
  }

  /** Enqueues the rollback of action `id`, built from the locked action by
   * `build`, or returns its live rollback. Errors as outcomes. */
  async rollback(id: string, build: (action: ActionRow) => NewAction): Promise<Outcome> {
    return inTransaction(this.pool, async (client) => {
      const { rows } = await client.query<ActionRow>(ActionLockForRollback, [id]);
      const action = rows[0];
      if (!action) return { ok: false, error: actionNotFound(id) };
      const { rows: live } = await client.query<ActionRow>(ActionLiveRollback, [id]);
      if (live[0]) return { ok: true, action: live[0], created: false };
      if (action.status !== "completed" && action.status !== "failed") {
        return { ok: false, error: invalidTransition(id, action.status, "rolling back", ["completed", "failed"]) };
      }
      if (action.rollback_ref === "") {
        return {
          ok: false,
          error: new ActionqError("failed_precondition", "NO_ROLLBACK_REF", `action ${id} has no rollback_ref: it declared no reverse action`, { action_id: id }),
        };
      }
      const [outcome] = await this.enqueueWith(client, [build(action)]);
      return outcome!;
    });
  }

  private async findByKeys(client: Queryable, keys: [string, string][]): Promise<Map<string, ActionRow>> {
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

  /** Project, action type and producer of each action that exists, by id. */
  async scopes(ids: string[]): Promise<Map<string, ActionScope>> {
    const { rows } = await this.pool.query<{ id: string; project: string; action_type: string; created_by: string }>(ActionScopes, [ids]);
    return new Map(rows.map((row) => [row.id, { project: row.project, actionType: row.action_type, createdBy: row.created_by }]));
  }

  /** The worker holding each claim given by id and token, when the token is
   * still that action's. */
  async holders(claims: { id: string; token: string }[]): Promise<Map<string, string>> {
    const { rows } = await this.pool.query<{ id: string; claimed_by: string | null }>(ClaimHolders, [claims.map((c) => c.id), claims.map((c) => c.token)]);
    return new Map(rows.filter((row) => row.claimed_by !== null).map((row) => [row.id, row.claimed_by!]));
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
      repeat: (row) => row.status === "claimed" && items.some((x) => x.id === row.id && x.token === row.claim_token),
    });
  }

  extendMany(items: { id: string; token: string; leaseMs: number | null }[]): Promise<Outcome[]> {
    return this.transition(items, ActionExtendMany, (list) => [list.map((x) => x.id), list.map((x) => x.token), list.map((x) => x.leaseMs)], {
      operation: "extending a claim",
      allowed: ["claimed"],
      tokenChecked: true,
      repeat: (row) => row.status === "claimed" && items.some((x) => x.id === row.id && x.token === row.claim_token),
    });
  }

  completeMany(items: { id: string; token: string; resultRef: string }[]): Promise<Outcome[]> {
    return this.transition(items, ActionCompleteMany, (list) => [list.map((x) => x.id), list.map((x) => x.token), list.map((x) => x.resultRef)], {
      operation: "completing",
      allowed: ["claimed"],
      tokenChecked: true,
      repeat: (row) => row.status === "completed" && items.some((x) => x.id === row.id && x.token === row.claim_token && x.resultRef === row.result_ref),
    });
  }

  /** Ends claims in failure: a retry when retryable and attempts are left,
   * else FAILED. */
  failMany(items: { id: string; token: string; reason: string; retryable: boolean; delayMs: number | null }[]): Promise<Outcome[]> {
    return this.transition(
      items,
      ActionFailMany,
      (list) => [
        list.map((x) => x.id),
        list.map((x) => x.token),
        list.map((x) => x.reason),
        this.limits.retryBackoffMs,
        this.limits.retryBackoffMaxMs,
        list.map((x) => x.retryable),
        list.map((x) => x.delayMs),
      ],
      {
        operation: "failing",
        allowed: ["claimed"],
        tokenChecked: true,
        // The same failure again: it ended this claim, finally or with a
        // retry, whatever happened to the action since.
        repeat: (row) =>
          items.some(
            (x) =>
              x.id === row.id &&
              ((row.status === "failed" && x.token === row.claim_token && x.reason === row.failure_reason) ||
                (x.token === row.retried_token && x.reason === row.last_error)),
          ),
      },
    );
  }

  retryMany(items: { id: string; actor: string; reason: string; extra: number }[]): Promise<Outcome[]> {
    return this.transition(
      items,
      ActionRetryMany,
      (list) => [list.map((x) => x.id), list.map((x) => x.actor), list.map((x) => x.reason), list.map((x) => x.extra)],
      { operation: "retrying", allowed: ["failed"], tokenChecked: false },
    );
  }

  /** Moves deferred actions whose run_after has come into the ready index;
   * returns how many, and when the next one is due. */
  async promoteDue(batchSize = 1000): Promise<{ promoted: number; nextDue: Date | null }> {
    let promoted = 0;
    for (;;) {
      const { rowCount } = await this.pool.query(ActionPromoteDue, [batchSize]);
      promoted += rowCount ?? 0;
      if ((rowCount ?? 0) < batchSize) break;
    }
    const { rows } = await this.pool.query<{ next: Date | null }>(ActionNextDue);
    return { promoted, nextDue: rows[0]?.next ?? null };
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
        repeat: (row) => row.status === "rejected" && items.some((x) => x.id === row.id && x.token === row.claim_token && x.reason === row.failure_reason),
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
      explainRow: (row, item) => {
        if (row.status !== "pending") return undefined;
        const approver = item.approver;
        if (row.created_by === approver) {
          return new ActionqError("permission_denied", "SELF_APPROVAL", `${approver} proposed action ${row.id} and cannot approve it; another approver must`, {
            action_id: row.id,
            field: "approver",
          });
        }
        if (row.approvers.includes(approver)) {
          return new ActionqError(
            "failed_precondition",
            "DUPLICATE_APPROVAL",
            `${approver} already approved action ${row.id}; it needs ${row.approvals_required - row.approvers.length} more distinct approver(s)`,
            { action_id: row.id, field: "approver", approvals: String(row.approvers.length), approvals_required: String(row.approvals_required) },
          );
        }
        if (row.approval_expires_at !== null && row.approval_expires_at.getTime() <= Date.now()) {
          return new ActionqError(
            "failed_precondition",
            "APPROVAL_EXPIRED",
            `the approval window of action ${row.id} closed at ${row.approval_expires_at.toISOString()}; it will be rejected`,
            { action_id: row.id, current_status: "PENDING" },
          );
        }
        return undefined;
      },
    });
  }

  /** Appends an action_progress event for the worker holding the claim. */
  async progress(id: string, token: string, actor: string, payload: JsonObject): Promise<EventRow | ActionqError> {
    const { rows } = await this.pool.query<EventRow>(ActionProgress, [id, token, actor, JSON.stringify(payload)]);
    if (rows[0]) return rows[0];
    const [now] = await this.getMany([id]);
    if (!now) return actionNotFound(id);
    const outcome = repeatOf(now, { id, token }, { operation: "recording progress", allowed: ["claimed"], tokenChecked: true });
    return outcome.ok ? new ActionqError("unavailable", "CONCURRENT_CHANGE", `action ${id} changed while recording progress; retry`) : outcome.error;
  }

  cancelMany(items: { id: string; actor: string; reason: string }[]): Promise<Outcome[]> {
    return this.transition(items, ActionCancelMany, (list) => [list.map((x) => x.id), list.map((x) => x.actor), list.map((x) => x.reason)], {
      operation: "cancelling",
      allowed: ["pending", "approved", "claimed"],
      tokenChecked: false,
    });
  }

  /** Moves claims a worker still holds to its new stream; returns those
   * that are still its own. */
  async adoptClaims(session: string, worker: string, claims: { id: string; token: string }[]): Promise<{ id: string; attempt: number }[]> {
    const { rows } = await this.pool.query<{ id: string; attempt: number }>(ActionAdoptClaims, [
      session,
      worker,
      claims.map((claim) => claim.id),
      claims.map((claim) => claim.token),
    ]);
    return rows;
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

  /** Moves finished actions older than `ageMs` to the archive, in
   * batches; returns how many moved. */
  async archiveFinished(ageMs: number, batchSize = 1000): Promise<number> {
    let moved = 0;
    for (;;) {
      const { rowCount } = await this.pool.query(ActionArchiveFinished, [ageMs, batchSize]);
      moved += rowCount ?? 0;
      if ((rowCount ?? 0) < batchSize) return moved;
    }
  }

  /** Rejects PENDING actions whose approval window closed, then requeues
   * expired leases and expired deliveries, in batches, until none is left. */
  async sweep(actor: string, batchSize = 1000): Promise<{ expired: ActionRow[]; requeued: ActionRow[] }> {
    const run = async (query: string) => {
      const out: ActionRow[] = [];
      for (;;) {
        const { rows } = await this.pool.query<ActionRow>(query, [actor, batchSize]);
        out.push(...rows);
        if (rows.length < batchSize) return out;
      }
    };
    const expired = await run(ActionExpireApprovals);
    const requeued = [...(await run(ActionRequeueExpiredLeases)), ...(await run(ActionReleaseExpiredDeliveries))];
    return { expired, requeued };
  }

  /** Runs a guarded transition for many ids and explains every id that did
   * not change: missing, in the wrong status, under another claim, or a
   * repeat of a call that already succeeded. */
  private async transition<T extends { id: string; token?: string }>(
    items: T[],
    sql: string,
    params: (items: T[]) => unknown[],
    explain: Explainer<T>,
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
      const precise = explain.explainRow?.(now, item);
      return precise ? { ok: false, error: precise } : repeatOf(now, item, explain);
    });
  }
}

function repeatOf(row: ActionRow, item: { id: string; token?: string }, explain: Omit<Explainer, "explainRow">): Outcome {
  if (explain.repeat?.(row)) return { ok: true, action: row, repeated: true };
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

function decisionJson(decision: StoredDecision) {
  return {
    status: decision.status,
    approved_by: decision.approvedBy,
    approvals_required: decision.approvalsRequired,
    ttl_seconds: decision.approvalTtlSeconds,
    detail: decision.detail,
  };
}

function withField(error: ActionqError, field: string): ActionqError {
  return new ActionqError(error.kind, error.reason, `${field}: ${error.message}`, { ...error.metadata, field });
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
