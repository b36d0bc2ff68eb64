// Between database rows and wire messages, in both directions, and the
// checks that belong to a conversion (an enum value outside the enum).
import { create } from "@bufbuild/protobuf";
import { type Timestamp, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Action, ActionStatus, type Claim, type Event, RiskLevel } from "../../gen/actionq/v1/action_pb.js";
import { type Pause, PauseKind, PauseSchema, type WatchEventsResponse, WatchEventsResponseSchema } from "../../gen/actionq/v1/action_queue_service_pb.js";
import { invalidField } from "../errors.js";
import { approvalsNeeded, requirementStates } from "../policy/requirements.js";
import type { PauseKind as PauseKindName, PauseRow, PauseScope } from "../store/pauses.js";
import type { RiskLevel as RiskName, Status } from "../domain/vocabulary.js";
import type { ActionRow, EventRow } from "../store/rows.js";
import * as check from "./validate.js";

const STATUS_TO_WIRE: Record<Status, ActionStatus> = {
  pending: ActionStatus.PENDING,
  approved: ActionStatus.APPROVED,
  claimed: ActionStatus.CLAIMED,
  completed: ActionStatus.COMPLETED,
  failed: ActionStatus.FAILED,
  rejected: ActionStatus.REJECTED,
  cancelled: ActionStatus.CANCELLED,
};

const WIRE_TO_STATUS = new Map<ActionStatus, Status>(Object.entries(STATUS_TO_WIRE).map(([name, value]) => [value, name as Status]));

const RISK_TO_WIRE: Record<RiskName, RiskLevel> = {
  safe: RiskLevel.SAFE,
  guarded: RiskLevel.GUARDED,
  dangerous: RiskLevel.DANGEROUS,
};

const WIRE_TO_RISK = new Map<RiskLevel, RiskName>(Object.entries(RISK_TO_WIRE).map(([name, value]) => [value, name as RiskName]));

export function statusToWire(status: Status): ActionStatus {
  return STATUS_TO_WIRE[status];
}

const PAUSE_TO_WIRE: Record<PauseKindName, PauseKind> = {
  all: PauseKind.ALL,
  action_type: PauseKind.ACTION_TYPE,
  project: PauseKind.PROJECT,
  auto_approval: PauseKind.AUTO_APPROVAL,
};
const WIRE_TO_PAUSE = new Map<PauseKind, PauseKindName>(Object.entries(PAUSE_TO_WIRE).map(([name, value]) => [value, name as PauseKindName]));

/** Checks a request's scope: a known kind, with a value exactly for the
 * kinds that name something. */
export function pauseScopeFromWire(scope: { kind: PauseKind; value: string } | undefined): PauseScope {
  const kind = scope && WIRE_TO_PAUSE.get(scope.kind);
  if (!kind) throw invalidField("scope.kind", "is required: PAUSE_KIND_ALL, PAUSE_KIND_ACTION_TYPE, PAUSE_KIND_PROJECT or PAUSE_KIND_AUTO_APPROVAL");
  const value = scope.value;
  if (kind === "all" || kind === "auto_approval") {
    if (value !== "") throw invalidField("scope.value", `must be empty for PAUSE_KIND_${kind.toUpperCase()}`);
    return { kind, value };
  }
  return { kind, value: check.name("scope.value", value) };
}

export function pauseToWire(row: PauseRow): Pause {
  return create(PauseSchema, {
    scope: { kind: PAUSE_TO_WIRE[row.kind], value: row.value },
    pausedBy: row.paused_by,
    reason: row.reason,
    createTime: timestampFromDate(row.created_at),
  });
}

/** undefined for values outside the enum (including UNSPECIFIED). */
export function statusFromWire(value: ActionStatus): Status | undefined {
  return WIRE_TO_STATUS.get(value);
}

/** null for UNSPECIFIED (the policy gives the type's level); undefined for
 * values outside the enum. */
export function riskFromWire(value: RiskLevel): RiskName | null | undefined {
  return value === RiskLevel.UNSPECIFIED ? null : WIRE_TO_RISK.get(value);
}

// The converters below run for every action on every call and stream
// message. They write the messages as typed literals: create() fills a
// zero message field by field through reflection first, which cost more
// than encoding them. The types make every field of Action and Claim
// required here, so a field added to the contract cannot be missed.

function time(date: Date | null): Timestamp | undefined {
  if (!date) return undefined;
  const ms = date.getTime();
  const seconds = Math.floor(ms / 1000);
  return { $typeName: "google.protobuf.Timestamp", seconds: BigInt(seconds), nanos: (ms - seconds * 1000) * 1_000_000 };
}

