// The actions store: runs the named queries of action-queries.ts in the
// right order and turns their results into one outcome per input. A row
// that a guarded statement did not change is explained afterwards by
// looking at what it is now. It is longer than our usual 400 lines on
// purpose: each guarded transition sits beside the explanation of its
// refusals (missing, wrong status, another claim, a repeat), and splitting
// them would part a statement from what its zero rows mean. The insert path
// is in enqueue.ts.
import type { JsonObject } from "@bufbuild/protobuf";
import type pg from "pg";
import { ActionqError, actionNotFound, claimTokenMismatch, invalidTransition } from "../errors.js";
import {
  ActionAckMany,
  ActionAdoptClaims,
  ActionApproveMany,
  ActionArchiveFinished,
  ActionBreakGlassMany,
  ActionCancelForSchedule,
  ActionCancelMany,
  ActionClaimMany,
  ActionCompleteMany,
  ActionExpireApprovals,
  ActionExtendMany,
  ActionFailMany,
  ActionGetMany,
  ActionGetWithEvents,
  ActionList,
  ActionLiveRollback,
  ActionLockForRollback,
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
  ClaimHolders,
  ClaimsStillHeld,
} from "./action-queries.js";
import { approvalsNeeded } from "../policy/requirements.js";
import { Coalescer } from "./coalescer.js";
import { enqueueWith, isRateLimitedProducer } from "./enqueue.js";
import { importActions } from "./imports.js";
import type { PlannedImport } from "../policy/imports.js";
import { type ActionChange, type ActionChangeKind, type Commits, moved } from "./commits.js";
import { type ConcurrencyHold, concurrencyHold } from "./concurrency.js";
import { inTransaction } from "./db.js";
import type { ActionRow, EventRow, RiskLevel, Status, TraceContext } from "./rows.js";

/** A policy decision as the insert statement reads it. */
export interface StoredDecision {
  status: "pending" | "approved";
  approvedBy: string | null;
  approvalsRequired: number;
  /** Groups the approvers must include, kept with the action. */
  requirements: { group: string; count: number; from: string }[];
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
  /** Actions with the same key run at most `concurrencyLimit` at a time. */
  concurrencyKey: string | null;
  concurrencyLimit: number | null;
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
  /** Set by the scheduler: the schedule (internal key and id) and the
   * nominal tick this action is for; at most one action per tick. */
  schedule?: { key: string; id: string; tickTime: Date } | null;
  /** The caller's W3C trace context, handed to workers with each claim. */
  traceContext?: TraceContext | null;
}

export interface StoreLimits {
  maxChainDepth: number;
  rateLimitPerHour: number;
  ackTimeoutMs: number;
  /** Backoff of the first retry, doubling up to retryBackoffMaxMs. */
  retryBackoffMs: number;
  retryBackoffMaxMs: number;
}

/** A free slot on a claim stream of this process that waits for work,
 * held for one action being enqueued (handoff at enqueue): the INSERT
 * writes the action already claimed for that stream when the action could
 * be claimed at once and nothing the stream accepts comes before it. */
export interface HandoffSlot {
  session: string;
  worker: string;
  leaseMs: number;
  /** The stream's filter; empty means any. */
  actionTypes: string[];
  projects: string[];
  /** Called once after the enqueue, with the action if the stream got it;
   * frees the slot otherwise. */
  settle(handed: ActionRow | undefined): void;
}

