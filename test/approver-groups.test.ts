// Approver groups over the wire, with an auth file: the policy requires
// that the approvers of an action include members of named groups (per
// risk level, and per rule), the requirement is kept with the action, the
// approval event says which requirement each approval satisfied, and an
// action that lacks a group member stays PENDING and says so. Bad groups
// in the auth file and bad requirements in the policy are refused, naming
// the key.
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bearer, outcomeOf, principal, removeAuthDirs, writeAuthFile } from "./support/auth.js";
import { runActionctl } from "./support/actionctl.js";
import { type TestServer, closeWithin, grpcError, startTestServer } from "./support/harness.js";
import { requireBuiltCli } from "./support/processes.js";
import { RISK, eventTypes, removePolicyDirs, rewritePolicy, unique, writePolicy } from "./support/safety.js";
import { STATUS, type WireAction, errorInfoOf, expectRefused, fromStruct, messageOf } from "./support/wire.js";

interface Requirement {
  group: string;
  count: number;
  satisfiedBy: string[];
  source: string;
}
type GroupedAction = WireAction & { approvalRequirements: Requirement[]; approvalsNeeded: string };

const producer = principal("agent:proposer", ["producer", "viewer"]);
const ann = principal("human:ann", ["approver", "viewer"]);
const ben = principal("human:ben", ["approver", "viewer"]);
const sre = principal("human:sre-lead", ["approver", "viewer"], { groups: ["sre-leads"] });
const dba = principal("human:dba", ["approver", "viewer"], { groups: ["dba", "oncall"] });
const ops = principal("human:ops", ["admin"]);
/** Approvers outside every group, for the race. */
const crowd = Array.from({ length: 6 }, (_, index) => principal(`human:crowd-${index}`, ["approver"]));

const POLICY = `
name: grouped
quorum: { dangerous: 2 }
approvers:
  dangerous: [{ group: sre-leads, count: 1 }]
rules:
  - name: prod-db
    effect: allow
    projects: [prod-db]
    approvers: [{ group: dba, count: 1 }]
  - name: two-groups
    effect: forbid
    projects: [billing]
    approvers: [{ group: dba }, { group: oncall }]
`;

afterAll(async () => {
  await removePolicyDirs();
  await removeAuthDirs();
});

function as(who: { tokens: string[] }) {
  return bearer(who.tokens[0]);
}

