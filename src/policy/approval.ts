// Decides at enqueue whether an action may go straight to the queue or must
// wait for approvals, and says why, so that the decision can be recorded on
// the action's events and an operator can always answer "why did this run
// without a human?".
import type { JsonObject } from "@bufbuild/protobuf";
import { invalidField } from "../errors.js";
import type { RiskLevel } from "../store/rows.js";
import type { LoadedPolicy, Policy, PolicyRule } from "./policy.js";

/** What the policy looks at. */
export interface ProposedAction {
  actionType: string;
  project: string;
  node: string;
  service: string;
  createdBy: string;
  confidence: number | null;
  riskLevel: RiskLevel;
  approvalRequired: boolean;
}

export interface ApprovalDecision {
  status: "pending" | "approved";
  /** `policy:<mode>` when no human is needed; null while pending. */
  approvedBy: string | null;
  /** Distinct approvers needed; 0 when approved by policy. */
  approvalsRequired: number;
  /** Seconds a pending action may wait before it is rejected; null when
   * approved. */
  approvalTtlSeconds: number | null;
  /** The policy alone would have approved it. */
  autonomousEligible: boolean;
  policyVersion: string;
  /** Kept on the action_enqueued event, and as the payload of
   * action_approved when the policy approved. */
  detail: JsonObject;
}

const RANK: Record<RiskLevel, number> = { safe: 0, guarded: 1, dangerous: 2 };

/** The action's risk: the producer's, or its type's when it gave none. A
 * producer may raise the level, never lower it. */
export function resolveRisk(policy: Policy, actionType: string, requested: RiskLevel | null): { risk: RiskLevel; typeRisk: RiskLevel } {
  const typeRisk = policy.action_types[actionType] ?? policy.default_risk;
  if (requested === null) return { risk: typeRisk, typeRisk };
  if (RANK[requested] < RANK[typeRisk]) {
    throw invalidField(
      "risk_level",
      `${actionType} is ${typeRisk.toUpperCase()} by policy; a producer may raise an action's risk level, not lower it to ${requested.toUpperCase()}`,
    );
  }
  return { risk: requested, typeRisk };
}

function globToRegExp(pattern: string): RegExp {
  return new RegExp(`^${pattern.split("*").map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`);
}

const compiled = new WeakMap<PolicyRule, (action: ProposedAction) => boolean>();

/** A rule matches when every list it has matches; a missing list matches
 * anything. */
function matches(rule: PolicyRule, action: ProposedAction): boolean {
  let test = compiled.get(rule);
  if (!test) {
    const field = (patterns: string[] | undefined, pick: (a: ProposedAction) => string) => {
      if (!patterns) return () => true;
      const regexps = patterns.map(globToRegExp);
      return (a: ProposedAction) => regexps.some((regexp) => regexp.test(pick(a)));
    };
    const checks = [
      field(rule.action_types, (a) => a.actionType),
      field(rule.projects, (a) => a.project),
      field(rule.nodes, (a) => a.node),
      field(rule.services, (a) => a.service),
      field(rule.producers, (a) => a.createdBy),
    ];
    test = (a) => checks.every((check) => check(a));
    compiled.set(rule, test);
  }
  return test(action);
}

interface Verdict {
  approve: boolean;
  rule: string | null;
  reason: string;
}

/** What the policy says about the action on its own: steps that only make
 * it wait (the producer's request, a pause) are applied by the caller. */
function verdict(policy: Policy, action: ProposedAction): Verdict {
  const forbid = policy.rules.find((rule) => rule.effect === "forbid" && matches(rule, action));
  if (forbid) return { approve: false, rule: forbid.name, reason: `forbid rule ${forbid.name} matches` };
  const risk = action.riskLevel.toUpperCase();
  const confidence = action.confidence === null ? "no confidence" : `confidence ${action.confidence}`;
  switch (policy.mode) {
    case "recommend-only":
      return { approve: false, rule: null, reason: "mode recommend-only: every action needs an approval" };
    case "standard":
      return action.riskLevel === "safe"
        ? { approve: true, rule: null, reason: "mode standard: SAFE actions need no approval" }
        : { approve: false, rule: null, reason: `mode standard: ${risk} actions need an approval` };
    case "autonomous": {
      if (action.riskLevel === "dangerous") return { approve: false, rule: null, reason: "DANGEROUS actions always need a human approval" };
      if (action.riskLevel === "safe") {
        const threshold = policy.autonomous.min_confidence;
        return action.confidence !== null && action.confidence >= threshold
          ? { approve: true, rule: null, reason: `mode autonomous: SAFE with ${confidence} at or above ${threshold}` }
          : { approve: false, rule: null, reason: `mode autonomous: SAFE with ${confidence}, below ${threshold}` };
      }
      // GUARDED: only an allow rule lets it through, each with its own bar.
      let nearMiss: PolicyRule | undefined;
      for (const rule of policy.rules) {
        if (rule.effect !== "allow" || !matches(rule, action)) continue;
        const threshold = rule.min_confidence ?? policy.autonomous.min_confidence;
        if (action.confidence !== null && action.confidence >= threshold) {
          return { approve: true, rule: rule.name, reason: `mode autonomous: allow rule ${rule.name} matches GUARDED with ${confidence} at or above ${threshold}` };
        }
        nearMiss ??= rule;
      }
      if (nearMiss) {
        const threshold = nearMiss.min_confidence ?? policy.autonomous.min_confidence;
        return { approve: false, rule: nearMiss.name, reason: `mode autonomous: allow rule ${nearMiss.name} matches but ${confidence} is below ${threshold}` };
      }
      return { approve: false, rule: null, reason: "mode autonomous: no allow rule matches this GUARDED action (deny by default)" };
    }
  }
}

/** The decision for one action under `loaded`, with auto-approval paused or
 * not. */
export function decideApproval(loaded: LoadedPolicy, action: ProposedAction & { typeRisk: RiskLevel }, autoApprovalPaused: boolean): ApprovalDecision {
  const { policy, version } = loaded;
  const own = verdict(policy, action);
  let approve = own.approve;
  let reason = own.reason;
  if (approve && action.approvalRequired) {
    approve = false;
    reason = `the producer asked for an approval (the policy alone would approve: ${own.reason})`;
  } else if (approve && autoApprovalPaused) {
    approve = false;
    reason = `auto-approval is paused (the policy alone would approve: ${own.reason})`;
  }
  const approvalsRequired = approve ? 0 : policy.quorum[action.riskLevel];
  const detail: JsonObject = {
    mode: policy.mode,
    policy_version: version,
    decision: approve ? "approved" : "needs_approval",
    rule: own.rule,
    reason,
    risk_level: action.riskLevel,
    type_risk_level: action.typeRisk,
    approvals_required: approvalsRequired,
    autonomous_eligible: own.approve,
  };
  return {
    status: approve ? "approved" : "pending",
    approvedBy: approve ? `policy:${policy.mode}` : null,
    approvalsRequired,
    approvalTtlSeconds: approve ? null : policy.approval_ttl[action.riskLevel],
    autonomousEligible: own.approve,
    policyVersion: version,
    detail,
  };
}
