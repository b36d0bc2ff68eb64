// What an imported action becomes here (ImportActions): the status it had
// in the other system, read through this deployment's policy. Pending stays
// pending whatever the policy would approve on its own; an approval there
// counts only when the caller vouches for it (trust_approvals); a claim
// there is never trusted; a finished action is recorded as it finished.
// The store inserts the plan as it is.
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { type RiskLevel, type Status, isFinished, riskBelow } from "../domain/vocabulary.js";
import { type StoredRequirement, riskOfType } from "./approval.js";
import type { LoadedPolicy } from "./policy.js";
import { proposeAction } from "./proposals.js";

/** An imported action's fields, checked, as the other system held them. */
export interface ImportFields {
  externalId: string;
  /** Its status there; `claimed` means it was running. */
  statusThere: Status;
  /** RFC 3339 with microseconds, as PostgreSQL keeps them. */
  createdAt: string;
  createdBy: string;
  correlationId: string;
  node: string;
  service: string;
  actionType: string;
  riskLevel: RiskLevel;
  confidence: number | null;
  approvalRequired: boolean;
  autonomousEligible: boolean;
  payload: JsonObject;
  rollbackRef: string;
  /** Only for a finished status; null: unknown (it finishes now). */
  finishedAt: string | null;
  /** "" when not given. */
  failureReason: string;
  /** The document as stored there, and its history lines, kept untouched. */
  original: JsonObject | null;
  history: string[];
  source: string;
}

export interface ImportEvent {
  event_type: string;
  actor: string;
  payload: JsonObject;
}

/** An action to insert as imported: every column decided. */
export interface PlannedImport {
  externalId: string;
  actionType: string;
  payload: JsonObject;
  status: Status;
  riskLevel: RiskLevel;
  confidence: number | null;
  approvalRequired: boolean;
  createdBy: string;
  correlationId: string;
  node: string;
  service: string;
  rollbackRef: string;
  approvedBy: string | null;
  /** Approved by this import: approved_at is now. */
  approvedNow: boolean;
  approvalsRequired: number;
  requirements: StoredRequirement[];
  /** A pending action's time to be approved, from now. */
  approvalTtlSeconds: number | null;
  policyVersion: string;
  autonomousEligible: boolean;
  maxAttempts: number;
  concurrencyKey: string | null;
  concurrencyLimit: number | null;
  /** RFC 3339 with microseconds, as PostgreSQL keeps them. */
  createdAt: string;
  finishedAt: string | null;
  failureReason: string | null;
  resultRef: string | null;
  /** In the order they are written; action_imported first. */
  events: ImportEvent[];
  /** What the import changed or decided, in words. */
  notes: string[];
}

export interface ImportContext {
  /** Who imports: the actor of the events, and the approver of trusted
   * approvals. */
  actor: string;
  trustApprovals: boolean;
  /** The server's default, as for an enqueue without max_attempts. */
  maxAttempts: number;
}

/** The other system's word for a status: it called a claimed action running. */
function statusThereWord(status: Status): string {
  return status === "claimed" ? "running" : status;
}

