// The approval policy over the wire: what each mode decides at enqueue, the
// registry of action types and their risk levels, allow and forbid rules and
// every field they match on, the decision recorded on the action and its
// events, GetPolicy, reloads (ReloadPolicy and SIGHUP), and the refusal of
// an invalid policy file, both at start and on reload.
// The spawned-process tests run the compiled code: `npm test` builds first;
// run `npm run build` before running this file on its own.
import { rm } from "node:fs/promises";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GrpcClient, type TestServer, grpcError, snapshot, startTestServer } from "./support/harness.js";
import {
  type EnqueueResponse,
  type Json,
  STATUS,
  type WireAction,
  type WireEvent,
  enqueue,
  errorInfoOf,
  expectRefused,
  fromStruct,
  getAction,
  messageOf,
  millis,
} from "./support/wire.js";
import { RISK, enqueuedPolicy, eventTypes, getPolicy, removePolicyDirs, rewritePolicy, unique, writePolicy } from "./support/safety.js";
import { eventually } from "./support/wait.js";
import { databaseUrl, dropSchema, freshSchema } from "./support/database.js";
import { ActionqProcess, freePort, killRunning, requireBuiltCli, runToEnd } from "./support/processes.js";

const VERSION = (name: string) => new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}@[0-9a-f]{12}$`);
const DAY_MS = 24 * 3600 * 1000;

afterAll(async () => {
  await killRunning();
  await removePolicyDirs();
});

/** Checks the decision an enqueue got, on the action and on its events. */
async function expectDecision(
  t: TestServer,
  action: WireAction,
  expected: { approved: boolean; mode: string; rule?: string | null; eligible: boolean; reason?: RegExp },
): Promise<{ [key: string]: Json }> {
  const { policyVersion } = await getPolicy(t);
  expect(
    action.status,
    `status of ${action.actionType} (${JSON.stringify({ project: action.project, node: action.node, service: action.service, createdBy: action.createdBy, confidence: action.confidence })})`,
  ).toBe(expected.approved ? STATUS.approved : STATUS.pending);
  expect(action.autonomousEligible, "autonomous_eligible").toBe(expected.eligible);
  expect(action.policyVersion).toBe(policyVersion);
  const { events } = await getAction(t, action.id);
  const policy = enqueuedPolicy(events);
  expect(policy).toMatchObject({
    mode: expected.mode,
    policy_version: policyVersion,
    decision: expected.approved ? "approved" : "needs_approval",
    autonomous_eligible: expected.eligible,
    approvals_required: action.approvalsRequired,
  });
  expect(typeof policy.reason).toBe("string");
  expect(String(policy.reason)).not.toBe("");
  if (expected.reason) expect(String(policy.reason)).toMatch(expected.reason);
  if (expected.rule !== undefined) expect(policy.rule ?? null, "the rule named in the decision").toBe(expected.rule);
  if (expected.approved) {
    expect(action.approvedBy).toBe(`policy:${expected.mode}`);
    expect(action.approvalsRequired).toBe(0);
    expect(action.approvalExpireTime).toBeNull();
    expect(eventTypes(events)).toEqual(["action_enqueued", "action_approved"]);
    expect(events[1]!.actor).toBe(`policy:${expected.mode}`);
    // The approval event carries the decision itself.
    expect(fromStruct(events[1]!.payload)).toEqual(policy);
  } else {
    expect(action.approvedBy).toBe("");
    expect(action.approvalsRequired).toBeGreaterThan(0);
    expect(action.approvalExpireTime).not.toBeNull();
    expect(eventTypes(events)).toEqual(["action_enqueued"]);
  }
  return policy;
}

describe("the built-in policy (standard mode)", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => {
    await t?.close();
  });

  it("GetPolicy reports builtin@<12 hex>, no source, and the built-in registry, quorum and confidence", async () => {
    const { policyVersion, source, policy } = await getPolicy(t);
    expect(policyVersion).toMatch(VERSION("builtin"));
    expect(source).toBe("");
    expect(policy).toMatchObject({
      mode: "standard",
      default_risk: "safe",
      action_types: { collect_diagnostics: "safe", rerun_healthcheck: "safe", redeploy_service: "guarded", rerun_deployment_stage: "guarded" },
      quorum: { safe: 1, guarded: 1, dangerous: 2 },
      autonomous: { min_confidence: 0.8 },
    });
    expect(Object.keys(policy.approval_ttl as object).sort()).toEqual(["dangerous", "guarded", "safe"]);
    expect(await getPolicy(t)).toEqual({ policyVersion, source, policy });
  });

  it.each([
    ["collect_diagnostics", RISK.safe, true],
    ["rerun_healthcheck", RISK.safe, true],
    ["redeploy_service", RISK.guarded, false],
    ["rerun_deployment_stage", RISK.guarded, false],
    ["a_type_not_in_the_registry", RISK.safe, true],
  ])("%s with no risk level gets the registry's level (%s)", async (actionType, risk, approved) => {
    const { action } = await enqueue(t, { actionType, createdBy: "human:alice" });
    expect(action.riskLevel).toBe(risk);
    const policy = await expectDecision(t, action, { approved, mode: "standard", rule: null, eligible: approved });
    expect(String(policy.risk_level).toLowerCase()).toContain(risk.replace("RISK_LEVEL_", "").toLowerCase());
    expect(String(policy.type_risk_level).toLowerCase()).toContain(risk.replace("RISK_LEVEL_", "").toLowerCase());
  });

  it("standard mode: SAFE approved by policy:standard, GUARDED waits for 1 approver and DANGEROUS for 2, each until now + 24h", async () => {
    const safe = (await enqueue(t, { actionType: "collect_diagnostics", riskLevel: RISK.safe })).action;
    await expectDecision(t, safe, { approved: true, mode: "standard", rule: null, eligible: true });

    const guarded = (await enqueue(t, { actionType: "redeploy_service", riskLevel: RISK.guarded, confidence: 1 })).action;
    await expectDecision(t, guarded, { approved: false, mode: "standard", rule: null, eligible: false });
    expect(guarded.approvalsRequired).toBe(1);
    expect(guarded.approvers).toEqual([]);
    expect(Math.abs(millis(guarded.approvalExpireTime) - millis(guarded.createTime) - DAY_MS)).toBeLessThan(5_000);

    const dangerous = (await enqueue(t, { actionType: "drop_table", riskLevel: RISK.dangerous, confidence: 1 })).action;
    await expectDecision(t, dangerous, { approved: false, mode: "standard", rule: null, eligible: false });
    expect(dangerous.approvalsRequired).toBe(2);
    expect(Math.abs(millis(dangerous.approvalExpireTime) - millis(dangerous.createTime) - DAY_MS)).toBeLessThan(5_000);
  });

  it("approval_required keeps a SAFE action PENDING, and it stays autonomous_eligible", async () => {
    const { action } = await enqueue(t, { actionType: "collect_diagnostics", approvalRequired: true });
    const policy = await expectDecision(t, action, { approved: false, mode: "standard", eligible: true, reason: /asked/ });
    expect(action.approvalsRequired).toBe(1);
    expect(action.approvalRequired).toBe(true);
    expect(policy.decision).toBe("needs_approval");
  });

  it("raising the risk level is allowed: a SAFE type sent as GUARDED or DANGEROUS waits, with the type's level recorded", async () => {
    const guarded = (await enqueue(t, { actionType: "collect_diagnostics", riskLevel: RISK.guarded })).action;
    expect(guarded.riskLevel).toBe(RISK.guarded);
    const policy = await expectDecision(t, guarded, { approved: false, mode: "standard", eligible: false });
    expect(String(policy.risk_level).toLowerCase()).toContain("guarded");
    expect(String(policy.type_risk_level).toLowerCase()).toContain("safe");

    const dangerous = (await enqueue(t, { actionType: "redeploy_service", riskLevel: RISK.dangerous })).action;
    expect(dangerous.riskLevel).toBe(RISK.dangerous);
    expect(dangerous.approvalsRequired).toBe(2);
  });

  it.each([
    ["redeploy_service", RISK.safe],
    ["rerun_deployment_stage", RISK.safe],
  ])("lowering %s to %s is INVALID_ARGUMENT naming risk_level, and nothing is written", async (actionType, riskLevel) => {
    const error = await expectRefused(t, () => enqueue(t, { actionType, riskLevel }), {
      code: status.INVALID_ARGUMENT,
      reason: "INVALID_FIELD",
      field: "risk_level",
    });
    expect(messageOf(error).toLowerCase()).toContain("guarded");
  });

  it("an idempotent retry of a refused lowering is still refused (nothing was stored under the key)", async () => {
    const request = { actionType: "redeploy_service", riskLevel: RISK.safe, idempotencyKey: unique("key") };
    await expectRefused(t, () => enqueue(t, request), { code: status.INVALID_ARGUMENT, reason: "INVALID_FIELD", field: "risk_level" });
    await expectRefused(t, () => enqueue(t, request), { code: status.INVALID_ARGUMENT, reason: "INVALID_FIELD", field: "risk_level" });
  });

  it("ReloadPolicy with no file keeps the built-in policy: changed=false, nothing written", async () => {
    const { policyVersion } = await getPolicy(t);
    const before = await snapshot(t.db);
    expect(await t.grpc.unary("ReloadPolicy", { actor: "human:ops" })).toEqual({ policyVersion, changed: false });
    expect(await snapshot(t.db)).toBe(before);
  });

  it("ReloadPolicy with no actor is INVALID_ARGUMENT naming actor", async () => {
    await expectRefused(t, () => t.grpc.unary("ReloadPolicy", {}), { code: status.INVALID_ARGUMENT, reason: "INVALID_FIELD", field: "actor" });
  });
});

describe("recommend-only mode (a JSON policy file)", () => {
  let t: TestServer;
  let file: string;
  beforeAll(async () => {
    file = await writePolicy({ name: "advisory", mode: "recommend-only", quorum: { safe: 1, guarded: 1, dangerous: 2 } });
    t = await startTestServer({ ACTIONQ_POLICY: file });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("GetPolicy names the file and the version advisory@<12 hex>", async () => {
    const { policyVersion, source, policy } = await getPolicy(t);
    expect(policyVersion).toMatch(VERSION("advisory"));
    expect(source).toBe(file);
    expect(policy).toMatchObject({ mode: "recommend-only", name: "advisory" });
    // Merged over the built-in registry, defaults filled in.
    expect(policy).toMatchObject({ default_risk: "safe", action_types: { redeploy_service: "guarded" }, autonomous: { min_confidence: 0.8 } });
  });

  it("every action waits for a human, even a SAFE one with full confidence", async () => {
    const safe = (await enqueue(t, { actionType: "collect_diagnostics", confidence: 1 })).action;
    await expectDecision(t, safe, { approved: false, mode: "recommend-only", rule: null, eligible: false });
    expect(safe.approvalsRequired).toBe(1);
    const dangerous = (await enqueue(t, { actionType: "wipe_disk", riskLevel: RISK.dangerous, confidence: 1 })).action;
    await expectDecision(t, dangerous, { approved: false, mode: "recommend-only", eligible: false });
    expect(dangerous.approvalsRequired).toBe(2);
  });
});

const AUTONOMOUS_POLICY = `
# Every kind of match field, with globs, and a forbid rule below the allow
# rule it overrides.
name: ops-auto
mode: autonomous
default_risk: guarded
action_types:
  drop_database: dangerous
  restart_pod: guarded
  flush_cache: guarded
  rotate_keys: guarded
  rerun_healthcheck: guarded
  read_metrics: safe
