// `actionctl history`: one action's event log told for a person. Each event
// is one line with the facts an operator asks about afterwards: which policy
// decided and why, who approved towards which quorum, which attempt ran on
// which worker, what the executor reported, how it ended.
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { type Action, ActionStatus, type Event } from "../../gen/actionq/v1/action_pb.js";

/** The action and its status now, then one line per event, oldest first. */
export function historyLines(action: Action, events: Event[]): string[] {
  const header = [
    action.actionType,
    action.targetRef && `on ${action.targetRef}`,
    action.project && `in ${action.project}`,
    action.createdBy && `proposed by ${action.createdBy}`,
  ];
  const typeWidth = Math.max(0, ...events.map((event) => event.eventType.length));
  const actorWidth = Math.max(0, ...events.map((event) => event.actor.length));
  const lines = events.map((event) =>
    [time(event.createTime), event.eventType.padEnd(typeWidth), event.actor.padEnd(actorWidth), eventFacts(event, action)].join("  ").trimEnd(),
  );
  return [`action ${action.id}: ${header.filter(Boolean).join(" ")}`, `status: ${statusFacts(action)}`, ...lines];
}

/** An event's facts on one line; with its action, the lineage fixed at
 * enqueue too. */
export function eventFacts(event: Event, action?: Action): string {
  const payload = event.payload ?? {};
  switch (event.eventType) {
    case "action_enqueued":
      // The lineage is the action's own, fixed at enqueue.
      return facts(
        isObject(payload.policy) ? policyFacts(payload.policy) : undefined,
        action && action.priority !== 0 && `priority ${action.priority}`,
        action && (action.rollbackOfId !== 0n ? `rolls back action ${action.rollbackOfId}` : action.parentId !== 0n && `child of action ${action.parentId}`),
        action && action.supersedesId !== 0n && `supersedes action ${action.supersedesId}`,
        labelled("note", payload.note),
        labelled("reason", payload.reason),
      );
    case "action_approved":
      // Approved by the policy: the payload is the policy's decision.
      return "decision" in payload
        ? policyFacts(payload)
        : facts(quorumFacts("approved", payload), labelled("satisfies", payload.satisfies), labelled("note", payload.note));
    case "approval_granted":
      return facts(quorumFacts("approval", payload), labelled("satisfies", payload.satisfies), labelled("note", payload.note));
    case "action_claimed":
      return facts(
        attemptFacts(event),
        payload.claim_deadline !== undefined && `lease until ${instant(payload.claim_deadline)}`,
        payload.streamed === true && "streamed",
      );
    case "claim_extended":
      return facts(attemptFacts(event), payload.claim_deadline !== undefined && `lease until ${instant(payload.claim_deadline)}`);
    case "claim_timed_out":
      return facts(attemptFacts(event), payload.claim_deadline !== undefined && `lease ran out at ${instant(payload.claim_deadline)}`);
    case "claim_released":
      return facts(attemptFacts(event), labelled("released", payload.reason));
    case "action_completed":
      return facts(labelled("result", payload.result_ref), nonZero(payload.attempt) && `attempt ${text(payload.attempt)}`);
    case "action_failed":
      return facts(labelled("failed", payload.reason), nonZero(payload.attempt) && `attempt ${text(payload.attempt)}`);
    case "action_rejected":
    case "action_cancelled":
      return facts(
        labelled("reason", payload.reason),
        // The server's reason already names the new action; say it only when it does not.
        nonZero(payload.superseded_by) &&
          !text(payload.reason)?.includes(`${text(payload.superseded_by)}`) &&
          `superseded by action ${text(payload.superseded_by)}`,
        labelled("was", payload.from_status),
        labelled("worker", payload.worker),
      );
    case "break_glass":
      return facts(
        labelled("reason", payload.reason),
        Array.isArray(payload.closed_windows) && payload.closed_windows.length > 0 && `inside closed window(s) ${payload.closed_windows.join(", ")}`,
      );
    case "action_progress": {
      // The executor's step as it wrote it; the server adds the attempt.
      const { attempt, ...step } = payload;
      return facts(nonZero(attempt) && `attempt ${text(attempt)}`, keyValues(step));
    }
    default:
      // Coordinator events and whatever else the log holds: every field, as
      // the executor or the emitter wrote it.
      return keyValues(payload);
  }
}