/** Where the store asks for handoff slots (the claim dispatcher). */
export interface Handoffs {
  offer(actionType: string, project: string): HandoffSlot | undefined;
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

/** A transaction in which other stores' writes (a schedule's tick) enqueue
 * through the one insert path: policy decision, rate limits, handoff, and
 * the commit seam once the whole transaction has committed. */
export interface ActionTransaction {
  client: pg.PoolClient;
  enqueue(inputs: NewAction[]): Promise<Outcome[]>;
  /** Cancels unfinished actions for a schedule's tick (CANCEL_OTHER). */
  cancelForSchedule(ids: string[], actor: string, reason: string, schedule: { id: string; tickTime: Date }): Promise<ActionRow[]>;
}

/** How a transition that changed nothing is explained, per id. */
interface Explainer<T = { id: string }> {
  operation: string;
  allowed: Status[];
  /** Whether the current row is what this exact call (this item, not any
   * other item of the batch: concurrent callers share a statement) would
   * have left behind, so that the call is answered as a repeat. */
  repeat?: (row: ActionRow, item: T) => boolean;
  tokenChecked: boolean;
  /** A more precise reason for a row the statement's guard left alone. */
  explainRow?: (row: ActionRow, item: T) => ActionqError | undefined;
}

/** What a transition reports for each row it changed. `from`: the status
 * before, when the statement allows only one (else the row's from_status
 * column, which the statement returns). */
interface ChangeReport<T> {
  kind: ActionChangeKind | ((row: ActionRow) => ActionChangeKind);
  from: Status | null;
  /** `fromWorker`: the worker that held the claim, for statements that
   * return it (a retry clears claimed_by). */
  actor: (item: T, row: ActionRow, fromWorker: string | undefined) => string;
}

const byWorker = (_item: unknown, row: ActionRow, fromWorker: string | undefined) => fromWorker ?? row.claimed_by ?? "";
const byActor = (item: { actor: string }) => item.actor;

export class ActionStore {
  private handoffs: Handoffs | undefined;
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
    /** Every committed change is reported here, once. */
    private readonly commits: Commits,
    batching: { parallel: number; maxBatch: number } = { parallel: 4, maxBatch: 500 },
  ) {
    const enqueue = new Coalescer((inputs: NewAction[]) => this.enqueueMany(inputs), batching);
    const ack = new Coalescer((items: { id: string; token: string }[]) => this.ackMany(items), batching);
    const complete = new Coalescer((items: { id: string; token: string; resultRef: string }[]) => this.completeMany(items), batching);
    const fail = new Coalescer(
      (items: { id: string; token: string; reason: string; retryable: boolean; delayMs: number | null }[]) => this.failMany(items),
      batching,
    );
    this.one = {
      enqueue: (input) => enqueue.submit(input),
      ack: (item) => ack.submit(item),
      complete: (item) => complete.submit(item),
      fail: (item) => fail.submit(item),
    };
  }

  /** Brings actions over from another system, in one transaction (see
   * imports.ts): `created` false for one already here. */
  importMany(items: PlannedImport[], options: { validateOnly: boolean; actor: string }): Promise<Outcome[]> {
    return importActions(this.pool, this.commits, items, options);
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
    const changes: ActionChange[] = [];
    const slots = this.handoffSlots(inputs);
    let outcomes: Outcome[] | undefined;
    try {
      outcomes = readsFirst
        ? await inTransaction(this.pool, (client) => enqueueWith(client, inputs, changes, this.limits, slots))
        : await enqueueWith(this.pool, inputs, changes, this.limits, slots);
      // The dispatcher hears of a handed-off claim here, after the commit,
      // and pushes it to its stream.
      this.commits.publish(changes);
      return outcomes;
    } finally {
      slots.forEach((slot, index) => {
        const outcome = outcomes?.[index];
        const handed = outcome?.ok && outcome.created === true && outcome.action.status === "claimed" && outcome.action.claim_session === slot?.session;
        slot?.settle(handed ? (outcome as { action: ActionRow }).action : undefined);
      });
    }
  }

  /** Runs `fn` in one transaction (see ActionTransaction); the changes
   * are published after the commit, and handoff slots settled either way. */
  async transact<T>(fn: (tx: ActionTransaction) => Promise<T>): Promise<T> {
    const changes: ActionChange[] = [];
    const handed: { slots: (HandoffSlot | undefined)[]; outcomes: Outcome[] | undefined }[] = [];
    let committed = false;
    try {
      const result = await inTransaction(this.pool, (client) =>
        fn({
          client,
          enqueue: async (inputs) => {
            const entry: (typeof handed)[number] = { slots: this.handoffSlots(inputs), outcomes: undefined };
            handed.push(entry);
            entry.outcomes = await enqueueWith(client, inputs, changes, this.limits, entry.slots);
            return entry.outcomes;
          },
          cancelForSchedule: async (ids, actor, reason, schedule) => {
            const { rows } = await client.query<ActionRow & { from_status: Status }>(ActionCancelForSchedule, [
              ids,
              actor,
              reason,
              schedule.id,
              schedule.tickTime.toISOString(),
            ]);
            for (const { from_status, ...row } of rows) changes.push({ kind: "cancelled", action: row, from: from_status, actor });
            return rows;
          },
        }),
      );
      committed = true;
      this.commits.publish(changes);
      return result;
    } finally {
      for (const { slots, outcomes } of handed) {
        slots.forEach((slot, index) => {
          const outcome = outcomes?.[index];
          const got =
            committed && outcome?.ok && outcome.created === true && outcome.action.status === "claimed" && outcome.action.claim_session === slot?.session;
          slot?.settle(got ? (outcome as { action: ActionRow }).action : undefined);
        });
      }
    }
  }

