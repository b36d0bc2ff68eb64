// Decides at enqueue whether an action may go straight to the queue or must
// wait for an approval, and says why, so that the decision can be recorded
// on the action's events and an operator can always answer "why did this
// run without a human?".
import type { JsonObject } from "@bufbuild/protobuf";
import type { RiskLevel } from "../store/rows.js";

export interface ApprovalDecision {
  status: "pending" | "approved";
  /** The actor recorded as approver when no human is needed. */
  approvedBy: string | null;
  /** Kept on the action_enqueued event, and on action_approved when the
   * policy approved. */
  detail: JsonObject;
}

const MODE = "standard";

/** The built-in standard policy: SAFE actions go straight to the queue
 * unless the producer asked for an approval; GUARDED and DANGEROUS ones
 * wait for one. */
export function decideApproval(action: { riskLevel: RiskLevel; approvalRequired: boolean }): ApprovalDecision {
  const pending = (reason: string): ApprovalDecision => ({ status: "pending", approvedBy: null, detail: { mode: MODE, decision: "needs_approval", reason } });
  if (action.riskLevel === "dangerous") return pending("DANGEROUS actions always need a human approval");
  if (action.riskLevel === "guarded") return pending("GUARDED actions need an approval");
  if (action.approvalRequired) return pending("the producer asked for an approval");
  return {
    status: "approved",
    approvedBy: `policy:${MODE}`,
    detail: { mode: MODE, decision: "approved", reason: "SAFE actions need no approval" },
  };
}
