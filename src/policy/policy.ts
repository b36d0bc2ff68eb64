// The approval policy: what it may say (a validated file, YAML or JSON),
// what it says when there is no file, and its version. The decision itself
// is in approval.ts.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { SettingsFileError, parseSettingsFile } from "../file-schema.js";
import type { Logger } from "pino";
import { z } from "zod";
import { NAME_PATTERN, RISK_LEVELS, type RiskLevel } from "../domain/vocabulary.js";
import { type ConcurrencyRule, concurrencyRule } from "./concurrency.js";
import { type ChangeWindow, windowSchema } from "./windows.js";

export const POLICY_MODES = ["recommend-only", "standard", "autonomous"] as const;
export type PolicyMode = (typeof POLICY_MODES)[number];

/** The types every policy knows, before the file adds or overrides any. */
export const BUILTIN_REGISTRY: Readonly<Record<string, RiskLevel>> = {
  collect_diagnostics: "safe",
  rerun_healthcheck: "safe",
  redeploy_service: "guarded",
  rerun_deployment_stage: "guarded",
};

const DAY_SECONDS = 86_400;
const DEFAULT_QUORUM: Record<RiskLevel, number> = { safe: 1, guarded: 1, dangerous: 2 };

/** "90s", "30m", "24h", "7d" or a number of seconds; returns seconds. */
const duration = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const match = typeof value === "number" ? null : /^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$/.exec(value);
  const seconds = typeof value === "number" ? value : match ? Number(match[1]) * { s: 1, m: 60, h: 3600, d: DAY_SECONDS }[(match[2] ?? "s") as "s"] : NaN;
  if (!Number.isFinite(seconds) || seconds < 1 || seconds > 365 * DAY_SECONDS) {
    ctx.addIssue({ code: "custom", message: 'must be a duration from 1s to 365d, such as "90s", "30m", "24h" or "7d"' });
    return z.NEVER;
  }
  return seconds;
});

const risk = z.enum(RISK_LEVELS, { error: `must be one of ${RISK_LEVELS.join(", ")}` });
const confidence = z.number({ error: "must be a number from 0 to 1" }).min(0, "must be from 0 to 1").max(1, "must be from 0 to 1");
const patterns = z
  .array(z.string().min(1, "must not be empty"), { error: "must be a list of strings" })
  .min(1, "must not be an empty list; leave it out to match anything");
/** "The approvers must include `count` from `group`": groups are those of
 * the auth file's principals. */
const requirement = z.strictObject(
  {
    group: z.string({ error: "must be a group name" }).regex(NAME_PATTERN, "must be a group name: a letter or digit, then letters, digits or _ . : / -"),
    count: z.number({ error: "must be a whole number" }).int("must be a whole number").min(1, "must be at least 1").max(20, "must be at most 20").default(1),
  },
  { error: "must be a mapping with group (and count)" },
);
const requirementList = z
  .array(requirement, { error: "must be a list of {group, count}" })
  .min(1, "must not be an empty list; leave it out to require no group")
  .max(20)
  .superRefine((list, ctx) => {
    const seen = new Set<string>();
    list.forEach((entry, index) => {
      if (seen.has(entry.group)) ctx.addIssue({ code: "custom", path: [index, "group"], message: `group ${entry.group} is listed twice` });
      seen.add(entry.group);
    });
  });
const perRisk = <T extends z.ZodType>(value: T) => z.strictObject({ safe: value.optional(), guarded: value.optional(), dangerous: value.optional() });

const RuleSchema = z.strictObject({
  name: z.string({ error: "must be a string" }).min(1, "must not be empty").max(128),
  effect: z.enum(["allow", "forbid"], { error: 'must be "allow" or "forbid"' }),
  action_types: patterns.optional(),
  projects: patterns.optional(),
  nodes: patterns.optional(),
  services: patterns.optional(),
  producers: patterns.optional(),
  min_confidence: confidence.optional(),
  approvers: requirementList.optional(),
});

