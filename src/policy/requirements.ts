// What a PENDING action's approvals still lack, read from the row alone:
// the quorum and the group requirements stored at enqueue, against the
// approvers and the groups each had when it approved. The approve
// statement decides (approvals_complete in SQL); this only explains.
import type { Status } from "../domain/vocabulary.js";

/** The columns of an action that say how far its approvals are. */
export interface ApprovalColumns {
  status: Status;
  approvals_required: number;
  approvers: string[];
  approval_requirements: { group: string; count: number; from: string }[];
  approver_groups: Record<string, string[]>;
}

export interface RequirementState {
  group: string;
  count: number;
  /** Which part of the policy asked for it. */
  from: string;
  /** The approvers so far who are in the group, in approval order. */
  satisfiedBy: string[];
}

export function requirementStates(row: Omit<ApprovalColumns, "status" | "approvals_required">): RequirementState[] {
  return row.approval_requirements.map((requirement) => ({
    ...requirement,
    satisfiedBy: row.approvers.filter((approver) => row.approver_groups[approver]?.includes(requirement.group)),
  }));
}

/** "needs 1 approver from group sre-leads", "needs 2 approvers, including
 * 1 from group dba"; empty when nothing is open or the action is not
 * PENDING. */
export function approvalsNeeded(row: ApprovalColumns): string {
  if (row.status !== "pending") return "";
  const open = requirementStates(row)
    .filter((r) => r.satisfiedBy.length < r.count)
    .map((r) => ({ group: r.group, missing: r.count - r.satisfiedBy.length }));
  const short = Math.max(0, row.approvals_required - row.approvers.length);
  const people = (n: number) => `${n}${row.approvers.length > 0 ? " more" : ""} approver${n === 1 ? "" : "s"}`;
  if (open.length === 0) return short > 0 ? `needs ${people(short)}` : "";
  const groups = open.map((r) => `${r.missing} from group ${r.group}`).join(" and ");
  const fromGroups = open.reduce((sum, r) => sum + r.missing, 0);
  // Approvers from the groups also fill the quorum; name the quorum only
  // when it needs more people than the groups do.
  if (fromGroups >= short) {
    return open.length === 1
      ? `needs ${open[0]!.missing} approver${open[0]!.missing === 1 ? "" : "s"} from group ${open[0]!.group}`
      : `needs approvers: ${groups}`;
  }
  return `needs ${people(short)}, including ${groups}`;
}
