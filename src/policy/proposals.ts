// What an action will be when it is inserted: the producer's checked
// fields, the risk the policy gives them, the policy's decision (as it
// stands, and as it stands while auto-approval is paused: the insert picks
// one under the pause's lock), and the digest that tells an idempotent
// retry from a reused key. Rollbacks are proposed here too, from the action
// they reverse, through the same risk resolution.
import { createHash } from "node:crypto";
import type { JsonValue } from "@bufbuild/protobuf";
import type { RiskLevel } from "../domain/vocabulary.js";
import type { NewAction } from "../store/actions.js";
import type { ActionRow } from "../store/rows.js";
import { type ProposedAction, decideApproval, resolveRisk } from "./approval.js";
import { decideConcurrency } from "./concurrency.js";
import type { LoadedPolicy } from "./policy.js";
import { closedWindowFor } from "./windows.js";

/** An enqueue request's fields, checked, as the producer sent them: the
 * new action's own fields, with the risk as asked (null: the type's). The
 * rest of NewAction is what the policy and the digest add. */
export type ProposedFields = Omit<
  NewAction,
  | "riskLevel"
  | "rollbackOf"
  | "idempotencyKey"
  | "requestDigest"
  | "note"
  | "autonomousEligible"
  | "policyVersion"
  | "decision"
  | "pausedDecision"
  | "concurrencyKey"
  | "concurrencyLimit"
> & {
  requestedRisk: RiskLevel | null;
  /** As sent: "" and 0 when the producer gave none. */
  requestedConcurrencyKey: string;
  requestedConcurrencyLimit: number;
};

/** Canonical JSON (sorted keys) for digests. */
function canonical(value: JsonValue | undefined): string {
  if (value === undefined) return "null";
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonical(value[key])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value);
}

/** The fields a request digest covers. The concurrency fields only when
 * sent, so that a key digested before they existed still matches. */
function digested(fields: ProposedFields, sentMaxAttempts: number): JsonValue {
  const { requestedConcurrencyKey, requestedConcurrencyLimit, ...rest } = fields;
  return {
    ...rest,
    runAfter: fields.runAfter?.toISOString() ?? null,
    maxAttempts: sentMaxAttempts,
    ...(requestedConcurrencyKey === "" ? {} : { requestedConcurrencyKey }),
    ...(requestedConcurrencyLimit === 0 ? {} : { requestedConcurrencyLimit }),
  } as unknown as JsonValue;
}

function decisions(loaded: LoadedPolicy, action: ProposedAction & { typeRisk: RiskLevel }, at: Date) {
  // Windows are read at the proposal, by this server's clock and policy:
  // an action proposed while one is closed waits for humans even after it
  // opens, as one proposed during a pause does.
  const closed = closedWindowFor(loaded.policy.windows, "stop_auto_approval", action, at);
  const decision = decideApproval(loaded, action, false, closed);
  const pausedDecision = decideApproval(loaded, action, true, closed);
  return { decision, pausedDecision, autonomousEligible: decision.autonomousEligible, policyVersion: decision.policyVersion };
}

/** The action a producer proposes. `sentMaxAttempts`: max_attempts as the
 * request carried it (0 for the server's default), for the digest. Throws
 * INVALID_ARGUMENT when the producer asks for less risk than the type's. */
export function proposeAction(
  loaded: LoadedPolicy,
  fields: ProposedFields,
  idempotencyKey: string | null,
  sentMaxAttempts: number,
  at: Date = new Date(),
): NewAction {
  const { risk, typeRisk } = resolveRisk(loaded.policy, fields.actionType, fields.requestedRisk);
  const concurrency = decideConcurrency(loaded.policy.concurrency, fields, fields.requestedConcurrencyKey, fields.requestedConcurrencyLimit);
  const { requestedRisk: _risk, requestedConcurrencyKey: _key, requestedConcurrencyLimit: _limit, ...rest } = fields;
  return {
    ...rest,
    concurrencyKey: concurrency?.key ?? null,
    concurrencyLimit: concurrency?.limit ?? null,
    riskLevel: risk,
    rollbackOf: null,
    note: null,
    idempotencyKey,
    // Only a repeated idempotency key is compared with it. What the
    // producer asked for, as it asked, so that the digest does not change
    // when the policy does: run_after as its ISO string (a Date has no keys
    // of its own), max_attempts before the server's default, so that
    // replicas with different defaults agree on a retry.
    requestDigest:
      idempotencyKey === null
        ? null
        : createHash("sha256")
            .update(canonical(digested(fields, sentMaxAttempts)))
            .digest("base64url"),
    ...decisions(loaded, { ...fields, riskLevel: risk, typeRisk }, at),
  };
}

/** The reverse of a finished action: its rollback_ref with its rollback
 * payload, on the same target and lineage, at the risk the policy gives
 * that type, proposed by `actor`. One live rollback per action: the digest
 * names the original. */
export function proposeRollback(loaded: LoadedPolicy, original: ActionRow, actor: string, reason: string, at: Date = new Date()): NewAction {
  const { risk, typeRisk } = resolveRisk(loaded.policy, original.rollback_ref, null);
  const proposal = {
    actionType: original.rollback_ref,
    project: original.project,
    targetRef: original.target_ref,
    sourceRefs: [`action:${original.id}`],
    payload: original.rollback_payload ?? {},
    priority: original.priority,
    riskLevel: risk,
    confidence: null,
    approvalRequired: false,
    maxAttempts: original.max_attempts,
    runAfter: null,
    createdBy: actor,
    correlationId: original.correlation_id,
    node: original.node,
    service: original.service,
    parentId: original.id,
  };
  // The reverse action is keyed as its own type is: a rollback of a
  // redeploy waits for whatever else runs on that service.
  const concurrency = decideConcurrency(loaded.policy.concurrency, proposal, "", 0);
  return {
    ...proposal,
    concurrencyKey: concurrency?.key ?? null,
    concurrencyLimit: concurrency?.limit ?? null,
    rollbackRef: "",
    rollbackPayload: null,
    rollbackOf: original.id,
    supersedesId: null,
    idempotencyKey: null,
    requestDigest: createHash("sha256").update(`rollback:${original.id}`).digest("base64url"),
    note: reason === "" ? null : reason,
    ...decisions(loaded, { ...proposal, typeRisk }, at),
  };
}