export function actionToWire(row: ActionRow): Action {
  return {
    $typeName: "actionq.v1.Action",
    id: BigInt(row.id),
    actionType: row.action_type,
    project: row.project,
    targetRef: row.target_ref,
    sourceRefs: row.source_refs,
    payload: row.payload,
    priority: row.priority,
    status: STATUS_TO_WIRE[row.status],
    riskLevel: RISK_TO_WIRE[row.risk_level],
    confidence: row.confidence ?? undefined,
    approvalRequired: row.approval_required,
    createdBy: row.created_by,
    correlationId: row.correlation_id,
    node: row.node,
    service: row.service,
    parentId: row.parent_id === null ? 0n : BigInt(row.parent_id),
    chainDepth: row.chain_depth,
    claimedBy: row.claimed_by ?? "",
    claimDeadline: time(row.claim_deadline),
    attempt: row.attempt,
    resultRef: row.result_ref ?? "",
    failureReason: row.failure_reason ?? "",
    rollbackRef: row.rollback_ref,
    createTime: time(row.created_at),
    updateTime: time(row.updated_at),
    finishTime: time(row.finished_at),
    approvedBy: row.approved_by ?? "",
    approveTime: time(row.approved_at),
    idempotencyKey: row.idempotency_key ?? "",
    claimTime: time(row.claimed_at),
    claimAcked: row.status === "claimed" && row.acked_at !== null,
    autonomousEligible: row.autonomous_eligible,
    approvalsRequired: row.approvals_required,
    approvers: row.approvers,
    approvalExpireTime: time(row.approval_expires_at),
    policyVersion: row.policy_version,
    supersedesId: row.supersedes_id === null ? 0n : BigInt(row.supersedes_id),
    rollbackPayload: row.rollback_payload ?? undefined,
    rollbackOfId: row.rollback_of === null ? 0n : BigInt(row.rollback_of),
    runAfter: row.status === "approved" || row.status === "pending" ? time(row.run_after) : undefined,
    maxAttempts: row.max_attempts,
    failures: row.failures,
    lostDeliveries: row.lost_deliveries,
    lastError: row.last_error ?? "",
    concurrencyKey: row.concurrency_key ?? "",
    concurrencyLimit: row.concurrency_limit ?? 0,
    approvalRequirements: requirementStates(row).map((r) => ({
      $typeName: "actionq.v1.ApprovalRequirement",
      group: r.group,
      count: r.count,
      satisfiedBy: r.satisfiedBy,
      source: r.from,
    })),
    approvalsNeeded: approvalsNeeded(row),
    breakGlassBy: row.break_glass_by ?? "",
    breakGlassReason: row.break_glass_reason ?? "",
    breakGlassTime: time(row.break_glass_at ?? null),
    scheduleId: row.schedule_id ?? "",
    scheduleTickTime: time(row.schedule_tick_time ?? null),
    traceContext: row.trace_context
      ? { $typeName: "actionq.v1.TraceContext", traceparent: row.trace_context.traceparent, tracestate: row.trace_context.tracestate }
      : undefined,
    externalId: row.external_id,
  };
}

export function claimToWire(row: ActionRow): Claim {
  return {
    $typeName: "actionq.v1.Claim",
    action: actionToWire(row),
    claimToken: row.claim_token ?? "",
    ackDeadline: time(row.ack_deadline),
  };
}

/** Every watcher of the live tail is handed the same row objects; each
 * becomes one response message, however many streams carry it. It is
 * frozen: sharing it is safe, and the direct gRPC path encodes a frozen
 * message once for all of its streams. */
const watchResponses = new WeakMap<EventRow, WatchEventsResponse>();

export function sharedWatchResponse(row: EventRow): WatchEventsResponse {
  let wire = watchResponses.get(row);
  if (!wire) {
    wire = Object.freeze(create(WatchEventsResponseSchema, { kind: { case: "event", value: sharedEvent(row) }, cursor: BigInt(row.id) }));
    watchResponses.set(row, wire);
  }
  return wire;
}

/** The one wire Event of a live row, whether it goes alone or in batches. */
const wireEvents = new WeakMap<EventRow, Event>();

function sharedEvent(row: EventRow): Event {
  let event = wireEvents.get(row);
  if (!event) {
    event = Object.freeze(eventToWire(row));
    wireEvents.set(row, event);
  }
  return event;
}

/** A batch of events read for one watcher alone (a replayed page). */
export function watchBatchResponse(rows: EventRow[]): WatchEventsResponse {
  return batchMessage(rows.map(eventToWire), rows);
}

/** Batches of the live tail, by their first row: watchers with the same
 * filter and batch size that are caught up form the very same batch from
 * the same rows, and then share one message (and one encoding). Only a few
 * different batches per first row are kept, so that many unlike watchers
 * cost no long search. */
const batchResponses = new WeakMap<EventRow, { rows: EventRow[]; wire: WatchEventsResponse }[]>();
const SHARED_BATCHES_PER_ROW = 8;

export function sharedWatchBatchResponse(rows: EventRow[]): WatchEventsResponse {
  const first = rows[0]!;
  const made = batchResponses.get(first) ?? [];
  const same = made.find((batch) => batch.rows.length === rows.length && batch.rows.every((row, index) => row === rows[index]));
  if (same) return same.wire;
  const wire = Object.freeze(batchMessage(rows.map(sharedEvent), rows));
  if (made.length === 0) batchResponses.set(first, made);
  if (made.length < SHARED_BATCHES_PER_ROW) made.push({ rows, wire });
  return wire;
}

function batchMessage(events: Event[], rows: EventRow[]): WatchEventsResponse {
  return {
    $typeName: "actionq.v1.WatchEventsResponse",
    kind: { case: "events", value: { $typeName: "actionq.v1.EventBatch", events } },
    // The last event's id: resuming from it repeats nothing and skips nothing.
    cursor: BigInt(rows[rows.length - 1]!.id),
  };
}

export function eventToWire(row: EventRow): Event {
  return {
    $typeName: "actionq.v1.Event",
    id: BigInt(row.id),
    actionId: row.action_id === null ? 0n : BigInt(row.action_id),
    eventType: row.event_type,
    actor: row.actor,
    payload: row.payload,
    createTime: time(row.created_at),
  };
}