describe("approver groups with an auth file", () => {
  let t: TestServer;
  let policyFile: string;

  const enqueue = async (risk: string, extra: Record<string, unknown> = {}) =>
    (await t.grpc.unary<{ action: GroupedAction }>("EnqueueAction", { actionType: unique("grouped"), riskLevel: risk, ...extra }, as(producer))).action;
  const approve = async (id: string, who: { tokens: string[] }, note = "") =>
    (await t.grpc.unary<{ action: GroupedAction }>("ApproveAction", { id, note }, as(who))).action;
  const get = (id: string) =>
    t.grpc.unary<{ action: GroupedAction; events: { eventType: string; actor: string; payload: unknown }[] }>("GetAction", { id }, as(ops));
  const payloadOf = (event: { payload: unknown }) => fromStruct(event.payload as never);

  beforeAll(async () => {
    policyFile = await writePolicy(POLICY, "policy.yaml");
    t = await startTestServer({
      ACTIONQ_AUTH_FILE: await writeAuthFile([producer, ann, ben, sre, dba, ops, ...crowd]),
      ACTIONQ_POLICY: policyFile,
      ACTIONQ_RATE_LIMIT_PER_HOUR: "100000",
    });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("GetCaller names the caller's groups, sorted; none when it has none", async () => {
    expect(await t.grpc.unary("GetCaller", {}, as(dba))).toMatchObject({ name: "human:dba", groups: ["dba", "oncall"] });
    expect(await t.grpc.unary("GetCaller", {}, as(ann))).toMatchObject({ name: "human:ann", groups: [] });
  });

  it("a DANGEROUS action approved by two principals outside sre-leads stays PENDING and says it needs 1 approver from group sre-leads", async () => {
    const action = await enqueue(RISK.dangerous);
    expect(action).toMatchObject({
      status: STATUS.pending,
      approvalsRequired: 2,
      approvalRequirements: [{ group: "sre-leads", count: 1, satisfiedBy: [], source: "approvers.dangerous" }],
      approvalsNeeded: "needs 2 approvers, including 1 from group sre-leads",
    });

    const first = await approve(action.id, ann, "looks right");
    expect(first).toMatchObject({ status: STATUS.pending, approvers: ["human:ann"], approvalsNeeded: "needs 1 approver from group sre-leads" });
    // The quorum is met, the group is not: the approval counts, the action waits.
    const second = await approve(action.id, ben);
    expect(second).toMatchObject({
      status: STATUS.pending,
      approvers: ["human:ann", "human:ben"],
      approvalRequirements: [{ group: "sre-leads", count: 1, satisfiedBy: [] }],
      approvalsNeeded: "needs 1 approver from group sre-leads",
    });
    const { action: read, events } = await get(action.id);
    expect(read).toMatchObject({ status: STATUS.pending, approvalsNeeded: "needs 1 approver from group sre-leads" });
    expect(eventTypes(events as never)).toEqual(["action_enqueued", "approval_granted", "approval_granted"]);
    expect(payloadOf(events[1]!)).toMatchObject({ groups: [], satisfies: null, approvers: ["human:ann"] });
    expect(payloadOf(events[2]!)).toMatchObject({ groups: [], satisfies: null, approvers: ["human:ann", "human:ben"] });
    const claim = await t.grpc.unary<{ claim: unknown }>("ClaimAction", { actionTypes: [action.actionType] }, as(ops));
    expect(claim.claim ?? null, "a PENDING action is not claimable").toBeNull();

    // A member of the group approving later completes it.
    const third = await approve(action.id, sre, "on call lead");
    expect(third).toMatchObject({
      status: STATUS.approved,
      approvedBy: "human:sre-lead",
      approvers: ["human:ann", "human:ben", "human:sre-lead"],
      approvalRequirements: [{ group: "sre-leads", count: 1, satisfiedBy: ["human:sre-lead"] }],
      approvalsNeeded: "",
    });
    const after = await get(action.id);
    expect(eventTypes(after.events as never)).toEqual(["action_enqueued", "approval_granted", "approval_granted", "action_approved"]);
    expect(after.events[3]!.actor).toBe("human:sre-lead");
    expect(payloadOf(after.events[3]!)).toMatchObject({ groups: ["sre-leads"], satisfies: "group sre-leads (1 of 1)", note: "on call lead" });
  });

  it("a group member counts toward the quorum too: the group first, then anyone completes it", async () => {
    const action = await enqueue(RISK.dangerous);
    const first = await approve(action.id, sre);
    expect(first).toMatchObject({ status: STATUS.pending, approvalsNeeded: "needs 1 more approver" });
    const { events } = await get(action.id);
    expect(payloadOf(events[1]!)).toMatchObject({ satisfies: "group sre-leads (1 of 1)" });
    const second = await approve(action.id, ann);
    expect(second.status).toBe(STATUS.approved);
    const after = await get(action.id);
    expect(payloadOf(after.events[2]!)).toMatchObject({ satisfies: null, groups: [] });
  });

  it("a rule's approvers apply when it matches: GUARDED in prod-db needs a dba, and SAFE there waits for one instead of being approved by policy", async () => {
    const guarded = await enqueue(RISK.guarded, { project: "prod-db" });
    expect(guarded).toMatchObject({
      status: STATUS.pending,
      approvalsRequired: 1,
      approvalRequirements: [{ group: "dba", count: 1, satisfiedBy: [], source: "rule prod-db" }],
    });
    const byAnn = await approve(guarded.id, ann);
    expect(byAnn).toMatchObject({ status: STATUS.pending, approvalsNeeded: "needs 1 approver from group dba" });
    const byDba = await approve(guarded.id, dba);
    expect(byDba).toMatchObject({ status: STATUS.approved, approvedBy: "human:dba" });
    const { events } = await get(guarded.id);
    expect(payloadOf(events[2]!)).toMatchObject({ satisfies: "group dba (1 of 1)", groups: ["dba", "oncall"] });

    const safe = await enqueue(RISK.safe, { project: "prod-db" });
    expect(safe).toMatchObject({ status: STATUS.pending, approvalsRequired: 1, approvalsNeeded: "needs 1 approver from group dba" });
    const enqueued = payloadOf((await get(safe.id)).events[0]!) as { policy: Record<string, unknown> };
    expect(String(enqueued.policy.reason)).toContain("the policy names its approvers");

    // Elsewhere the rule does not match: SAFE is approved by policy.
    expect((await enqueue(RISK.safe, { project: "web" })).status).toBe(STATUS.approved);
  });

  it("a forbid rule's approvers apply too, and a quorum too small for them is raised and the decision says so", async () => {
    const action = await enqueue(RISK.guarded, { project: "billing" });
    expect(action).toMatchObject({
      status: STATUS.pending,
      approvalsRequired: 2,
      approvalsNeeded: "needs approvers: 1 from group dba and 1 from group oncall",
    });
    const enqueued = payloadOf((await get(action.id)).events[0]!) as { policy: Record<string, unknown> };
    expect(enqueued.policy).toMatchObject({
      approvals_required: 2,
      quorum_raised: "quorum.guarded is 1; raised to 2 to hold the approver groups",
      approval_requirements: [
        { group: "dba", count: 1, from: "rule two-groups" },
        { group: "oncall", count: 1, from: "rule two-groups" },
      ],
    });
    // One approver in both groups meets both requirements; the raised
    // quorum still wants a second person.
    expect((await approve(action.id, dba)).approvalsNeeded).toBe("needs 1 more approver");
    expect((await approve(action.id, ann)).status).toBe(STATUS.approved);
  });

  it("a DANGEROUS prod-db action needs both groups; one approver in neither leaves both open", async () => {
    const action = await enqueue(RISK.dangerous, { project: "prod-db" });
    expect(action.approvalRequirements.map((r) => [r.group, r.count, r.source])).toEqual([
      ["sre-leads", 1, "approvers.dangerous"],
      ["dba", 1, "rule prod-db"],
    ]);
    expect(action.approvalsRequired).toBe(2);
    expect((await approve(action.id, ann)).approvalsNeeded).toBe("needs approvers: 1 from group sre-leads and 1 from group dba");
    expect((await approve(action.id, dba)).approvalsNeeded).toBe("needs 1 approver from group sre-leads");
    expect((await approve(action.id, sre)).status).toBe(STATUS.approved);
  });

  it("the requirement is decided at enqueue: a policy reload that drops it leaves a PENDING action needing its group", async () => {
    const pending = await enqueue(RISK.dangerous);
    await rewritePolicy(policyFile, "name: relaxed\nquorum: { dangerous: 2 }\n");
    try {
      expect(await t.grpc.unary("ReloadPolicy", {}, as(ops))).toMatchObject({ changed: true });
      const fresh = await enqueue(RISK.dangerous);
      expect(fresh).toMatchObject({ approvalRequirements: [], approvalsNeeded: "needs 2 approvers" });

      await approve(pending.id, ann);
      const second = await approve(pending.id, ben);
      expect(second).toMatchObject({ status: STATUS.pending, approvalsNeeded: "needs 1 approver from group sre-leads" });
      expect((await get(pending.id)).action.approvalRequirements).toEqual([{ group: "sre-leads", count: 1, satisfiedBy: [], source: "approvers.dangerous" }]);
      // Under the new policy two approvers are enough.
      await approve(fresh.id, ann);
      expect((await approve(fresh.id, ben)).status).toBe(STATUS.approved);
    } finally {
      await rewritePolicy(policyFile, POLICY);
      await t.grpc.unary("ReloadPolicy", {}, as(ops));
    }
  });

  it("concurrent approvals: six outside the group leave it PENDING with six approvers; with a member among them it is approved exactly once", async () => {
    const outsiders = await enqueue(RISK.dangerous);
    await Promise.all(crowd.map((who) => approve(outsiders.id, who)));
    const waiting = await get(outsiders.id);
    expect(waiting.action).toMatchObject({ status: STATUS.pending, approvalsNeeded: "needs 1 approver from group sre-leads" });
    expect(waiting.action.approvers).toHaveLength(6);

    const mixed = await enqueue(RISK.dangerous);
    // Those that arrive after the action was approved are refused as such.
    const outcomes = await Promise.all([...crowd.slice(0, 5), sre].map((who) => outcomeOf(approve(mixed.id, who))));
    for (const outcome of outcomes) if (outcome.code !== "OK") expect(outcome).toMatchObject({ code: "FAILED_PRECONDITION", reason: "INVALID_TRANSITION" });
    const { action, events } = await get(mixed.id);
    expect(action.status).toBe(STATUS.approved);
    const approvals = events.filter((e) => e.eventType === "approval_granted" || e.eventType === "action_approved");
    expect(approvals.filter((e) => e.eventType === "action_approved")).toHaveLength(1);
    expect(approvals.at(-1)!.eventType, "nothing is approved after the action left PENDING").toBe("action_approved");
    expect(approvals.filter((e) => payloadOf(e).satisfies !== null).map((e) => e.actor)).toEqual(["human:sre-lead"]);
    expect(action.approvers).toContain("human:sre-lead");
  });

  it("the database refuses a PENDING action whose approvals are complete, and any change of its requirements", async () => {
    const action = await enqueue(RISK.dangerous);
    await approve(action.id, ann);
    await approve(action.id, ben);
    // Forging a group membership past the guard: the row would be PENDING
    // with every requirement met, which the table does not allow.
    await expect(t.db.query(`UPDATE actions SET approver_groups = '{"human:ann": ["sre-leads"]}'::jsonb WHERE id = $1`, [action.id])).rejects.toThrow(
      /pending_until_approvals_complete/,
    );
    await expect(t.db.query(`UPDATE actions SET approval_requirements = '[]'::jsonb WHERE id = $1`, [action.id])).rejects.toThrow(
      /cannot change its approval requirements/,
    );
    expect((await get(action.id)).action).toMatchObject({ status: STATUS.pending, approvalsNeeded: "needs 1 approver from group sre-leads" });
  });

  it("actionctl prints the caller's groups, what an approval still needs, and what each approval satisfied", async () => {
    requireBuiltCli();
    const action = await enqueue(RISK.dangerous);
    const cli = (who: { tokens: string[] }, args: string[]) =>
      runActionctl(["-o", "table", ...args], { ACTIONQ_ADDR: t.address, ACTIONQ_TOKEN: who.tokens[0]! });
    const whoami = await cli(sre, ["whoami"]);
    expect(whoami.code).toBe(0);
    expect(whoami.stdout).toMatch(/groups\s+sre-leads/);
    const approved = await cli(ann, ["approve", action.id]);
    expect(approved.code).toBe(0);
    expect(approved.stdout).toContain("approval recorded: 1 of 2; needs 1 approver from group sre-leads");
    const shown = await cli(ann, ["show", action.id]);
    expect(shown.stdout).toMatch(/open\s+needs 1 approver from group sre-leads/);
    expect(shown.stdout).toMatch(/groups\s+sre-leads 0 of 1/);
    await cli(ben, ["approve", action.id]);
    await cli(sre, ["approve", action.id]);
    const after = await cli(ann, ["show", action.id]);
    expect(after.stdout).toMatch(/groups\s+sre-leads 1 of 1 \(human:sre-lead\)/);
    const history = await cli(ann, ["history", action.id]);
    expect(history.stdout).toContain("satisfies group sre-leads (1 of 1)");
  });

  it.each([
    ["a group that is not a name", "approvers:\n  dangerous: [{ group: 'sre leads', count: 1 }]\n", "approvers.dangerous[0].group"],
    ["a count of 0", "rules:\n  - { name: r, effect: allow, approvers: [{ group: dba, count: 0 }] }\n", "rules[0].approvers[0].count"],
    ["an unknown key", "approvers:\n  dangerous: [{ group: dba, cuont: 1 }]\n", "approvers.dangerous[0].cuont"],
    ["a group listed twice", "approvers:\n  dangerous: [{ group: dba }, { group: dba }]\n", "approvers.dangerous[1].group"],
    ["more group approvers than the quorum", "quorum: { guarded: 1 }\napprovers:\n  guarded: [{ group: dba }, { group: sre-leads }]\n", "approvers.guarded"],
  ])("a policy with %s is refused, naming the key, and the policy in force stays", async (_label, text, key) => {
    await rewritePolicy(policyFile, text);
    try {
      const error = await expectRefused(t, () => t.grpc.unary("ReloadPolicy", {}, as(ops)), { code: status.INVALID_ARGUMENT, reason: "INVALID_POLICY" });
      expect(messageOf(error)).toContain(`${key}:`);
    } finally {
      await rewritePolicy(policyFile, POLICY);
    }
    expect((await enqueue(RISK.dangerous)).approvalRequirements).toHaveLength(1);
  });
});

describe("the auth file's groups", () => {
  it.each([
    [["sre leads"], "principals[0].groups[0]"],
    ["sre-leads", "principals[0].groups"],
    [[""], "principals[0].groups[0]"],
  ])("groups %j is refused at start, naming %s", async (groups, key) => {
    const file = await writeAuthFile(
      `principals:\n  - name: human:ann\n    roles: [approver]\n    tokens: ["sha256:${"a".repeat(64)}"]\n    groups: ${JSON.stringify(groups)}\n`,
    );
    const error = await startTestServer({ ACTIONQ_AUTH_FILE: file }).then(
      async (t) => {
        await closeWithin(t);
        return null;
      },
      (e: Error) => e,
    );
    expect(error?.message).toContain(`${key}:`);
  });
});

describe("approver groups without an auth file", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_POLICY: await writePolicy(POLICY, "policy.yaml") });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("nobody belongs to a group: the action stays PENDING past its quorum and says which group it waits for", async () => {
    const { action } = await t.grpc.unary<{ action: GroupedAction }>("EnqueueAction", {
      actionType: unique("grouped"),
      riskLevel: RISK.dangerous,
      createdBy: "agent:proposer",
    });
    await t.grpc.unary("ApproveAction", { id: action.id, approver: "human:ann" });
    const { action: after } = await t.grpc.unary<{ action: GroupedAction }>("ApproveAction", { id: action.id, approver: "human:sre-lead" });
    expect(after).toMatchObject({ status: STATUS.pending, approvalsNeeded: "needs 1 approver from group sre-leads" });
    const error = await grpcError(t.grpc.unary("ApproveAction", { id: action.id, approver: "human:sre-lead" }));
    expect(errorInfoOf(error)?.reason).toBe("DUPLICATE_APPROVAL");
    expect(messageOf(error)).toContain("needs 1 approver from group sre-leads");
  });
});