export function planImport(loaded: LoadedPolicy, fields: ImportFields, context: ImportContext): PlannedImport {
  const { actor } = context;
  const notes: string[] = [];
  // A finished action is a record of what happened there: its level is
  // kept as it was. One that may still run was proposed already: a risk
  // below its type's is raised, not refused.
  const typeRisk = riskOfType(loaded.policy, fields.actionType);
  let riskLevel = fields.riskLevel;
  if (!isFinished(fields.statusThere) && riskBelow(riskLevel, typeRisk)) {
    notes.push(`risk level raised from ${riskLevel} to ${typeRisk} by the policy`);
    riskLevel = typeRisk;
  }
  const own = {
    externalId: fields.externalId,
    actionType: fields.actionType,
    payload: fields.payload,
    riskLevel,
    confidence: fields.confidence,
    createdBy: fields.createdBy,
    correlationId: fields.correlationId,
    node: fields.node,
    service: fields.service,
    rollbackRef: fields.rollbackRef,
    createdAt: fields.createdAt,
    maxAttempts: context.maxAttempts,
  };
  const imported = (extra: JsonObject): ImportEvent => ({
    event_type: "action_imported",
    actor,
    payload: {
      source: fields.source,
      status_there: statusThereWord(fields.statusThere),
      document: fields.original,
      history: fields.history,
      notes,
      ...extra,
    },
  });

  if (isFinished(fields.statusThere)) {
    const status = fields.statusThere;
    let failureReason: string | null = null;
    if (status === "completed") {
      if (fields.failureReason !== "") notes.push("failure_reason ignored: the action completed");
    } else {
      failureReason = fields.failureReason === "" ? `imported as ${status}` : fields.failureReason;
    }
    if (fields.finishedAt === null) notes.push("no finish time given: recorded as finished now");
    return {
      ...own,
      status,
      approvalRequired: fields.approvalRequired,
      // Completed and failed actions ran, so someone approved them there;
      // who is not known here: the import says it vouches for nothing more.
      approvedBy: status === "completed" || status === "failed" ? `import:${actor}` : null,
      approvedNow: false,
      approvalsRequired: 0,
      requirements: [],
      approvalTtlSeconds: null,
      policyVersion: loaded.version,
      autonomousEligible: fields.autonomousEligible,
      concurrencyKey: null,
      concurrencyLimit: null,
      finishedAt: fields.finishedAt,
      failureReason,
      // Nothing is known of what it produced there.
      resultRef: status === "completed" ? "" : null,
      events: [imported({})],
      notes,
    };
  }

  // Waiting or approved: the policy decides as for a new proposal that
  // asks for an approval, so that pending stays pending and the quorum,
  // approver groups and expiry are this policy's, counted from now.
  const proposal = proposeAction(
    loaded,
    {
      actionType: fields.actionType,
      project: "",
      targetRef: "",
      sourceRefs: [],
      payload: fields.payload,
      priority: 0,
      requestedRisk: riskLevel,
      confidence: fields.confidence,
      approvalRequired: true,
      createdBy: fields.createdBy,
      correlationId: fields.correlationId,
      node: fields.node,
      service: fields.service,
      parentId: null,
      rollbackRef: fields.rollbackRef,
      rollbackPayload: null,
      supersedesId: null,
      maxAttempts: context.maxAttempts,
      runAfter: null,
      requestedConcurrencyKey: "",
      requestedConcurrencyLimit: 0,
    },
    null,
    0,
  );
  const { decision } = proposal;
  const wasApproved = fields.statusThere === "approved" || fields.statusThere === "claimed";
  const trusted = wasApproved && context.trustApprovals;
  if (wasApproved && !trusted) notes.push("approval not trusted (no trust_approvals): imported as pending");
  if (fields.statusThere === "claimed") notes.push("was running in the other system: it runs again here");
  const status: Status = trusted ? "approved" : "pending";
  const approvalsRequired = trusted ? 0 : decision.approvalsRequired;
  const events: ImportEvent[] = [imported({})];
  if (fields.statusThere === "claimed") {
    events.push({
      event_type: "action_interrupted",
      actor,
      payload: {
        imported: true,
        reason: "was running in the other system when imported; nothing claimed there is trusted, so it runs again here",
      },
    });
  }
  // It enters this queue as a proposal would: approvers are notified of a
  // pending one (webhooks read action_enqueued), and readers of the log
  // find the policy's decision where they always do. Marked imported, so
  // that an export to the old layout leaves it out of history.log.
  events.push({
    event_type: "action_enqueued",
    actor,
    payload: {
      status,
      risk_level: riskLevel,
      approval_required: !trusted || fields.approvalRequired,
      priority: 0,
      chain_depth: 0,
      approvals_required: approvalsRequired,
      max_attempts: context.maxAttempts,
      imported: true,
      ...(trusted ? {} : { policy: decision.detail as JsonValue }),
    },
  });
  if (trusted) {
    events.push({
      event_type: "action_approved",
      actor,
      payload: { imported: true, reason: `approved in the other system; trusted by ${actor}` },
    });
  }
  return {
    ...own,
    status,
    approvalRequired: !trusted || fields.approvalRequired,
    approvedBy: trusted ? actor : null,
    approvedNow: trusted,
    approvalsRequired,
    requirements: trusted ? [] : decision.requirements,
    approvalTtlSeconds: trusted ? null : decision.approvalTtlSeconds,
    policyVersion: proposal.policyVersion,
    autonomousEligible: proposal.autonomousEligible,
    concurrencyKey: proposal.concurrencyKey,
    concurrencyLimit: proposal.concurrencyLimit,
    finishedAt: null,
    failureReason: null,
    resultRef: null,
    events,
    notes,
  };
}
