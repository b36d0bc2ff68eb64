// An action's event log read for a reviewer: each event in words with its
// details as plain text, the policy's decision, the approvals so far and
// the claims a worker took. The keys read here are the ones the server
// writes (src/store/action-queries.ts, src/policy/approval.ts); anything
// else an event carries (a worker's progress note) is shown key by key.
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { Event } from "../../../gen/actionq/v1/action_pb.js";

/** One detail of an event, as a label and text. */
export interface Fact {
  label: string;
  value: string;
}

const EVENT_WORDS: Record<string, string> = {
  action_enqueued: "Proposed",
  approval_granted: "Approval given",
  action_approved: "Approved",
  action_rejected: "Rejected",
  action_claimed: "Claimed by a worker",
  claim_extended: "Lease extended",
  claim_released: "Claim released",
  claim_timed_out: "Lease ran out",
  action_progress: "Progress",
  action_completed: "Completed",
  action_failed: "Failed",
  action_retry_scheduled: "Failed; retry scheduled",
  action_retried: "Sent back for another attempt",
  action_cancelled: "Cancelled",
  schedule_created: "Schedule created",
  schedule_updated: "Schedule changed",
  schedule_paused: "Schedule paused",
  schedule_resumed: "Schedule resumed",
  schedule_deleted: "Schedule deleted",
  schedule_tick_skipped: "Ticks skipped",
  action_imported: "Imported from another system",
  action_interrupted: "Was running in the other system; runs again here",
};

/** The event type in words; an unknown type as it is written. */
export function eventWords(eventType: string): string {
  return EVENT_WORDS[eventType] ?? eventType.replaceAll("_", " ");
}

export function isObject(value: JsonValue | undefined): value is JsonObject {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** A JSON value as one line of text; objects and lists as compact JSON. */
export function text(value: JsonValue | undefined): string | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return JSON.stringify(value);
}

