// `actionctl import --from-dir`, the built command against a real server:
// a tree of the first design's queue with an action in every state and the
// documents such a queue gathers (malformed, duplicated, conflicting) comes
// in as its directories say, reported document by document; a second import
// creates nothing, a dry run writes nothing, a DANGEROUS action still waits
// for its approvers, and trusting approvals takes an operator.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ActionStatus, RiskLevel } from "../gen/actionq/v1/action_pb.js";
import { type Json, actionctlAt, errorOf, killChildren, runActionctl } from "./support/actionctl.js";
import { principal } from "./support/auth.js";
import { type SecureServer, startSecureServer } from "./support/examples.js";
import { type Fixture, buildFixture, removeTrees } from "./support/fs-queue.js";
import { type TestServer, snapshot, startTestServer } from "./support/harness.js";
import { readTree } from "../src/cli/fs-queue/tree.js";

const T0 = 1765000000;

/** The report's line for a source. */
const lineOf = (report: Json, source: string): Json => {
  const line = (report.documents as Json[]).find((document) => document.source === source);
  if (!line) throw new Error(`no report line for ${source}: ${JSON.stringify(report.documents)}`);
  return line;
};

const seconds = (timestamp: { seconds: bigint; nanos: number } | undefined) => Number(timestamp!.seconds) + timestamp!.nanos / 1e9;

describe("reading a tree of the first design", () => {
  afterAll(removeTrees);

  it("keeps the copy furthest along, skips conflicting and malformed documents, and gives each action its history lines", async () => {
    const fixture = await buildFixture();
    const { ids } = fixture;
    const tree = await readTree(fixture.root);
    expect(tree.candidates.map((c) => c.item.externalId).sort()).toEqual(
      [
        ids.pending,
        ids.dangerous,
        ids.approved,
        ids.running,
        ids.completed,
        ids.completedNoHistory,
        ids.failed,
        ids.rejected,
        ids.cancelled,
        ids.disagreeing,
        ids.duplicate,
      ].sort(),
    );
    const outcomes = (outcome: string) =>
      tree.skipped
        .filter((s) => s.outcome === outcome)
        .map((s) => s.source)
        .sort();
    expect(outcomes("malformed")).toEqual(Object.keys(fixture.malformed).sort());
    expect(outcomes("duplicate")).toEqual([`pending/${ids.duplicate}.json`]);
    expect(outcomes("conflict")).toEqual([`completed/${ids.conflict}.json`, `failed/${ids.conflict}.json`]);
    const item = (id: string) => tree.candidates.find((c) => c.item.externalId === id)!.item;
    expect(item(ids.completed).history).toHaveLength(4);
    expect(seconds(item(ids.completed).finishTime)).toBeCloseTo(T0 + 130.25, 5);
    expect(item(ids.failed)).toMatchObject({ status: ActionStatus.FAILED, failureReason: "exit status 3" });
    expect(item(ids.failed).history).toEqual([`${T0 + 200} ${ids.failed} running -> failed`, expect.stringContaining("exit status 3")]);
    expect(item(ids.cancelled).status).toBe(ActionStatus.CANCELLED);
    expect(item(ids.running).status).toBe(ActionStatus.CLAIMED);
    expect(item(ids.pending).createTime).toMatchObject({ seconds: BigInt(T0), nanos: 500_000_000 });
    expect(item(ids.approved).confidence).toBeUndefined();
  });
});

