// Between database rows and wire messages, in both directions, and nothing
// else.
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Action, ActionSchema, ActionStatus, type Claim, ClaimSchema, type Event, EventSchema, RiskLevel } from "../../gen/actionq/v1/action_pb.js";
import type { ActionRow, EventRow, RiskLevel as RiskName, Status } from "../store/rows.js";

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

/** undefined for values outside the enum (including UNSPECIFIED). */
export function statusFromWire(value: ActionStatus): Status | undefined {
  return WIRE_TO_STATUS.get(value);
}

/** UNSPECIFIED means SAFE; undefined for values outside the enum. */
export function riskFromWire(value: RiskLevel): RiskName | undefined {
  return value === RiskLevel.UNSPECIFIED ? "safe" : WIRE_TO_RISK.get(value);
}

const time = (date: Date | null) => (date ? timestampFromDate(date) : undefined);

export function actionToWire(row: ActionRow): Action {
  return create(ActionSchema, {
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
  });
}

export function claimToWire(row: ActionRow): Claim {
  return create(ClaimSchema, {
    action: actionToWire(row),
    claimToken: row.claim_token ?? "",
    ackDeadline: time(row.ack_deadline),
  });
}

export function eventToWire(row: EventRow): Event {
  return create(EventSchema, {
    id: BigInt(row.id),
    actionId: row.action_id === null ? 0n : BigInt(row.action_id),
    eventType: row.event_type,
    actor: row.actor,
    payload: row.payload,
    createTime: timestampFromDate(row.created_at),
  });
}