const PolicyFileSchema = z
  .strictObject(
    {
      name: z
        .string()
        .regex(/^[A-Za-z0-9_.:-]{1,64}$/, "must be 1 to 64 letters, digits or _ . : -")
        .optional(),
      mode: z.enum(POLICY_MODES, { error: `must be one of ${POLICY_MODES.join(", ")}` }).optional(),
      default_risk: risk.optional(),
      action_types: z.record(z.string().regex(/^[A-Za-z0-9_.:/-]{1,128}$/, "must be an action type name"), risk).optional(),
      quorum: perRisk(z.number().int("must be a whole number").min(1, "must be at least 1").max(20, "must be at most 20")).optional(),
      approval_ttl: perRisk(duration).optional(),
      approvers: perRisk(requirementList).optional(),
      autonomous: z.strictObject({ min_confidence: confidence.optional() }).optional(),
      rules: z.array(RuleSchema, { error: "must be a list of rules" }).max(1000).optional(),
      concurrency: z.record(z.string().regex(/^[A-Za-z0-9_.:/-]{1,128}$/, "must be an action type name"), concurrencyRule).optional(),
      // When changes may not run: see windows.ts.
      windows: z.array(windowSchema(patterns, risk), { error: "must be a list of change windows" }).max(100).optional(),
    },
    { error: "must be a mapping of policy keys" },
  )
  .superRefine((policy, ctx) => {
    // A requirement that the quorum cannot hold would raise the quorum
    // behind the author's back: say so instead.
    for (const level of RISK_LEVELS) {
      const needed = (policy.approvers?.[level] ?? []).reduce((sum, entry) => sum + entry.count, 0);
      const quorum = policy.quorum?.[level] ?? DEFAULT_QUORUM[level];
      if (needed > quorum) {
        ctx.addIssue({
          code: "custom",
          path: ["approvers", level],
          message: `requires ${needed} approver(s) from groups but quorum.${level} is ${quorum}; raise quorum.${level} to at least ${needed}`,
        });
      }
    }
    const seen = new Set<string>();
    policy.rules?.forEach((rule, index) => {
      if (seen.has(rule.name)) ctx.addIssue({ code: "custom", path: ["rules", index, "name"], message: `duplicate rule name ${JSON.stringify(rule.name)}` });
      seen.add(rule.name);
      if (rule.effect === "forbid" && rule.min_confidence !== undefined) {
        ctx.addIssue({ code: "custom", path: ["rules", index, "min_confidence"], message: "only allow rules have a minimum confidence" });
      }
    });
    const windowNames = new Set<string>();
    policy.windows?.forEach((window, index) => {
      if (windowNames.has(window.name))
        ctx.addIssue({ code: "custom", path: ["windows", index, "name"], message: `duplicate window name ${JSON.stringify(window.name)}` });
      windowNames.add(window.name);
    });
  });

export type PolicyRule = z.output<typeof RuleSchema>;
export type ApproverRequirement = z.output<typeof requirement>;

/** A policy with every default filled in. */
export interface Policy {
  name: string | null;
  mode: PolicyMode;
  default_risk: RiskLevel;
  action_types: Record<string, RiskLevel>;
  quorum: Record<RiskLevel, number>;
  /** Seconds. */
  approval_ttl: Record<RiskLevel, number>;
  /** Groups the approvers of a waiting action must include, per risk
   * level; rules add their own. */
  approvers: Record<RiskLevel, ApproverRequirement[]>;
  autonomous: { min_confidence: number };
  rules: PolicyRule[];
  /** Concurrency keys by action type (see concurrency.ts). */
  concurrency: Record<string, ConcurrencyRule>;
  /** Change windows: when changes may not run. */
  windows: ChangeWindow[];
}

export interface LoadedPolicy {
  policy: Policy;
  /** `<name>@<digest>`; the digest covers the whole normalized policy. */
  version: string;
  /** The file it came from; null for the built-in policy. */
  source: string | null;
}

export class PolicyError extends SettingsFileError {}

function normalize(file: z.output<typeof PolicyFileSchema>): Policy {
  return {
    name: file.name ?? null,
    mode: file.mode ?? "standard",
    default_risk: file.default_risk ?? "safe",
    action_types: { ...BUILTIN_REGISTRY, ...file.action_types },
    quorum: { ...DEFAULT_QUORUM, ...file.quorum },
    approval_ttl: { safe: DAY_SECONDS, guarded: DAY_SECONDS, dangerous: DAY_SECONDS, ...file.approval_ttl },
    approvers: { safe: [], guarded: [], dangerous: [], ...file.approvers },
    autonomous: { min_confidence: file.autonomous?.min_confidence ?? 0.8 },
    rules: file.rules ?? [],
    concurrency: Object.fromEntries(Object.entries(file.concurrency ?? {}).map(([type, rule]) => [type, { key: rule.key, limit: rule.limit ?? 1 }])),
    windows: file.windows ?? [],
  };
}