autonomous:
  min_confidence: 0.8
rules:
  - name: allow-redeploy-web
    effect: allow
    action_types: [redeploy_service]
    projects: [web, "shop-*"]
    min_confidence: 0.9
  - name: allow-restart-on-nodes
    effect: allow
    action_types: [restart_pod]
    nodes: ["node-*"]
  - name: allow-rerun-api
    effect: allow
    action_types: ["rerun_*"]
    services: [api]
    min_confidence: 0.5
  - name: allow-agents-flush
    effect: allow
    action_types: [flush_cache]
    producers: ["agent:*"]
  - name: allow-drop-database
    effect: allow
    action_types: [drop_database]
    min_confidence: 0
  - name: allow-rotate-anywhere
    effect: allow
    action_types: [rotate_keys]
  - name: forbid-evil-agents
    effect: forbid
    producers: ["agent:evil-*"]
  - name: forbid-frozen-project
    effect: forbid
    projects: [frozen]
`;

describe("autonomous mode (a YAML policy file)", () => {
  let t: TestServer;
  beforeAll(async () => {
    const file = await writePolicy(AUTONOMOUS_POLICY);
    t = await startTestServer({ ACTIONQ_POLICY: file, ACTIONQ_RATE_LIMIT_PER_HOUR: "100000" });
  });
  afterAll(async () => {
    await t?.close();
  });

  const decide = async (request: Record<string, unknown>) => (await enqueue(t, { createdBy: "human:alice", ...request })).action;

  it("GetPolicy: the registry is merged over the built-in one, and default_risk applies to unknown types", async () => {
    const { policyVersion, policy } = await getPolicy(t);
    expect(policyVersion).toMatch(VERSION("ops-auto"));
    expect(policy).toMatchObject({
      mode: "autonomous",
      default_risk: "guarded",
      action_types: {
        collect_diagnostics: "safe",
        redeploy_service: "guarded",
        rerun_healthcheck: "guarded",
        drop_database: "dangerous",
        read_metrics: "safe",
      },
    });
    expect((policy.rules as { name: string }[]).map((rule) => rule.name)).toEqual([
      "allow-redeploy-web",
      "allow-restart-on-nodes",
      "allow-rerun-api",
      "allow-agents-flush",
      "allow-drop-database",
      "allow-rotate-anywhere",
      "forbid-evil-agents",
      "forbid-frozen-project",
    ]);
    const unknown = await decide({ actionType: unique("unknown_type"), confidence: 1 });
    expect(unknown.riskLevel).toBe(RISK.guarded);
    await expectDecision(t, unknown, { approved: false, mode: "autonomous", rule: null, eligible: false });
  });

  it("the policy file's registry can raise a built-in type; lowering below it or below default_risk is refused", async () => {
    expect((await decide({ actionType: "rerun_healthcheck", service: "web", confidence: 1 })).riskLevel).toBe(RISK.guarded);
    await expectRefused(t, () => decide({ actionType: "rerun_healthcheck", riskLevel: RISK.safe }), {
      code: status.INVALID_ARGUMENT,
      reason: "INVALID_FIELD",
      field: "risk_level",
    });
    await expectRefused(t, () => decide({ actionType: unique("unlisted"), riskLevel: RISK.safe }), {
      code: status.INVALID_ARGUMENT,
      reason: "INVALID_FIELD",
      field: "risk_level",
    });
    await expectRefused(t, () => decide({ actionType: "drop_database", riskLevel: RISK.guarded }), {
      code: status.INVALID_ARGUMENT,
      reason: "INVALID_FIELD",
      field: "risk_level",
    });
    expect((await decide({ actionType: "drop_database" })).riskLevel).toBe(RISK.dangerous);
  });

  it("SAFE is approved by policy:autonomous at or above min_confidence, and waits below it or without a confidence", async () => {
    await expectDecision(t, await decide({ actionType: "collect_diagnostics", confidence: 0.8 }), {
      approved: true,
      mode: "autonomous",
      rule: null,
      eligible: true,
    });
    await expectDecision(t, await decide({ actionType: "read_metrics", confidence: 0.99 }), { approved: true, mode: "autonomous", rule: null, eligible: true });
    const low = await decide({ actionType: "collect_diagnostics", confidence: 0.79 });
    await expectDecision(t, low, { approved: false, mode: "autonomous", eligible: false });
    expect(low.approvalsRequired).toBe(1);
    await expectDecision(t, await decide({ actionType: "collect_diagnostics" }), { approved: false, mode: "autonomous", eligible: false });
  });

  it("GUARDED with no matching allow rule waits, whatever the confidence (deny by default)", async () => {
    const action = await decide({ actionType: "redeploy_service", project: "billing", confidence: 1 });
    await expectDecision(t, action, { approved: false, mode: "autonomous", rule: null, eligible: false });
    expect(action.approvalsRequired).toBe(1);
  });

  it("an allow rule uses its own min_confidence, above the global one (projects, with a glob)", async () => {
    await expectDecision(t, await decide({ actionType: "redeploy_service", project: "web", confidence: 0.9 }), {
      approved: true,
      mode: "autonomous",
      rule: "allow-redeploy-web",
      eligible: true,
    });
    await expectDecision(t, await decide({ actionType: "redeploy_service", project: "shop-eu", confidence: 0.95 }), {
      approved: true,
      mode: "autonomous",
      rule: "allow-redeploy-web",
      eligible: true,
    });
    // 0.85 passes the global 0.8 but not the rule's 0.9.
    await expectDecision(t, await decide({ actionType: "redeploy_service", project: "web", confidence: 0.85 }), {
      approved: false,
      mode: "autonomous",
      eligible: false,
    });
    await expectDecision(t, await decide({ actionType: "redeploy_service", project: "web" }), { approved: false, mode: "autonomous", eligible: false });
    // Globs match the whole value.
    for (const project of ["shop", "myshop-eu", "webshop", ""]) {
      await expectDecision(t, await decide({ actionType: "redeploy_service", project, confidence: 1 }), {
        approved: false,
        mode: "autonomous",
        eligible: false,
      });
    }
  });

  it("an allow rule's min_confidence may be below the global one (services; action types with a glob)", async () => {
    await expectDecision(t, await decide({ actionType: "rerun_deployment_stage", service: "api", confidence: 0.6 }), {
      approved: true,
      mode: "autonomous",
      rule: "allow-rerun-api",
      eligible: true,
    });
    await expectDecision(t, await decide({ actionType: "rerun_healthcheck", service: "api", confidence: 0.5 }), {
      approved: true,
      mode: "autonomous",
      rule: "allow-rerun-api",
      eligible: true,
    });
    await expectDecision(t, await decide({ actionType: "rerun_deployment_stage", service: "api", confidence: 0.49 }), {
      approved: false,
      mode: "autonomous",
      eligible: false,
    });
    await expectDecision(t, await decide({ actionType: "rerun_deployment_stage", service: "web", confidence: 1 }), {
      approved: false,
      mode: "autonomous",
      eligible: false,
    });
    // The rule names its types: another guarded type on the same service waits.
    await expectDecision(t, await decide({ actionType: "redeploy_service", service: "api", confidence: 1 }), {
      approved: false,
      mode: "autonomous",
      eligible: false,
    });
  });

  it("an allow rule without min_confidence uses autonomous.min_confidence (nodes, with a glob)", async () => {
    await expectDecision(t, await decide({ actionType: "restart_pod", node: "node-7", confidence: 0.8 }), {
      approved: true,
      mode: "autonomous",
      rule: "allow-restart-on-nodes",
      eligible: true,
    });
    await expectDecision(t, await decide({ actionType: "restart_pod", node: "node-7", confidence: 0.79 }), {
      approved: false,
      mode: "autonomous",
      eligible: false,
    });
    await expectDecision(t, await decide({ actionType: "restart_pod", node: "db-node-1", confidence: 1 }), {
      approved: false,
      mode: "autonomous",
      eligible: false,
    });
    await expectDecision(t, await decide({ actionType: "restart_pod", confidence: 1 }), { approved: false, mode: "autonomous", eligible: false });
  });

  it("a rule on producers matches created_by with a glob", async () => {
    await expectDecision(t, await decide({ actionType: "flush_cache", createdBy: "agent:triage", confidence: 0.9 }), {
      approved: true,
      mode: "autonomous",
      rule: "allow-agents-flush",
      eligible: true,
    });
    await expectDecision(t, await decide({ actionType: "flush_cache", createdBy: "human:alice", confidence: 0.9 }), {
      approved: false,
      mode: "autonomous",
      eligible: false,
    });
    await expectDecision(t, await decide({ actionType: "flush_cache", createdBy: "script:agent:x", confidence: 0.9 }), {
      approved: false,
      mode: "autonomous",
      eligible: false,
    });
  });

  it("a forbid rule beats an allow rule above it, and holds SAFE actions too", async () => {
    const evil = await decide({ actionType: "flush_cache", createdBy: "agent:evil-bot", confidence: 1 });
    const policy = await expectDecision(t, evil, { approved: false, mode: "autonomous", rule: "forbid-evil-agents", eligible: false });
    expect(policy.decision).toBe("needs_approval");
    await expectDecision(t, await decide({ actionType: "collect_diagnostics", project: "frozen", confidence: 1 }), {
      approved: false,
      mode: "autonomous",
      rule: "forbid-frozen-project",
      eligible: false,
    });
    await expectDecision(t, await decide({ actionType: "rotate_keys", project: "frozen", confidence: 1 }), {
      approved: false,
      mode: "autonomous",
      rule: "forbid-frozen-project",
      eligible: false,
    });
    // The same requests outside the forbidden scope are approved.
    await expectDecision(t, await decide({ actionType: "rotate_keys", project: "thawed", confidence: 1 }), {
      approved: true,
      mode: "autonomous",
      rule: "allow-rotate-anywhere",
      eligible: true,
    });
  });

  it("DANGEROUS is never auto-approved, even with an allow rule and full confidence, and needs 2 approvers", async () => {
    const byType = await decide({ actionType: "drop_database", confidence: 1 });
    await expectDecision(t, byType, { approved: false, mode: "autonomous", eligible: false });
    expect(byType.approvalsRequired).toBe(2);
    // Raised to DANGEROUS by the producer: the allow rule for the type no longer applies.
    const raised = await decide({ actionType: "rotate_keys", riskLevel: RISK.dangerous, confidence: 1 });
    await expectDecision(t, raised, { approved: false, mode: "autonomous", eligible: false });
    expect(raised.approvalsRequired).toBe(2);
    const raisedSafe = await decide({ actionType: "collect_diagnostics", riskLevel: RISK.dangerous, confidence: 1 });
    await expectDecision(t, raisedSafe, { approved: false, mode: "autonomous", eligible: false });
  });

  it("approval_required makes an eligible action wait and keeps autonomous_eligible true", async () => {
    const asked = await decide({ actionType: "rotate_keys", confidence: 1, approvalRequired: true });
    await expectDecision(t, asked, { approved: false, mode: "autonomous", eligible: true });
    const askedSafe = await decide({ actionType: "collect_diagnostics", confidence: 1, approvalRequired: true });
    await expectDecision(t, askedSafe, { approved: false, mode: "autonomous", eligible: true, reason: /asked/ });
  });
});

describe("an invalid policy file at start", () => {
  beforeAll(() => {
    requireBuiltCli();
  });

  const cases: [string, string, string][] = [
    ["a rule's effect", "mode: standard\nrules:\n  - name: r1\n    effect: maybe\n", "rules[0].effect"],
    ["the mode", "mode: yolo\n", "mode"],
    ["a registry level", "action_types:\n  wipe_disk: extreme\n", "action_types.wipe_disk"],
    ["the default risk", "default_risk: harmless\n", "default_risk"],
    ["autonomous.min_confidence above 1", "mode: autonomous\nautonomous:\n  min_confidence: 1.5\n", "autonomous.min_confidence"],
    ["a rule without a name", "rules:\n  - name: ok\n    effect: allow\n  - effect: forbid\n", "rules[1].name"],
    ["two rules with the same name", "rules:\n  - name: same\n    effect: allow\n  - name: same\n    effect: forbid\n", "rules[1].name"],
    ["a rule's min_confidence out of range", "rules:\n  - name: r1\n    effect: allow\n    min_confidence: -0.1\n", "rules[0].min_confidence"],
    ["a quorum of 0", "quorum:\n  dangerous: 0\n", "quorum.dangerous"],
    ["an approval_ttl that is not a duration", "approval_ttl:\n  guarded: soon\n", "approval_ttl.guarded"],
    ["a rule list that is not a list", "rules: {name: r1}\n", "rules"],
    ["a match list entry that is not a string", "rules:\n  - name: r1\n    effect: allow\n    projects: [{a: 1}]\n", "rules[0].projects[0]"],
    [
      "a change window's time zone",
      "windows:\n  - name: freeze\n    effect: hold_claims\n    time_zone: Europe/Atlantis\n    recurring: [{ from: 'Fri 16:00', to: 'Mon 08:00' }]\n",
      "windows[0].time_zone",
    ],
    [
      "a change window's span",
      "windows:\n  - name: freeze\n    effect: hold_claims\n    time_zone: UTC\n    recurring: [{ from: 'Fri 16:00', to: 'Funday 08:00' }]\n",
      "windows[0].recurring[0].to",
    ],
  ];

  // Each case is a process start of about a second: run them side by side.
  it.concurrent.for(cases)("exits 2 naming the key when %s is invalid", async ([, yaml, keyPath], { expect }) => {
    const file = await writePolicy(yaml);
    const result = await runToEnd(
      ["serve"],
      { ACTIONQ_URL: databaseUrl(), ACTIONQ_SCHEMA: freshSchema(), ACTIONQ_LISTEN: "127.0.0.1:0", ACTIONQ_POLICY: file, ACTIONQ_LOG_LEVEL: "info" },
      15_000,
    );
    expect({ code: result.code, stderr: result.stderr }).toMatchObject({ code: 2 });
    expect(result.stderr).toContain("ACTIONQ_POLICY");
    expect(result.stderr).toContain(file);
    expect(result.stderr).toContain(`${keyPath}:`);
    expect(result.stdout).not.toContain("actionq is serving");
  });

  it("exits 2 naming an unknown key (a misspelt setting must not be ignored)", async () => {
    const file = await writePolicy("mode: autonomous\nautonomous:\n  min_confidance: 0.99\n");
    const result = await runToEnd(
      ["serve"],
      { ACTIONQ_URL: databaseUrl(), ACTIONQ_SCHEMA: freshSchema(), ACTIONQ_LISTEN: "127.0.0.1:0", ACTIONQ_POLICY: file },
      15_000,
    );
    expect({ code: result.code, stderr: result.stderr }).toMatchObject({ code: 2 });
    expect(result.stderr).toContain("min_confidance");
  });

  it("exits 2 on a file that is missing or not YAML, naming ACTIONQ_POLICY", async () => {
    const missing = `${await writePolicy("mode: standard\n")}.missing`;
    const notYaml = await writePolicy("mode: [standard\nrules: {\n");
    for (const file of [missing, notYaml]) {
      const result = await runToEnd(
        ["serve"],
        { ACTIONQ_URL: databaseUrl(), ACTIONQ_SCHEMA: freshSchema(), ACTIONQ_LISTEN: "127.0.0.1:0", ACTIONQ_POLICY: file },
        15_000,
      );
      expect({ file, code: result.code, stderr: result.stderr }).toMatchObject({ code: 2 });
      expect(result.stderr).toContain("ACTIONQ_POLICY");
      expect(result.stderr).toContain(file);
    }
  });
});

interface ReloadResponse {
  policyVersion: string;
  changed: boolean;
}

async function policyReloadedEvents(t: { grpc: GrpcClient }): Promise<WireEvent[]> {
  const res = await t.grpc.unary<{ events: WireEvent[] }>("ListEvents", { eventTypes: ["policy_reloaded"], pageSize: 1000 });
  return res.events;
}

describe("ReloadPolicy", () => {
  let t: TestServer;
  let file: string;
  const FIRST = "name: reload-a\nmode: standard\nrules:\n  - name: freeze-ops\n    effect: forbid\n    projects: [ops]\n";
  const SECOND = "name: reload-b\nmode: recommend-only\n";
  beforeAll(async () => {
    file = await writePolicy(FIRST);
    t = await startTestServer({ ACTIONQ_POLICY: file });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("a forbid rule holds a SAFE action even in standard mode", async () => {
    const held = (await enqueue(t, { actionType: "collect_diagnostics", project: "ops" })).action;
    await expectDecision(t, held, { approved: false, mode: "standard", rule: "freeze-ops", eligible: false });
    const free = (await enqueue(t, { actionType: "collect_diagnostics", project: "dev" })).action;
    await expectDecision(t, free, { approved: true, mode: "standard", rule: null, eligible: true });
  });

  it("with the file unchanged: changed=false, the same version, and no event", async () => {
    const { policyVersion } = await getPolicy(t);
    const before = await snapshot(t.db);
    const res = await t.grpc.unary<ReloadResponse>("ReloadPolicy", { actor: "human:ops" });
    expect(res).toEqual({ policyVersion, changed: false });
    expect(await snapshot(t.db)).toBe(before);
  });

  it("a changed file changes the decisions at once and writes policy_reloaded {from, to, source} by the actor", async () => {
    const from = (await getPolicy(t)).policyVersion;
    expect(from).toMatch(VERSION("reload-a"));
    await rewritePolicy(file, SECOND);
    const res = await t.grpc.unary<ReloadResponse>("ReloadPolicy", { actor: "human:ops" });
    expect(res.changed).toBe(true);
    expect(res.policyVersion).toMatch(VERSION("reload-b"));
    expect(await getPolicy(t)).toMatchObject({ policyVersion: res.policyVersion, source: file, policy: { mode: "recommend-only", name: "reload-b" } });
    expect((await t.grpc.unary<{ policyVersion: string }>("GetQueueStats", {})).policyVersion).toBe(res.policyVersion);

    const reloaded = (await policyReloadedEvents(t)).filter((e) => fromStruct(e.payload).to === res.policyVersion);
    expect(reloaded).toHaveLength(1);
    expect(reloaded[0]).toMatchObject({ actionId: "0", actor: "human:ops" });
    const payload = fromStruct(reloaded[0]!.payload);
    expect(payload).toMatchObject({ from, to: res.policyVersion });
    expect(typeof payload.source).toBe("string");

    const now = (await enqueue(t, { actionType: "collect_diagnostics", project: "dev", confidence: 1 })).action;
    expect(now.policyVersion).toBe(res.policyVersion);
    await expectDecision(t, now, { approved: false, mode: "recommend-only", eligible: false });
  });

  it("an invalid file is INVALID_ARGUMENT naming the bad key; the policy in force stays and nothing is written", async () => {
    // Start from the recommend-only policy, whatever ran before.
    await rewritePolicy(file, SECOND);
    await t.grpc.unary<ReloadResponse>("ReloadPolicy", { actor: "human:ops" });
    const before = await getPolicy(t);
    expect(before.policyVersion).toMatch(VERSION("reload-b"));
    await rewritePolicy(file, "name: reload-c\nmode: standard\nrules:\n  - name: r\n    effect: perhaps\n");
    const snap = await snapshot(t.db);
    const error = await grpcError(t.grpc.unary("ReloadPolicy", { actor: "human:ops" }));
    expect(await snapshot(t.db)).toBe(snap);
    expect({ code: status[error.code], message: messageOf(error) }).toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(messageOf(error)).toContain("rules[0].effect");
    // The spec fixes the code, not the reason name; there must be one.
    expect(errorInfoOf(error)?.reason).toMatch(/^[A-Z][A-Z_]+$/);
    expect(await getPolicy(t)).toEqual(before);
    const still = (await enqueue(t, { actionType: "collect_diagnostics", project: "dev", confidence: 1 })).action;
    expect(still.policyVersion).toBe(before.policyVersion);
    await expectDecision(t, still, { approved: false, mode: "recommend-only", eligible: false });

    // A file that is gone is refused the same way.
    await rm(file);
    const gone = await grpcError(t.grpc.unary("ReloadPolicy", { actor: "human:ops" }));
    expect(status[gone.code]).toBe("INVALID_ARGUMENT");
    expect(messageOf(gone)).toContain(file);
    expect(await getPolicy(t)).toEqual(before);

    // Fixing the file and reloading again works, from the version in force.
    await rewritePolicy(file, FIRST);
    const res = await t.grpc.unary<ReloadResponse>("ReloadPolicy", { actor: "human:ops" });
    expect(res.changed).toBe(true);
    expect(res.policyVersion).toMatch(VERSION("reload-a"));
    const last = (await policyReloadedEvents(t)).at(-1)!;
    expect(fromStruct(last.payload)).toMatchObject({ from: before.policyVersion, to: res.policyVersion });
  });
});

describe("SIGHUP on a running `actionq serve`", () => {
  let schema: string;
  let proc: ActionqProcess | undefined;
  let client: GrpcClient | undefined;
  beforeAll(() => {
    requireBuiltCli();
  });
  afterAll(async () => {
    client?.close();
    if (proc?.alive) proc.child.kill("SIGKILL");
    if (schema) await dropSchema(databaseUrl(), schema);
  });

  it("reloads the file: decisions change and policy_reloaded is written by server:sighup; an invalid file is refused and the old policy stays", {
    timeout: 90_000,
  }, async () => {
    schema = freshSchema();
    const file = await writePolicy("name: hup-a\nmode: standard\n");
    const port = await freePort();
    proc = new ActionqProcess(["serve"], {
      ACTIONQ_URL: databaseUrl(),
      ACTIONQ_SCHEMA: schema,
      ACTIONQ_LISTEN: `127.0.0.1:${port}`,
      ACTIONQ_POLICY: file,
      ACTIONQ_LOG_LEVEL: "info",
      ACTIONQ_SHUTDOWN_GRACE_SECONDS: "1",
    });
    await proc.waitForLog("actionq is serving", 60_000);
    client = new GrpcClient(`127.0.0.1:${port}`);
    const c = client;
    const version = async () => (await c.unary<{ policyVersion: string }>("GetPolicy", {})).policyVersion;
    const enqueueDiag = async () =>
      (await c.unary<EnqueueResponse>("EnqueueAction", { actionType: "collect_diagnostics", createdBy: "human:hup", confidence: 1 })).action;

    const first = await version();
    expect(first).toMatch(VERSION("hup-a"));
    expect((await enqueueDiag()).status).toBe(STATUS.approved);

    await rewritePolicy(file, "name: hup-b\nmode: recommend-only\n");
    proc.child.kill("SIGHUP");
    const second = await eventually(
      async () => {
        const v = await version();
        return v !== first ? v : undefined;
      },
      "the new policy version after SIGHUP",
      10_000,
      50,
    );
    expect(second).toMatch(VERSION("hup-b"));
    const held = await enqueueDiag();
    expect(held.status).toBe(STATUS.pending);
    expect(held.policyVersion).toBe(second);
    const reloaded = await policyReloadedEvents({ grpc: c });
    expect(reloaded).toHaveLength(1);
    expect(reloaded[0]!.actor).toBe("server:sighup");
    expect(fromStruct(reloaded[0]!.payload)).toMatchObject({ from: first, to: second });

    // An invalid file: the server keeps running on the policy it had.
    await rewritePolicy(file, "name: hup-c\nmode: sometimes\n");
    proc.child.kill("SIGHUP");
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(proc.alive).toBe(true);
    expect(await version()).toBe(second);
    expect((await enqueueDiag()).status).toBe(STATUS.pending);
    expect(await policyReloadedEvents({ grpc: c })).toHaveLength(1);

    proc.child.kill("SIGTERM");
    expect(await proc.exitWithin(30_000)).toEqual({ code: 0, signal: null });
  });
});