describe("actionctl import --from-dir", () => {
  let t: TestServer;
  const { actionctl, ok } = actionctlAt(() => t.address);
  const importTree = async (root: string, extra: string[] = []) => {
    const run = await actionctl(["import", "--from-dir", root, "--actor", "human:ops", "--json", ...extra]);
    return { run, report: (run.stdout ? JSON.parse(run.stdout) : {}) as Json };
  };

  beforeAll(async () => {
    t = await startTestServer();
  });
  afterEach(killChildren);
  afterAll(async () => {
    await t?.close();
    await removeTrees();
  });

  it("brings every state over as its directory says, reports each document and the counts, and a second import creates nothing", async () => {
    const fixture = await buildFixture();
    const { ids } = fixture;
    const { run, report } = await importTree(fixture.root);
    // Malformed and conflicting documents make it exit 1, after importing the rest.
    expect(run.code, run.stderr).toBe(1);
    expect(report.counts).toEqual({
      imported_pending: 6,
      imported_approved: 0,
      imported_approved_after_interruption: 0,
      imported_completed: 2,
      imported_failed: 1,
      imported_rejected: 1,
      imported_cancelled: 1,
      already_present: 0,
      duplicate_skipped: 1,
      conflict_skipped: 2,
      malformed_skipped: 10,
      refused: 0,
    });
    expect(report.history_lines).toBe(11);
    // "a line about no action at all" goes with none, and the report says so.
    expect(report.history_lines_unmatched).toBe(1);
    expect(report.documents).toHaveLength(24);
    for (const [source, reason] of Object.entries(fixture.malformed)) {
      expect(lineOf(report, source)).toMatchObject({ outcome: "malformed_skipped", id: null });
      expect(lineOf(report, source).reason).toContain(reason);
    }
    expect(lineOf(report, `pending/${ids.duplicate}.json`)).toMatchObject({ outcome: "duplicate_skipped", action_id: ids.duplicate });
    expect(lineOf(report, `pending/${ids.duplicate}.json`).reason).toContain(`approved/${ids.duplicate}.json`);
    expect(lineOf(report, `approved/${ids.duplicate}.json`).outcome).toBe("imported_pending");
    for (const source of [`completed/${ids.conflict}.json`, `failed/${ids.conflict}.json`]) {
      expect(lineOf(report, source)).toMatchObject({ outcome: "conflict_skipped", action_id: ids.conflict });
    }
    expect(lineOf(report, `approved/${ids.disagreeing}.json`).notes.join("; ")).toContain('status "pending" disagrees with approved/');
    expect(lineOf(report, `approved/${ids.approved}.json`).notes.join("; ")).toMatch(/approval not trusted/);
    expect(lineOf(report, `completed/${ids.completedNoHistory}.json`).notes.join("; ")).toContain("mtime");
    const conflicting = await t.db.query("SELECT id FROM actions WHERE external_id = $1", [ids.conflict]);
    expect(conflicting.rowCount, "conflicting copies import nothing").toBe(0);

    const get = async (name: keyof Fixture["ids"], directory: string) => {
      const id = BigInt(lineOf(report, `${directory}/${ids[name]}.json`).id as string);
      return t.client.getAction({ id });
    };
    // Everything the document said, kept.
    const pending = await get("pending", "pending");
    expect(pending.action).toMatchObject({
      externalId: ids.pending,
      status: ActionStatus.PENDING,
      createdBy: "supervisor",
      correlationId: "5b0f8a4e-0c7e-4bfa-9b53-0d5f2d0c9a11",
      node: "node-a",
      service: "nginx",
      actionType: "redeploy_service",
      confidence: 0.9,
      payload: { image: "nginx:1.27" },
    });
    expect(pending.action!.createTime).toMatchObject({ seconds: BigInt(T0), nanos: 500_000_000 });
    // Its history starts with the import, carrying the document and its lines untouched.
    const imported = pending.events[0]!;
    expect(imported.eventType).toBe("action_imported");
    expect(imported.actor).toBe("human:ops");
    expect(imported.payload).toMatchObject({ source: `pending/${ids.pending}.json`, status_there: "pending" });
    expect((imported.payload!.document as Json).action_id).toBe(ids.pending);
    expect(imported.payload!.history).toEqual([expect.stringContaining(`mentions ${ids.pending} in passing`)]);

    const approved = await get("approved", "approved");
    expect(approved.action).toMatchObject({ status: ActionStatus.PENDING, correlationId: "" });
    expect(approved.action!.confidence).toBeUndefined();
    expect((await get("running", "running")).action).toMatchObject({ status: ActionStatus.PENDING, node: "", service: "" });

    const completed = await get("completed", "completed");
    expect(completed.action!.status).toBe(ActionStatus.COMPLETED);
    expect(seconds(completed.action!.finishTime)).toBeCloseTo(T0 + 130.25, 3);
    expect(completed.events[0]!.payload!.history).toHaveLength(4);
    const quiet = await get("completedNoHistory", "completed");
    expect(quiet.action).toMatchObject({ status: ActionStatus.COMPLETED, payload: {} });
    expect(seconds(quiet.action!.finishTime)).toBeCloseTo(T0 + 7200, 0);
    const failed = await get("failed", "failed");
    expect(failed.action).toMatchObject({ status: ActionStatus.FAILED, failureReason: "exit status 3" });
    expect(seconds(failed.action!.finishTime)).toBeCloseTo(T0 + 201, 3);
    expect((await get("rejected", "rejected")).action).toMatchObject({ status: ActionStatus.REJECTED, failureReason: "not during the sale" });
    expect((await get("cancelled", "rejected")).action).toMatchObject({ status: ActionStatus.CANCELLED, failureReason: "superseded by hand" });

    // Again: everything is already there, and nothing at all is written.
    const before = await snapshot(t.db);
    const again = await importTree(fixture.root);
    expect(again.run.code).toBe(1);
    expect(again.report.counts).toMatchObject({ imported_pending: 0, imported_completed: 0, already_present: 11, malformed_skipped: 10, conflict_skipped: 2 });
    expect(lineOf(again.report, `pending/${ids.pending}.json`)).toMatchObject({ outcome: "already_present", id: `${pending.action!.id}` });
    expect(await snapshot(t.db)).toBe(before);
  });

  it("--dry-run says what would happen, for people, and writes nothing", async () => {
    const fixture = await buildFixture();
    const before = await snapshot(t.db);
    const run = await actionctl(["import", "--from-dir", fixture.root, "--actor", "human:ops", "--dry-run"]);
    expect(run.code, run.stderr).toBe(1);
    expect(await snapshot(t.db)).toBe(before);
    const lines = run.stdout.split("\n");
    expect(lines).toContain(`pending/${fixture.ids.pending}.json: would be imported as pending`);
    expect(lines).toContain(`rejected/${fixture.ids.cancelled}.json: would be imported as cancelled`);
    expect(lines).toContain(`pending/no-id.json: malformed skipped: action_id is missing`);
    expect(run.stdout).toMatch(/^24 documents, 11 history lines \(dry run: nothing was written\):$/m);
    expect(run.stdout).toMatch(/^ {2}would be imported as pending +6$/m);
    expect(run.stdout).toMatch(/^ {2}malformed skipped +10$/m);
    expect(lines).toContain("1 history line names no action imported here: carried by none, kept only in history.log");
    // The report as people see it, for the record.
    console.log(`import --dry-run report:\n${run.stdout}`);
  });

  it("a pending DANGEROUS action still needs its approvers, counted from now", async () => {
    const fixture = await buildFixture();
    const { report } = await importTree(fixture.root);
    const id = lineOf(report, `pending/${fixture.ids.dangerous}.json`).id as string;
    const action = (await t.client.getAction({ id: BigInt(id) })).action!;
    expect(action).toMatchObject({ status: ActionStatus.PENDING, riskLevel: RiskLevel.DANGEROUS, approvalsRequired: 2, rollbackRef: "restore_database" });
    expect(seconds(action.approvalExpireTime)).toBeGreaterThan(Date.now() / 1000);
    expect((await ok(["approve", id, "--approver", "human:ann"])).action.status).toBe("ACTION_STATUS_PENDING");
    expect((await ok(["approve", id, "--approver", "human:ben"])).action.status).toBe("ACTION_STATUS_APPROVED");
  });

  it("--trust-approvals brings approved and running actions in APPROVED, the running ones marked interrupted", async () => {
    const fixture = await buildFixture();
    const { run, report } = await importTree(fixture.root, ["--trust-approvals"]);
    expect(run.code, run.stderr).toBe(1);
    expect(report.counts).toMatchObject({ imported_pending: 2, imported_approved: 3, imported_approved_after_interruption: 1 });
    const running = await t.client.getAction({ id: BigInt(lineOf(report, `running/${fixture.ids.running}.json`).id as string) });
    expect(running.action).toMatchObject({ status: ActionStatus.APPROVED, approvedBy: "human:ops" });
    expect(running.events.map((event) => event.eventType)).toEqual(expect.arrayContaining(["action_imported", "action_interrupted", "action_approved"]));
  });

  it("says so when the directory is not a queue, sending nothing", async () => {
    const run = await runActionctl(["import", "--from-dir", "/nonexistent/queue", "--actor", "human:ops"], { ACTIONQ_ADDR: t.address });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/\/nonexistent\/queue is not a directory/);
  });
});