/** {mode, policy_version, decision, rule, reason, risk_level, type_risk_level, approvals_required}. */
function policyFacts(policy: JsonObject): string {
  const decision = policy.decision === "approved" ? "approved" : policy.decision === "needs_approval" ? "needs approval" : text(policy.decision);
  const version = text(policy.policy_version);
  const risk = riskName(policy.risk_level);
  const typeRisk = riskName(policy.type_risk_level);
  return facts(
    [`policy ${text(policy.mode) ?? "?"}${version ? ` (${version})` : ""}`, decision].filter(Boolean).join(": "),
    labelled("rule", policy.rule),
    labelled("why", policy.reason),
    risk && `risk ${risk}${typeRisk && typeRisk !== risk ? ` (type ${typeRisk})` : ""}`,
    nonZero(policy.approvals_required) && `${text(policy.approvals_required)} approval(s) required`,
    Array.isArray(policy.approval_requirements) &&
      `from groups ${policy.approval_requirements
        .map((r) => (r && typeof r === "object" && !Array.isArray(r) ? `${text(r.count) ?? "?"} ${text(r.group) ?? "?"}` : "?"))
        .join(", ")}`,
  );
}

/** "approval 1 of 2 (human:bob)" from {approvers, approvals_required}. */
function quorumFacts(label: string, payload: JsonObject): string | undefined {
  const approvers = Array.isArray(payload.approvers) ? payload.approvers.map((approver) => text(approver) ?? "?") : undefined;
  const required = text(payload.approvals_required);
  if (!approvers && !required) return undefined;
  const count = approvers ? `${approvers.length}` : "?";
  return `${label} ${count} of ${required ?? "?"}${approvers?.length ? ` (${approvers.join(", ")})` : ""}`;
}

function attemptFacts(event: Event): string {
  const payload = event.payload ?? {};
  const worker = text(payload.worker) ?? event.actor;
  return facts(nonZero(payload.attempt) && `attempt ${text(payload.attempt)}`, worker && `worker ${worker}`);
}

function statusFacts(action: Action): string {
  const name = ActionStatus[action.status] ?? `${action.status}`;
  switch (action.status) {
    case ActionStatus.PENDING:
      return facts(
        name,
        `approvals ${action.approvers.length} of ${action.approvalsRequired}${action.approvers.length ? ` (${action.approvers.join(", ")})` : ""}`,
        action.approvalRequirements.length > 0 && action.approvalsNeeded,
        action.approvalExpireTime && `expires ${time(action.approvalExpireTime)}`,
      );
    case ActionStatus.APPROVED:
      return facts(name, labelled("approved by", action.approvedBy), "waiting for a worker");
    case ActionStatus.CLAIMED:
      return facts(
        name,
        `attempt ${action.attempt}`,
        labelled("worker", action.claimedBy),
        action.claimDeadline && `lease until ${time(action.claimDeadline)}`,
      );
    case ActionStatus.COMPLETED:
      return facts(name, labelled("result", action.resultRef));
    default:
      return facts(name, labelled("reason", action.failureReason));
  }
}

/** The truthy parts, joined for reading. */
function facts(...parts: (string | false | undefined | null | 0)[]): string {
  return parts.filter((part): part is string => typeof part === "string" && part !== "").join("; ");
}

function labelled(label: string, value: JsonValue | undefined): string | undefined {
  const shown = text(value);
  return shown ? `${label} ${shown}` : undefined;
}

function keyValues(payload: JsonObject): string {
  return Object.entries(payload)
    .filter(([, value]) => value !== null)
    .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)
    .join(" ");
}

/** Scalars as text; nothing for null, missing, objects and lists. */
function text(value: JsonValue | undefined): string | undefined {
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return `${value}`;
  return undefined;
}

/** `guarded`, whether written as that, `GUARDED` or `RISK_LEVEL_GUARDED`. */
function riskName(value: JsonValue | undefined): string | undefined {
  return text(value)
    ?.replace(/^RISK_LEVEL_/i, "")
    .toLowerCase();
}

/** Ids and counts arrive as numbers or int64 strings; 0 means none. */
function nonZero(value: JsonValue | undefined): boolean {
  const shown = text(value);
  return shown !== undefined && shown !== "" && shown !== "0" && shown !== "false";
}

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** To the millisecond, truncated as Date.parse truncates the proto JSON form
 * (timestampDate rounds), so both read the same. */
function time(timestamp: Timestamp | undefined): string {
  return timestamp ? new Date(Number(timestamp.seconds) * 1000 + Math.floor(timestamp.nanos / 1_000_000)).toISOString() : "-".padEnd(24);
}

/** A time written by PostgreSQL into a payload, in the same form as the
 * event times. */
function instant(value: JsonValue | undefined): string {
  const shown = text(value) ?? "?";
  const parsed = Date.parse(shown);
  return Number.isNaN(parsed) ? shown : new Date(parsed).toISOString();
}
