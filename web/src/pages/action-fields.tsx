// Every field of an action, as the server holds it, for the reader who
// needs the one the summary left out.
import type { ReactNode } from "react";
import type { Action } from "../../../gen/actionq/v1/action_pb.js";
import { RiskBadge, StatusBadge } from "../components/badges.js";
import { Instant } from "../components/timeline.js";

function Value({ children, mono }: { children: ReactNode; mono?: boolean }) {
  if (children === "" || children === undefined || children === null) return <dd className="muted">—</dd>;
  return <dd className={mono ? "mono" : undefined}>{children}</dd>;
}

export function ActionFields({ action }: { action: Action }) {
  // biome-ignore-start lint/correctness/useJsxKeyInIterable: each row is a [label, value] tuple, not a list of siblings; a value renders alone inside its row, which is keyed by label
  const rows: [string, ReactNode, boolean?][] = [
    ["Id", action.id.toString(), true],
    ["Type", action.actionType, true],
    ["Status", <StatusBadge status={action.status} />],
    ["Risk", <RiskBadge risk={action.riskLevel} />],
    ["Confidence", action.confidence !== undefined ? action.confidence.toFixed(2) : ""],
    ["Project", action.project, true],
    ["Target", action.targetRef, true],
    ["Node", action.node, true],
    ["Service", action.service, true],
    ["Producer", action.createdBy, true],
    ["Sources", action.sourceRefs.join(", "), true],
    ["Correlation id", action.correlationId, true],
    ["Priority", String(action.priority)],
    ["Concurrency key", action.concurrencyKey && `${action.concurrencyKey} (at most ${action.concurrencyLimit} at a time)`, true],
    ["Approval required", action.approvalRequired ? "yes" : "no"],
    [
      "Approvals",
      action.approvalsRequired > 0
        ? `${action.approvers.length} of ${action.approvalsRequired}${action.approvers.length ? ` (${action.approvers.join(", ")})` : ""}`
        : "",
    ],
    ["Approved by", action.approvedBy, true],
    ["Approved", action.approveTime && <Instant at={action.approveTime} />],
    ["Approval expires", action.approvalExpireTime && <Instant at={action.approvalExpireTime} />],
    ["Policy would run it alone", action.autonomousEligible ? "yes" : "no"],
    ["Policy version", action.policyVersion, true],
    ["Created", <Instant at={action.createTime} />],
    ["Updated", <Instant at={action.updateTime} />],
    ["Finished", action.finishTime && <Instant at={action.finishTime} />],
    ["Runs after", action.runAfter && <Instant at={action.runAfter} />],
    ["Attempt", String(action.attempt)],
    ["Max attempts", String(action.maxAttempts)],
    ["Failures", String(action.failures)],
    ["Lost deliveries", String(action.lostDeliveries)],
    ["Claimed by", action.claimedBy, true],
    ["Claimed", action.claimTime && <Instant at={action.claimTime} />],
    ["Claim deadline", action.claimDeadline && <Instant at={action.claimDeadline} />],
    ["Claim acknowledged", action.claimTime ? (action.claimAcked ? "yes" : "not yet") : ""],
    ["Result", action.resultRef, true],
    ["Failure reason", action.failureReason],
    ["Last error", action.lastError],
    ["Rollback", action.rollbackRef, true],
    ["Chain depth", String(action.chainDepth)],
    ["Idempotency key", action.idempotencyKey, true],
    // Its name in the filesystem layout (actionctl export), or the id it
    // had in the system it was imported from.
    ["External id", action.externalId, true],
    ["Schedule", action.scheduleId, true],
    ["Schedule tick", action.scheduleTickTime && <Instant at={action.scheduleTickTime} />],
  ];
  // biome-ignore-end lint/correctness/useJsxKeyInIterable: end of the rows
  return (
    <dl className="fields all-fields">
      {rows.map(([label, value, mono]) => (
        <div key={label} className="field-row">
          <dt>{label}</dt>
          <Value mono={mono}>{value}</Value>
        </div>
      ))}
    </dl>
  );
}