describe("actionctl import --trust-approvals with authentication", () => {
  const producer = principal("agent:mover", ["producer", "viewer"]);
  const operator = principal("human:ops-lead", ["producer", "operator", "viewer"]);
  let secure: SecureServer;

  beforeAll(async () => {
    secure = await startSecureServer([producer, operator]);
  });
  afterAll(async () => {
    await secure?.close();
    await removeTrees();
  });

  it("is refused to a producer without the operator role, and nothing is imported", async () => {
    const fixture = await buildFixture();
    const before = await snapshot(secure.t.db);
    const run = await runActionctl(["import", "--from-dir", fixture.root, "--trust-approvals", "--json"], secure.clientEnv(producer));
    expect(run.code, run.stderr).toBe(4);
    expect(run.stdout).toBe("");
    expect(errorOf(run)).toMatchObject({ code: "permission_denied" });
    expect(await snapshot(secure.t.db)).toBe(before);
    // Without the flag the same producer may import, approvals not kept.
    const plain = await runActionctl(["import", "--from-dir", fixture.root, "--json"], secure.clientEnv(producer));
    expect(plain.code, plain.stderr).toBe(1);
    expect(JSON.parse(plain.stdout).counts).toMatchObject({ imported_pending: 6, imported_approved: 0 });
  });

  it("is taken from an operator, who becomes the approver", async () => {
    const fixture = await buildFixture();
    const run = await runActionctl(["import", "--from-dir", fixture.root, "--trust-approvals", "--json"], secure.clientEnv(operator));
    expect(run.code, run.stderr).toBe(1);
    const report = JSON.parse(run.stdout) as Json;
    expect(report.counts).toMatchObject({ imported_approved: 3, imported_approved_after_interruption: 1 });
    const id = BigInt(lineOf(report, `approved/${fixture.ids.approved}.json`).id as string);
    const { action } = await secure.client(operator).getAction({ id });
    expect(action).toMatchObject({ status: ActionStatus.APPROVED, approvedBy: "human:ops-lead" });
  });
});