  /** Streams of this process that wait for work, to hand new actions to.
   * Slots are asked for in claim order (priority, then the order given),
   * and only while every action that could be claimed at once gets one:
   * the INSERT cannot see the other rows of its batch, so an action left
   * waiting must not be overtaken by a later one of the same batch. */
  private handoffSlots(inputs: NewAction[]): (HandoffSlot | undefined)[] {
    const slots: (HandoffSlot | undefined)[] = new Array(inputs.length);
    if (!this.handoffs) return slots;
    const now = Date.now();
    const claimable = (input: NewAction) => input.decision.status === "approved" && (input.runAfter === null || input.runAfter.getTime() <= now);
    // Keyed actions are claimed by their key's order, not handed off; one
    // in the batch could precede the others.
    if (inputs.some((input) => claimable(input) && input.concurrencyKey !== null)) return slots;
    const order = inputs.map((input, index) => ({ input, index })).sort((a, b) => a.input.priority - b.input.priority || a.index - b.index);
    for (const { input, index } of order) {
      if (!claimable(input)) continue;
      const slot = this.handoffs.offer(input.actionType, input.project);
      if (!slot) break;
      slots[index] = slot;
    }
    return slots;
  }

  /** Hands new actions to waiting streams (see HandoffSlot). */
  handOffTo(handoffs: Handoffs): void {
    this.handoffs = handoffs;
  }

