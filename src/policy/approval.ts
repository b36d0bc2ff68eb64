// Decides at enqueue whether an action may go straight to the queue or must
// wait for approvals, and says why, so that the decision can be recorded on
// the action's events and an operator can always answer "why did this run
// without a human?".
import type { JsonObject } from "@bufbuild/protobuf";
import { invalidField } from "../errors.js";
import { type RiskLevel, riskBelow } from "../domain/vocabulary.js";
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
  /** Groups the approvers must include; empty when approved by policy. */
  requirements: StoredRequirement[];
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

/** One group requirement of a waiting action, as it is stored with it:
 * `from` says which part of the policy asked for it. */
export interface StoredRequirement {
  group: string;
  count: number;
  from: string;
}

/** The level the policy gives an action type: its own, or the default. */
export function riskOfType(policy: Policy, actionType: string): RiskLevel {
  return policy.action_types[actionType] ?? policy.default_risk;
}

/** The action's risk: the producer's, or its type's when it gave none. A
 * producer may raise the level, never lower it. */
export function resolveRisk(policy: Policy, actionType: string, requested: RiskLevel | null): { risk: RiskLevel; typeRisk: RiskLevel } {
  const typeRisk = riskOfType(policy, actionType);
  if (requested === null) return { risk: typeRisk, typeRisk };
  if (riskBelow(requested, typeRisk)) {
    throw invalidField(
      "risk_level",
      `${actionType} is ${typeRisk.toUpperCase()} by policy; a producer may raise an action's risk level, not lower it to ${requested.toUpperCase()}`,
    );
  }
  return { risk: requested, typeRisk };
}

/** `redeploy_*` as a regular expression: `*` matches anything, the rest
 * itself. Webhook filters match the same way. */
export function globToRegExp(pattern: string): RegExp {
  return new RegExp(
    `^${pattern
      .split("*")
      .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
      .join(".*")}$`,
  );
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
          return {
            approve: true,
            rule: rule.name,
            reason: `mode autonomous: allow rule ${rule.name} matches GUARDED with ${confidence} at or above ${threshold}`,
          };
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

/** The group requirements for an action: its risk level's, then those of
 * every rule that matches it, allow or forbid alike (a rule's approvers say
 * who must look at what it matches, whatever it decides). A group named
 * twice keeps the larger count, so one member can answer both. */
export function approverRequirements(policy: Policy, action: ProposedAction): StoredRequirement[] {
  const byGroup = new Map<string, StoredRequirement>();
  const add = (entries: readonly { group: string; count: number }[] | undefined, from: string) => {
    for (const { group, count } of entries ?? []) {
      const had = byGroup.get(group);
      if (!had) byGroup.set(group, { group, count, from });
      else byGroup.set(group, { group, count: Math.max(had.count, count), from: `${had.from}, ${from}` });
    }
  };
  add(policy.approvers[action.riskLevel], `approvers.${action.riskLevel}`);
  for (const rule of policy.rules) if (rule.approvers && matches(rule, action)) add(rule.approvers, `rule ${rule.name}`);
  return [...byGroup.values()];
}

/** "1 from sre-leads, 2 from dba". */
export function describeRequirements(requirements: readonly { group: string; count: number }[]): string {
  return requirements.map((r) => `${r.count} from ${r.group}`).join(", ");
}

/** The decision for one action under `loaded`, with auto-approval paused or
 * not, and with the stop_auto_approval change window that is closed for it
 * at the time of the proposal (see windows.ts closedWindowFor), if any. */
export function decideApproval(
  loaded: LoadedPolicy,
  action: ProposedAction & { typeRisk: RiskLevel },
  autoApprovalPaused: boolean,
  closedWindow: { name: string; until: Date } | null = null,
): ApprovalDecision {
  const { policy, version } = loaded;
  const own = verdict(policy, action);
  let approve = own.approve;
  let reason = own.reason;
  const requirements = approverRequirements(policy, action);
  if (approve && requirements.length > 0) {
    // Naming the approvers of an action means a person must approve it.
    approve = false;
    reason = `the policy names its approvers (${describeRequirements(requirements)}) (the policy alone would approve: ${own.reason})`;
  } else if (approve && action.approvalRequired) {
    approve = false;
    reason = `the producer asked for an approval (the policy alone would approve: ${own.reason})`;
  } else if (approve && autoApprovalPaused) {
    approve = false;
    reason = `auto-approval is paused (the policy alone would approve: ${own.reason})`;
  } else if (approve && closedWindow) {
    approve = false;
    reason = `change window ${closedWindow.name} stops auto-approval until ${closedWindow.until.toISOString()} (the policy alone would approve: ${own.reason})`;
  }
  // The quorum holds every group requirement: rules can add groups the
  // risk level's quorum was not sized for, and then the quorum grows (the
  // event says so) rather than the action becoming impossible to approve.
  const quorum = policy.quorum[action.riskLevel];
  const needed = requirements.reduce((sum, r) => sum + r.count, 0);
  const approvalsRequired = approve ? 0 : Math.max(quorum, needed);
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
  if (!approve && requirements.length > 0) {
    detail.approval_requirements = requirements.map((r) => ({ ...r }));
    if (needed > quorum) detail.quorum_raised = `quorum.${action.riskLevel} is ${quorum}; raised to ${needed} to hold the approver groups`;
  }
  if (closedWindow) detail.window = { name: closedWindow.name, until: closedWindow.until.toISOString() };
  return {
    status: approve ? "approved" : "pending",
    approvedBy: approve ? `policy:${policy.mode}` : null,
    approvalsRequired,
    requirements: approve ? [] : requirements,
    approvalTtlSeconds: approve ? null : policy.approval_ttl[action.riskLevel],
    autonomousEligible: own.approve,
    policyVersion: version,
    detail,
  };
}