/** JSON with sorted keys, so that the digest does not depend on the order
 * the file was written in. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.keys(value)
      .sort()
      .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
      .map((key) => `${JSON.stringify(key)}:${canonical((value as Record<string, unknown>)[key])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value);
}

function loaded(policy: Policy, source: string | null): LoadedPolicy {
  // Without windows the digest is what it was before windows existed, so
  // an upgrade does not change the version of an unchanged policy.
  const digested = policy.windows.length === 0 ? { ...policy, windows: undefined } : policy;
  const digest = createHash("sha256").update(canonical(digested)).digest("hex").slice(0, 12);
  return { policy, version: `${source === null ? "builtin" : (policy.name ?? "policy")}@${digest}`, source };
}

export const BUILTIN_POLICY: LoadedPolicy = loaded(normalize({}), null);

/** The approver groups a policy names anywhere, sorted. */
export function policyGroups(policy: Policy): string[] {
  const lists = [...RISK_LEVELS.map((level) => policy.approvers[level]), ...policy.rules.map((rule) => rule.approvers ?? [])];
  return [...new Set(lists.flat().map((entry) => entry.group))].sort();
}

/** Why some of the policy's group requirements cannot be met by the
 * principals in force, or null. Without an auth file nobody belongs to a
 * group: actions that need one wait until they expire or are rejected. */
export function unreachableGroups(policy: Policy, members: ((group: string) => number) | null): { groups: string[]; why: string } | null {
  const groups = policyGroups(policy);
  if (groups.length === 0) return null;
  if (members === null) {
    return {
      groups,
      why: "the policy requires approver groups but there is no auth file (ACTIONQ_AUTH_FILE): nobody belongs to a group, so actions that need one stay PENDING until they expire",
    };
  }
  const empty = groups.filter((group) => members(group) === 0);
  return empty.length === 0 ? null : { groups: empty, why: "the policy requires approver groups that no principal of the auth file belongs to" };
}

/** Group requirements nobody can meet are not refused (the actions wait
 * and GetAction says for what), but they are said out loud at start and on
 * each policy reload. */
export function warnUnreachableGroups(policy: Policy, auth: { current: { members(group: string): number } } | undefined, log: Logger): void {
  const unreachable = unreachableGroups(policy, auth ? (group) => auth.current.members(group) : null);
  if (unreachable) log.warn({ groups: unreachable.groups }, unreachable.why);
}

/** Parses and validates policy text; `source` names it in errors. */
export function parsePolicy(text: string, source: string): LoadedPolicy {
  const result = parseSettingsFile(text, source, PolicyFileSchema);
  if (!result.ok) throw new PolicyError(source, result.problems);
  return loaded(normalize(result.data), source);
}

/** Reads the policy file, or returns the built-in policy when there is none. */
export async function loadPolicy(file: string | undefined): Promise<LoadedPolicy> {
  if (file === undefined) return BUILTIN_POLICY;
  const source = path.resolve(file);
  let text: string;
  try {
    text = await readFile(source, "utf8");
  } catch (error) {
    throw new PolicyError(source, [`cannot read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`]);
  }
  return parsePolicy(text, source);
}

/** The policy in force in this process, replaced whole on reload so that
 * a decision never sees half of an old policy and half of a new one. */
export class PolicyHolder {
  constructor(
    private readonly file: string | undefined,
    public current: LoadedPolicy,
  ) {}

  static async open(file: string | undefined): Promise<PolicyHolder> {
    return new PolicyHolder(file, await loadPolicy(file));
  }

  /** Reads the file again without putting it in force. An invalid file
   * throws PolicyError. */
  async read(): Promise<LoadedPolicy> {
    return loadPolicy(this.file);
  }

  install(next: LoadedPolicy): void {
    this.current = next;
  }
}