/** A timestamp from an event payload (the server writes RFC 3339 text) as an instant to the second. */
export function instantText(value: JsonValue | undefined): string | undefined {
  const raw = text(value);
  if (!raw) return undefined;
  const date = new Date(raw);
  return Number.isNaN(date.getTime()) ? raw : date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function fact(label: string, value: string | undefined): Fact[] {
  return value === undefined ? [] : [{ label, value }];
}

/** What the policy decided, as it wrote it on `action_enqueued` (under
 * `policy`) or on a policy's `action_approved`. */
export interface PolicyDecision {
  mode?: string;
  version?: string;
  /** "approved" or "needs_approval". */
  decision?: string;
  rule?: string;
  reason?: string;
  riskLevel?: string;
  typeRiskLevel?: string;
  approvalsRequired?: string;
  autonomousEligible?: boolean;
}

export function policyDecision(detail: JsonObject): PolicyDecision {
  return {
    mode: text(detail.mode),
    version: text(detail.policy_version),
    decision: text(detail.decision),
    rule: text(detail.rule),
    reason: text(detail.reason),
    riskLevel: text(detail.risk_level),
    typeRiskLevel: text(detail.type_risk_level),
    approvalsRequired: text(detail.approvals_required),
    autonomousEligible: typeof detail.autonomous_eligible === "boolean" ? detail.autonomous_eligible : undefined,
  };
}

/** The decision taken when the action was proposed, if the log has it. */
export function decisionOf(events: readonly Event[]): PolicyDecision | undefined {
  const enqueued = events.find((event) => event.eventType === "action_enqueued");
  const detail = enqueued?.payload?.policy;
  return isObject(detail) ? policyDecision(detail) : undefined;
}

export function decisionWords(decision: string | undefined): string {
  if (decision === "approved") return "approved without a human";
  if (decision === "needs_approval") return "needs a human approval";
  return decision ?? "unknown";
}

/** A policy's own approval carries its decision, not a person's note. */
function isPolicyApproval(event: Event): boolean {
  return event.eventType === "action_approved" && event.payload !== undefined && "decision" in event.payload;
}

export interface Approval {
  eventId: bigint;
  who: string;
  at: Timestamp | undefined;
  note: string | undefined;
  /** True for the approval that met the quorum. */
  final: boolean;
  /** The approver group requirements it counted toward, such as "group
   * sre-leads (1 of 1)"; undefined when only toward the quorum. */
  satisfies: string | undefined;
}

/** The people's approvals, oldest first. */
export function approvalsOf(events: readonly Event[]): Approval[] {
  return events
    .filter((event) => event.eventType === "approval_granted" || (event.eventType === "action_approved" && !isPolicyApproval(event)))
    .map((event) => ({
      eventId: event.id,
      who: event.actor,
      at: event.createTime,
      note: text(event.payload?.note),
      final: event.eventType === "action_approved",
      satisfies: text(event.payload?.satisfies),
    }));
}

/** The action that replaced this one, from its cancellation event. */
export function supersededBy(events: readonly Event[]): bigint | undefined {
  for (const event of events) {
    if (event.eventType !== "action_cancelled") continue;
    const id = text(event.payload?.superseded_by);
    if (id && /^\d+$/.test(id) && id !== "0") return BigInt(id);
  }
  return undefined;
}

function policyFacts(detail: JsonObject): Fact[] {
  const d = policyDecision(detail);
  return [
    ...fact("decision", d.decision ? decisionWords(d.decision) : undefined),
    ...fact("policy", [d.mode && `mode ${d.mode}`, d.version].filter(Boolean).join(", ") || undefined),
    ...fact("rule", d.rule),
    ...fact("why", d.reason),
    ...fact("approvals required", d.approvalsRequired !== "0" ? d.approvalsRequired : undefined),
  ];
}

function quorumFacts(payload: JsonObject): Fact[] {
  const approvers = Array.isArray(payload.approvers) ? payload.approvers.map((a) => text(a) ?? "?") : undefined;
  const required = text(payload.approvals_required);
  if (!approvers || !required) return [];
  return [{ label: "quorum", value: `${approvers.length} of ${required}` }];
}

/** The details of one event worth reading, in the order a person asks for them. */
export function eventFacts(event: Event): Fact[] {
  const payload = event.payload ?? {};
  switch (event.eventType) {
    case "action_enqueued":
      return [
        ...fact("note", text(payload.note)),
        ...(isObject(payload.policy) ? policyFacts(payload.policy) : []),
        ...fact("rolls back", nonZero(payload.rollback_of) ? `action #${text(payload.rollback_of)}` : undefined),
        ...fact("supersedes", nonZero(payload.supersedes_id) ? `action #${text(payload.supersedes_id)}` : undefined),
        ...fact("runs after", instantText(payload.run_after)),
      ];
    case "action_approved":
      if (isPolicyApproval(event)) return policyFacts(payload);
      return [...fact("note", text(payload.note)), ...quorumFacts(payload), ...fact("satisfies", text(payload.satisfies))];
    case "approval_granted":
      return [...fact("note", text(payload.note)), ...quorumFacts(payload), ...fact("satisfies", text(payload.satisfies))];
    case "action_claimed":
      return [
        ...fact("attempt", text(payload.attempt)),
        ...fact("lease until", instantText(payload.claim_deadline)),
        ...fact("delivery", payload.streamed === true ? "streamed" : undefined),
      ];
    case "claim_extended":
      return [...fact("attempt", text(payload.attempt)), ...fact("lease until", instantText(payload.claim_deadline))];
    case "claim_timed_out":
      return [
        ...fact("worker", text(payload.worker)),
        ...fact("attempt", text(payload.attempt)),
        ...fact("lease ran out at", instantText(payload.claim_deadline)),
      ];
    case "claim_released":
      return [...fact("worker", text(payload.worker)), ...fact("attempt", text(payload.attempt)), ...fact("why", text(payload.reason))];
    case "action_completed":
      return [...fact("result", text(payload.result_ref)), ...fact("attempt", text(payload.attempt))];
    case "action_failed":
    case "action_retry_scheduled":
      return [
        ...fact("reason", text(payload.reason)),
        ...fact("attempt", text(payload.attempt)),
        ...fact("failures", payload.failures !== undefined ? `${text(payload.failures)} of ${text(payload.max_attempts) ?? "?"}` : undefined),
        ...fact("next try after", instantText(payload.run_after)),
      ];
    case "action_retried":
      return [
        ...fact("reason", text(payload.reason)),
        ...fact("it had failed with", text(payload.failure_reason)),
        ...fact("attempts granted", text(payload.additional_attempts)),
      ];
    case "action_rejected":
    case "action_cancelled":
      return [
        ...fact("reason", text(payload.reason)),
        ...fact("superseded by", nonZero(payload.superseded_by) ? `action #${text(payload.superseded_by)}` : undefined),
        ...fact("was", text(payload.from_status)),
        ...fact("worker", text(payload.worker)),
        ...fact("approval expired at", instantText(payload.approval_expired_at)),
      ];
    case "action_progress": {
      // A worker's own note: step and message first, then whatever else it wrote.
      const { step, message, attempt, ...rest } = payload;
      return [
        ...fact("step", text(step)),
        ...fact("message", text(message)),
        ...fact("attempt", text(attempt)),
        ...Object.entries(rest).flatMap(([key, value]) => fact(key, text(value))),
      ];
    }
    default:
      if (event.eventType.startsWith("schedule_")) return scheduleFacts(payload);
      return Object.entries(payload).flatMap(([key, value]) => fact(key, text(value)));
  }
}

/** A schedule's own event, shown on that schedule's page: its id goes
 * without saying; times read as instants. */
function scheduleFacts(payload: JsonObject): Fact[] {
  return Object.entries(payload)
    .filter(([key]) => key !== "schedule_id")
    .flatMap(([key, value]) => fact(key.replaceAll("_", " "), /(_time|^from|^before)$/.test(key) ? instantText(value) : text(value)));
}

function nonZero(value: JsonValue | undefined): boolean {
  const raw = text(value);
  return raw !== undefined && raw !== "0";
}
