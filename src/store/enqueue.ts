// The insert path of an enqueue, inside a transaction the caller holds:
// idempotent repeats first (a retry is never refused for rate or depth),
// then chain depth, the producer's hourly rate, the action it supersedes,
// one INSERT for the batch, and the supersede itself. Each input gets an
// outcome; an input that is refused writes nothing.
import { ActionqError, actionNotFound, invalidTransition } from "../errors.js";
import {
  ActionGetByIdempotencyKeys,
  ActionGetDepths,
  ActionInsertMany,
  ActionLockForSupersede,
  ActionSupersedeMany,
  ProducerCountRecent,
  ProducerLockMany,
} from "./action-queries.js";
import type { HandoffSlot, NewAction, Outcome, StoreLimits, StoredDecision } from "./actions.js";
import { type ActionChange, moved } from "./commits.js";
import type { Queryable } from "./db.js";
import type { ActionRow } from "./rows.js";

/** Producers whose enqueues are rate limited. */
export function isRateLimitedProducer(createdBy: string): boolean {
  return createdBy.startsWith("agent:") || createdBy.startsWith("script:");
}

/** Enqueues inside a transaction the caller holds; `changes` gets what
 * it will have changed once that transaction commits. */
export async function enqueueWith(
  client: Queryable,
  inputs: NewAction[],
  changes: ActionChange[],
  limits: StoreLimits,
  handoffs: readonly (HandoffSlot | undefined)[] = [],
): Promise<Outcome[]> {
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
    const existing = await findByKeys(
      client,
      keyed.map(({ input }) => [input.createdBy, input.idempotencyKey!]),
    );
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
  const freeInMs = new Map<string, number>();
  if (counted.length > 0) {
    const { rows } = await client.query<{ created_by: string; n: number; free_in_ms: string | null }>(ProducerCountRecent, [counted, limits.rateLimitPerHour]);
    for (const row of rows) {
      used.set(row.created_by, row.n);
      if (row.free_in_ms !== null) freeInMs.set(row.created_by, Math.max(0, Number(row.free_in_ms)));
    }
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
      if (chainDepth > limits.maxChainDepth) {
        outcomes[index] = {
          ok: false,
          error: new ActionqError(
            "failed_precondition",
            "CHAIN_TOO_DEEP",
            `parent_id: action ${input.parentId} is at chain depth ${parentDepth}; a child would be at ${chainDepth}, beyond the limit of ${limits.maxChainDepth}`,
            { field: "parent_id", chain_depth: String(chainDepth), max_chain_depth: String(limits.maxChainDepth) },
          ),
        };
        return;
      }
    }
    if (isRateLimitedProducer(input.createdBy)) {
      const count = used.get(input.createdBy) ?? 0;
      if (count >= limits.rateLimitPerHour) {
        // Earlier items of this batch used the last slots: the first
        // action of the window frees one at the earliest.
        const retryMs = freeInMs.get(input.createdBy) ?? 60 * 60 * 1000;
        const retryAt = new Date(Date.now() + retryMs).toISOString().replace(/\.\d{3}Z$/, "Z");
        outcomes[index] = {
          ok: false,
          error: new ActionqError(
            "resource_exhausted",
            "RATE_LIMITED",
            `created_by: producer ${input.createdBy} has enqueued ${count} actions in the last hour; the limit is ${limits.rateLimitPerHour}; retry in ${Math.ceil(retryMs / 1000)} s (at ${retryAt})`,
            { field: "created_by", limit: String(limits.rateLimitPerHour), window: "1h", retry_after_seconds: String(Math.ceil(retryMs / 1000)) },
            retryMs,
          ),
        };
        return;
      }
      used.set(input.createdBy, count + 1);
    }
    toInsert.push({ index, input, chainDepth });
  });

  if (toInsert.length > 0) {
    const payload = toInsert.map(({ index, input, chainDepth }, ord) => ({
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
      concurrency_key: input.concurrencyKey,
      concurrency_limit: input.concurrencyLimit,
      schedule_key: input.schedule?.key ?? null,
      schedule_id: input.schedule?.id ?? null,
      schedule_tick_time: input.schedule?.tickTime.toISOString() ?? null,
      // Listed, not spread in: a spread into a literal this size made
      // building it a measurable part of an enqueue's CPU.
      handoff_session: handoffs[index]?.session ?? null,
      handoff_worker: handoffs[index]?.worker ?? null,
      handoff_lease_ms: handoffs[index]?.leaseMs ?? null,
      handoff_types: handoffs[index]?.actionTypes ?? null,
      handoff_projects: handoffs[index]?.projects ?? null,
    }));
    const { rows } = await client.query<ActionRow & { ord: number }>(ActionInsertMany, [JSON.stringify(payload), limits.ackTimeoutMs]);
    const lost: { index: number; input: NewAction }[] = [];
    for (const row of rows) {
      const { index, input } = toInsert[row.ord]!;
      if (row.id === null) lost.push({ index, input });
      else outcomes[index] = { ok: true, action: stripOrd(row), created: true };
    }
    // A concurrent call with the same key won the insert: answer as a
    // repeat of it.
    if (lost.length > 0) {
      const existing = await findByKeys(
        client,
        lost.map(({ input }) => [input.createdBy, input.idempotencyKey!]),
      );
      for (const { index, input } of lost) {
        const row = existing.get(keyFor(input.createdBy, input.idempotencyKey!));
        outcomes[index] = row
          ? repeatOutcome(row, input)
          : {
              ok: false,
              error: new ActionqError("unavailable", "CONCURRENT_INSERT", "the idempotency key was taken by a transaction that did not commit; retry"),
            };
      }
    }
    const replacing = toInsert.flatMap(({ index, input }) => {
      const outcome = outcomes[index];
      return outcome?.ok && outcome.created && input.supersedesId !== null
        ? [{ id: input.supersedesId, newId: outcome.action.id, actor: input.createdBy }]
        : [];
    });
    if (replacing.length > 0) {
      const { rows: cancelled } = await client.query<ActionRow>(ActionSupersedeMany, [
        replacing.map((r) => r.id),
        replacing.map((r) => r.newId),
        replacing.map((r) => r.actor),
      ]);
      // Locked above and checked: every one must have been cancelled.
      if (cancelled.length !== replacing.length) throw new Error("superseded actions changed under their lock");
      for (const row of cancelled) {
        const replacement = replacing.find((r) => r.id === row.id)!;
        changes.push({ kind: "cancelled", action: row, from: superseded.get(row.id)!.status, actor: replacement.actor });
      }
    }
    // The new actions first: a superseding action exists before the one
    // it replaces is reported cancelled.
    const created = toInsert.flatMap(({ index }) => {
      const outcome = outcomes[index];
      return outcome?.ok && outcome.created ? [outcome.action] : [];
    });
    // An action handed to a waiting stream was enqueued APPROVED and
    // claimed in the same statement: two changes, in that order.
    const handed = created.filter((row) => row.status === "claimed");
    changes.unshift(
      ...moved("enqueued", created.map(asEnqueued), null, (row) => row.created_by),
      ...moved("claimed", handed, "approved", (row) => row.claimed_by!),
    );
  }
  return outcomes.map((outcome) => outcome!);
}

async function findByKeys(client: Queryable, keys: [string, string][]): Promise<Map<string, ActionRow>> {
  const { rows } = await client.query<ActionRow>(ActionGetByIdempotencyKeys, [keys.map((k) => k[0]), keys.map((k) => k[1])]);
  return new Map(rows.map((row) => [keyFor(row.created_by, row.idempotency_key!), row]));
}

/** The row as it was enqueued, before the claim of the same statement. */
function asEnqueued(row: ActionRow): ActionRow {
  return row.status === "claimed" ? { ...row, status: "approved" } : row;
}

function decisionJson(decision: StoredDecision) {
  return {
    status: decision.status,
    approved_by: decision.approvedBy,
    approvals_required: decision.approvalsRequired,
    approval_requirements: decision.requirements,
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
