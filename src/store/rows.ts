// The shapes rows come back in, and the column lists that produce them.
import type { JsonObject } from "@bufbuild/protobuf";

// The domain's words live in src/domain/vocabulary.ts; the store speaks them.
export { COORDINATOR_EVENT_TYPES, EVENT_TYPES, type EventType, RISK_LEVELS, type RiskLevel, STATUSES, type Status } from "../domain/vocabulary.js";
import type { RiskLevel, Status } from "../domain/vocabulary.js";

/** A W3C trace context as kept with an action: the traceparent and
 * tracestate headers of the call that enqueued it. */
export interface TraceContext {
  traceparent: string;
  tracestate: string;
}

/** An action as the store returns it. bigint columns stay strings (exact). */
export interface ActionRow {
  id: string;
  action_type: string;
  project: string;
  target_ref: string;
  source_refs: string[];
  payload: JsonObject;
  priority: number;
  status: Status;
  risk_level: RiskLevel;
  confidence: number | null;
  approval_required: boolean;
  created_by: string;
  correlation_id: string;
  node: string;
  service: string;
  parent_id: string | null;
  chain_depth: number;
  rollback_ref: string;
  idempotency_key: string | null;
  request_digest: string | null;
  approved_by: string | null;
  approved_at: Date | null;
  claimed_by: string | null;
  claim_token: string | null;
  claim_session: string | null;
  claimed_at: Date | null;
  claim_deadline: Date | null;
  lease_ms: number | null;
  ack_deadline: Date | null;
  acked_at: Date | null;
  attempt: number;
  result_ref: string | null;
  failure_reason: string | null;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
  autonomous_eligible: boolean;
  approvals_required: number;
  approvers: string[];
  approval_expires_at: Date | null;
  policy_version: string;
  supersedes_id: string | null;
  rollback_payload: JsonObject | null;
  rollback_of: string | null;
  max_attempts: number;
  failures: number;
  lost_deliveries: number;
  last_error: string | null;
  retried_token: string | null;
  run_after: Date | null;
  deferred: boolean;
  concurrency_key: string | null;
  concurrency_limit: number | null;
  /** Groups the approvers must include (migration 010). */
  approval_requirements: { group: string; count: number; from: string }[];
  /** Each approver's groups when it approved. */
  approver_groups: Record<string, string[]>;
  /** Who broke glass on it, why and when; null unless an operator did. */
  break_glass_by: string | null;
  break_glass_reason: string | null;
  break_glass_at: Date | null;
  /** The schedule whose tick enqueued it (migration 011): its internal key,
   * its id as it was, and the nominal tick time. Null otherwise. */
  schedule_key: string | null;
  schedule_id: string | null;
  schedule_tick_time: Date | null;
  /** The producer's W3C trace context (migration 013); null when none. */
  trace_context: TraceContext | null;
  /** Its id outside this deployment (migration 014): kept from the system
   * an import brought it from, else derived from this deployment and id. */
  external_id: string;
  /** Only from a completion: when the claim that completed began. */
  claimed_since?: Date | null;
}

export interface EventRow {
  id: string;
  action_id: string | null;
  event_type: string;
  actor: string;
  payload: JsonObject;
  created_at: Date;
}

const ACTION_FIELDS = [
  "id",
  "action_type",
  "project",
  "target_ref",
  "source_refs",
  "payload",
  "priority",
  "status",
  "risk_level",
  "confidence",
  "approval_required",
  "created_by",
  "correlation_id",
  "node",
  "service",
  "parent_id",
  "chain_depth",
  "rollback_ref",
  "idempotency_key",
  "request_digest",
  "approved_by",
  "approved_at",
  "claimed_by",
  "claim_token",
  "claim_session",
  "claimed_at",
  "claim_deadline",
  "ack_deadline",
  "acked_at",
  "attempt",
  "result_ref",
  "failure_reason",
  "created_at",
  "updated_at",
  "finished_at",
  "autonomous_eligible",
  "approvals_required",
  "approvers",
  "approval_expires_at",
  "policy_version",
  "supersedes_id",
  "rollback_payload",
  "rollback_of",
  "max_attempts",
  "failures",
  "lost_deliveries",
  "last_error",
  "retried_token",
  "run_after",
  "deferred",
  "concurrency_key",
  "concurrency_limit",
  "approval_requirements",
  "approver_groups",
  "break_glass_by",
  "break_glass_reason",
  "break_glass_at",
  "schedule_key",
  "schedule_id",
  "schedule_tick_time",
  "trace_context",
];

/** The SELECT list producing an ActionRow from a relation aliased `alias`. */
export function actionColumns(alias: string): string {
  return [
    ...ACTION_FIELDS.map((field) => `${alias}.${field}`),
    `(extract(epoch FROM ${alias}.lease) * 1000)::float8 AS lease_ms`,
    // Native actions store none: theirs is derived, by an inlined SQL
    // expression, so that only the deployment knows its tag.
    `coalesce(${alias}.external_id, /*schema*/derived_external_id(${alias}.id)) AS external_id`,
  ].join(", ");
}

export function eventColumns(alias: string): string {
  return ["id", "action_id", "event_type", "actor", "payload", "created_at"].map((field) => `${alias}.${field}`).join(", ");
}