  /** Enqueues the rollback of action `id`, built from the locked action by
   * `build`, or returns its live rollback. Errors as outcomes. */
  async rollback(id: string, build: (action: ActionRow) => NewAction): Promise<Outcome> {
    const changes: ActionChange[] = [];
    const outcome = await inTransaction(this.pool, async (client): Promise<Outcome> => {
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
          error: new ActionqError("failed_precondition", "NO_ROLLBACK_REF", `action ${id} has no rollback_ref: it declared no reverse action`, {
            action_id: id,
          }),
        };
      }
      const [outcome] = await enqueueWith(client, [build(action)], changes, this.limits);
      return outcome!;
    });
    this.commits.publish(changes);
    return outcome;
  }

  async get(id: string): Promise<{ action: ActionRow; events: EventRow[] } | undefined> {
    const { rows } = await this.pool.query<ActionRow & { events: (Omit<EventRow, "created_at"> & { created_at: string })[] }>(ActionGetWithEvents, [id]);
    const row = rows[0];
    if (!row) return undefined;
    const { events, ...action } = row;
    return { action, events: events.map((event) => ({ ...event, created_at: new Date(event.created_at) })) };
  }

  /** Why an approved action waits for its concurrency key, if it does. */
  concurrencyHold(id: string): Promise<ConcurrencyHold | undefined> {
    return concurrencyHold(this.pool, id);
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

  /** Which of these claims their streams still hold in the database. */
  async stillHeld(claims: { id: string; session: string; attempt: number }[]): Promise<Set<string>> {
    const { rows } = await this.pool.query<{ id: string }>(ClaimsStillHeld, [
      claims.map((c) => c.id),
      claims.map((c) => c.session),
      claims.map((c) => c.attempt),
    ]);
    return new Set(rows.map((row) => row.id));
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
    // Claim order: streams are handed their claims (on the commit) most
    // urgent first, and a batch of claims reads in that order.
    rows.sort(claimOrder);
    this.commits.publish(moved("claimed", rows, "approved", (row) => row.claimed_by!));
    return rows;
  }

  ackMany(items: { id: string; token: string }[]): Promise<Outcome[]> {
    return this.transition(
      items,
      ActionAckMany,
      (list) => [list.map((x) => x.id), list.map((x) => x.token)],
      { kind: "acked", from: "claimed", actor: byWorker },
      {
        operation: "acknowledging a claim",
        allowed: ["claimed"],
        tokenChecked: true,
        repeat: (row, x) => row.status === "claimed" && x.token === row.claim_token,
      },
    );
  }

  extendMany(items: { id: string; token: string; leaseMs: number | null }[]): Promise<Outcome[]> {
    return this.transition(
      items,
      ActionExtendMany,
      (list) => [list.map((x) => x.id), list.map((x) => x.token), list.map((x) => x.leaseMs)],
      { kind: "extended", from: "claimed", actor: byWorker },
      {
        operation: "extending a claim",
        allowed: ["claimed"],
        tokenChecked: true,
        repeat: (row, x) => row.status === "claimed" && x.token === row.claim_token,
      },
    );
  }

  completeMany(items: { id: string; token: string; resultRef: string }[]): Promise<Outcome[]> {
    return this.transition(
      items,
      ActionCompleteMany,
      (list) => [list.map((x) => x.id), list.map((x) => x.token), list.map((x) => x.resultRef)],
      { kind: "completed", from: "claimed", actor: byWorker },
      {
        operation: "completing",
        allowed: ["claimed"],
        tokenChecked: true,
        repeat: (row, x) => row.status === "completed" && x.token === row.claim_token && x.resultRef === row.result_ref,
      },
    );
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
      { kind: (row) => (row.status === "failed" ? "failed" : "retry_scheduled"), from: "claimed", actor: byWorker },
      {
        operation: "failing",
        allowed: ["claimed"],
        tokenChecked: true,
        // The same failure again: it ended this claim, finally or with a
        // retry, whatever happened to the action since.
        repeat: (row, x) =>
          (row.status === "failed" && x.token === row.claim_token && x.reason === row.failure_reason) ||
          (x.token === row.retried_token && x.reason === row.last_error),
      },
    );
  }

  retryMany(items: { id: string; actor: string; reason: string; extra: number }[]): Promise<Outcome[]> {
    return this.transition(
      items,
      ActionRetryMany,
      (list) => [list.map((x) => x.id), list.map((x) => x.actor), list.map((x) => x.reason), list.map((x) => x.extra)],
      { kind: "retried", from: "failed", actor: byActor },
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
      { kind: "rejected", from: "claimed", actor: byActor },
      {
        operation: "rejecting a claimed action",
        allowed: ["claimed"],
        tokenChecked: true,
        repeat: (row, x) => row.status === "rejected" && x.token === row.claim_token && x.reason === row.failure_reason,
      },
    );
  }

  rejectPendingMany(items: { id: string; actor: string; reason: string }[]): Promise<Outcome[]> {
    return this.transition(
      items,
      ActionRejectPendingMany,
      (list) => [list.map((x) => x.id), list.map((x) => x.actor), list.map((x) => x.reason)],
      { kind: "rejected", from: "pending", actor: byActor },
      {
        operation: "rejecting without a claim token",
        allowed: ["pending"],
        tokenChecked: false,
      },
    );
  }

  /** `groups`: the approver's groups, from its credential (never from the
   * request); kept with its approval. */
  approveMany(items: { id: string; approver: string; note: string; groups: readonly string[] }[]): Promise<Outcome[]> {
    const kind = (row: ActionRow): ActionChangeKind => (row.status === "pending" ? "approval_granted" : "approved");
    return this.transition(
      items,
      ActionApproveMany,
      (list) => [list.map((x) => x.id), list.map((x) => x.approver), list.map((x) => x.note), list.map((x) => JSON.stringify(x.groups))],
      { kind, from: "pending", actor: (item) => item.approver },
      {
        operation: "approving",
        allowed: ["pending"],
        tokenChecked: false,
        explainRow: (row, item) => {
          if (row.status !== "pending") return undefined;
          const approver = item.approver;
          if (row.created_by === approver) {
            return new ActionqError(
              "permission_denied",
              "SELF_APPROVAL",
              `${approver} proposed action ${row.id} and cannot approve it; another approver must`,
              {
                action_id: row.id,
                field: "approver",
              },
            );
          }
          if (row.approvers.includes(approver)) {
            return new ActionqError(
              "failed_precondition",
              "DUPLICATE_APPROVAL",
              `${approver} already approved action ${row.id}; it ${approvalsNeeded(row) || "needs no more approvals"}`,
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
      },
    );
  }

  /** Appends an action_progress event for the worker holding the claim. */
  async progress(id: string, token: string, actor: string, payload: JsonObject): Promise<EventRow | ActionqError> {
    const { rows } = await this.pool.query<EventRow>(ActionProgress, [id, token, actor, JSON.stringify(payload)]);
    if (rows[0]) {
      this.commits.publish([{ kind: "progressed", actionId: id, attempt: Number(rows[0].payload.attempt), actor }]);
      return rows[0];
    }
    const [now] = await this.getMany([id]);
    if (!now) return actionNotFound(id);
    const outcome = repeatOf(now, { id, token }, { operation: "recording progress", allowed: ["claimed"], tokenChecked: true });
    return outcome.ok ? new ActionqError("unavailable", "CONCURRENT_CHANGE", `action ${id} changed while recording progress; retry`) : outcome.error;
  }

  cancelMany(items: { id: string; actor: string; reason: string }[]): Promise<Outcome[]> {
    return this.transition(
      items,
      ActionCancelMany,
      (list) => [list.map((x) => x.id), list.map((x) => x.actor), list.map((x) => x.reason)],
      { kind: "cancelled", from: null, actor: byActor },
      {
        operation: "cancelling",
        allowed: ["pending", "approved", "claimed"],
        tokenChecked: false,
      },
    );
  }

  /** Lets PENDING or APPROVED actions run inside a closed change window. */
  breakGlassMany(items: { id: string; actor: string; reason: string }[]): Promise<Outcome[]> {
    return this.transition(
      items,
      ActionBreakGlassMany,
      (list) => [list.map((x) => x.id), list.map((x) => x.actor), list.map((x) => x.reason)],
      { kind: "break_glass", from: null, actor: byActor },
      {
        operation: "breaking glass",
        allowed: ["pending", "approved"],
        tokenChecked: false,
      },
    );
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
      claims?.map((claim) => claim.id) ?? null,
      actor,
      reason,
      claims?.map((claim) => claim.attempt) ?? null,
    ]);
    this.commits.publish(moved("released", rows, "claimed", () => actor));
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
    this.commits.publish(moved("expired", expired, "pending", () => actor));
    const timedOut = await run(ActionRequeueExpiredLeases);
    this.commits.publish(moved("timed_out", timedOut, "claimed", () => actor));
    const released = await run(ActionReleaseExpiredDeliveries);
    this.commits.publish(moved("released", released, "claimed", () => actor));
    return { expired, requeued: [...timedOut, ...released] };
  }

  /** Runs a guarded transition for many ids and explains every id that did
   * not change: missing, in the wrong status, under another claim, or a
   * repeat of a call that already succeeded. */
  private async transition<T extends { id: string; token?: string }>(
    items: T[],
    sql: string,
    params: (items: T[]) => unknown[],
    report: ChangeReport<T>,
    explain: Explainer<T>,
  ): Promise<Outcome[]> {
    // One change per id and statement: a duplicate is answered like a
    // repeat, from the row the first one left behind.
    const first = new Map<string, T>();
    for (const item of items) if (!first.has(item.id)) first.set(item.id, item);
    const unique = [...first.values()];
    const { rows: returned } = await this.pool.query<ActionRow & { from_status?: Status; from_worker?: string }>(sql, params(unique));
    const rows = returned.map(({ from_status, from_worker, ...row }) => ({ row: row as ActionRow, from: from_status ?? report.from, fromWorker: from_worker }));
    this.commits.publish(
      rows.map(({ row, from, fromWorker }) => ({
        kind: typeof report.kind === "function" ? report.kind(row) : report.kind,
        action: row,
        from,
        actor: report.actor(first.get(row.id)!, row, fromWorker),
      })),
    );
    const changed = new Map(rows.map(({ row }) => [row.id, row]));
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

/** Claim order: lowest priority first, then oldest (ids are int8 text). */
function claimOrder(a: ActionRow, b: ActionRow): number {
  return a.priority - b.priority || a.id.length - b.id.length || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function repeatOf<T extends { id: string; token?: string }>(row: ActionRow, item: T, explain: Omit<Explainer<T>, "explainRow">): Outcome {
  if (explain.repeat?.(row, item)) return { ok: true, action: row, repeated: true };
  if (explain.tokenChecked && row.status === "claimed" && row.claim_token !== item.token) {
    return { ok: false, error: claimTokenMismatch(row.id, row.status) };
  }
  if (explain.allowed.includes(row.status)) {
    // The row is in an allowed status now but was not when the statement
    // ran (it changed in between); the caller may retry.
    return {
      ok: false,
      error: new ActionqError("unavailable", "CONCURRENT_CHANGE", `action ${row.id} changed while ${explain.operation}; retry`, { action_id: row.id }),
    };
  }
  return { ok: false, error: invalidTransition(row.id, row.status, explain.operation, explain.allowed) };
}
