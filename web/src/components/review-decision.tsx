// The review at the top of an action's page: where it stands (status,
// quorum, expiry), what the policy decided and why, and who approved it so
// far with their notes.
import type { Action, Event } from "../../../gen/actionq/v1/action_pb.js";
import { ActionStatus } from "../../../gen/actionq/v1/action_pb.js";
import { isoTime, relative, toDate } from "../format.js";
import { Instant } from "./timeline.js";
import { approvalsOf, decisionOf, decisionWords } from "./timeline-facts.js";

const SOON_MS = 60 * 60 * 1000;

/** "expires in 3h", "expired 5m ago", marked when soon or past. */
export function ExpiryText({ action, now = Date.now() }: { action: Action; now?: number }) {
  const at = toDate(action.approvalExpireTime);
  if (!at || action.status !== ActionStatus.PENDING) return <span className="muted">—</span>;
  const left = at.getTime() - now;
  const iso = isoTime(at);
  if (left <= 0)
    return (
      <time dateTime={iso} title={iso} className="expiry expiry-past">
        expired {relative(at, now)}
      </time>
    );
  return (
    <time dateTime={iso} title={iso} className={left < SOON_MS ? "expiry expiry-soon" : "expiry"}>
      {relative(at, now)}
      {left < SOON_MS && <span> (soon)</span>}
    </time>
  );
}

/** "1 of 2" with a bar; the text is what assistive technology reads. */
export function Quorum({ approvers, required }: { approvers: number; required: number }) {
  if (required <= 0) return <span className="muted">—</span>;
  const shown = Math.min(approvers, required);
  return (
    <span className="quorum">
      <span className="quorum-pips" aria-hidden="true">
        {Array.from({ length: required }, (_, index) => (
          // biome-ignore lint/suspicious/noArrayIndexKey: a pip is a position in a bar of fixed length; the position is its identity and nothing reorders
          <span key={index} className={index < shown ? "pip pip-on" : "pip"} />
        ))}
      </span>
      <span>
        {approvers} of {required}
      </span>
    </span>
  );
}

/** The approver groups the policy required at enqueue, who met each so
 * far, and what is still open. */
export function GroupRequirements({ action }: { action: Action }) {
  return (
    <div className="group-requirements">
      <ul className="requirements">
        {action.approvalRequirements.map((requirement) => (
          <li key={requirement.group}>
            {requirement.count} from group <span className="mono">{requirement.group}</span>:{" "}
            {requirement.satisfiedBy.length >= requirement.count ? "met" : "open"}
            {requirement.satisfiedBy.length > 0 && <span className="muted"> ({requirement.satisfiedBy.join(", ")})</span>}
            <span className="muted"> · {requirement.source}</span>
          </li>
        ))}
      </ul>
      {action.approvalsNeeded && (
        <p className="approvals-needed" role="status">
          Still open: {action.approvalsNeeded}
        </p>
      )}
    </div>
  );
}

export function Decision({ action, events }: { action: Action; events: readonly Event[] }) {
  const decision = decisionOf(events);
  const approvals = approvalsOf(events);
  return (
    <div className="decision">
      <div className="decision-policy">
        <h3>The policy’s decision</h3>
        {decision ? (
          <>
            <p className="decision-verdict">
              <strong>{decisionWords(decision.decision)}</strong>
              {decision.approvalsRequired && decision.approvalsRequired !== "0" && <span>: {decision.approvalsRequired} approval(s) required</span>}
            </p>
            {decision.reason && <p className="decision-reason">“{decision.reason}”</p>}
            <p className="muted">
              {decision.mode && <span>mode {decision.mode}</span>}
              {decision.rule && <span> · rule {decision.rule}</span>}
              {decision.version && <span> · policy {decision.version}</span>}
              {decision.typeRiskLevel && decision.riskLevel && decision.typeRiskLevel !== decision.riskLevel && (
                <span>
                  {" "}
                  · risk raised by the producer from {decision.typeRiskLevel} to {decision.riskLevel}
                </span>
              )}
            </p>
          </>
        ) : (
          <p className="muted">The event log does not hold the policy’s decision{action.policyVersion ? ` (policy ${action.policyVersion})` : ""}.</p>
        )}
      </div>
      <div className="decision-approvals">
        <h3>Approvals so far</h3>
        {action.approvalsRequired > 0 && (
          <p>
            <Quorum approvers={action.approvers.length} required={action.approvalsRequired} /> approvals
            {action.status === ActionStatus.PENDING && action.approvalExpireTime && (
              <span>
                {" "}
                · the window closes <ExpiryText action={action} />
              </span>
            )}
          </p>
        )}
        {action.approvalRequirements.length > 0 && <GroupRequirements action={action} />}
        {approvals.length === 0 ? (
          <p className="muted">
            {action.approvedBy.startsWith("policy:") ? `No person approved it: ${action.approvedBy} did.` : "No one has approved it yet."}
          </p>
        ) : (
          <ul className="approvals">
            {approvals.map((approval) => (
              <li key={approval.eventId.toString()}>
                <span className="mono">{approval.who}</span> <Instant at={approval.at} />
                {approval.final && <span className="muted"> ({action.approvalRequirements.length > 0 ? "completed the approvals" : "met the quorum"})</span>}
                {approval.satisfies && <span className="approval-satisfies"> · satisfies {approval.satisfies}</span>}
                {approval.note ? <blockquote>{approval.note}</blockquote> : <span className="muted"> — no note</span>}
              </li>
            ))}
          </ul>
        )}
      </div>
    </div>
  );
}
