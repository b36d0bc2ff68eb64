// `actionctl export --to-dir [--follow]`, the built command against real
// servers: an export imported into another deployment and exported again is
// the same bytes, and imported back where it came from creates nothing; a
// follower moves documents as actions change, through a server restart and
// its own SIGKILL, never writing a history line twice.
import { appendFile, readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { RiskLevel } from "../gen/actionq/v1/action_pb.js";
import { type Json, actionctlAt, killChildren, startActionctl } from "./support/actionctl.js";
import { emptyTree, readTreeFiles, removeTrees, whereIs } from "./support/fs-queue.js";
import { type TestServer, restartServer, snapshot, startTestServer } from "./support/harness.js";
import { eventually } from "./support/wait.js";

type Client = TestServer["client"];

/** An action of its own type, so that a claim takes exactly it. */
async function propose(client: Client, type: string, extra: Parameters<Client["enqueueAction"]>[0] = {}): Promise<bigint> {
  const { action } = await client.enqueueAction({
    actionType: type,
    createdBy: "agent:triage",
    approvalRequired: true,
    riskLevel: RiskLevel.GUARDED,
    payload: { target: type, n: 1 },
    ...extra,
  });
  return action!.id;
}

async function claim(client: Client, type: string): Promise<string> {
  const { claim } = await client.claimAction({ worker: "worker-1", actionTypes: [type] });
  if (!claim) throw new Error(`nothing of ${type} to claim`);
  return claim.claimToken;
}

/** One action in every status there is, with the optional fields set on some. */
async function everyStatus(client: Client, prefix: string): Promise<void> {
  await propose(client, `${prefix}_pending`, { correlationId: "c-1", node: "node-a", service: "nginx", confidence: 0.25 });
  const dangerous = await propose(client, `${prefix}_dangerous`, { riskLevel: RiskLevel.DANGEROUS, rollbackRef: `${prefix}_undo` });
  await client.approveAction({ id: dangerous, approver: "human:ann" });
  await client.approveAction({ id: await propose(client, `${prefix}_approved`), approver: "human:bob" });
  await client.enqueueAction({ actionType: `${prefix}_auto`, createdBy: "agent:triage", riskLevel: RiskLevel.SAFE });
  const done = await propose(client, `${prefix}_done`, { confidence: 1 });
  await client.approveAction({ id: done, approver: "human:bob" });
  await client.completeAction({ id: done, claimToken: await claim(client, `${prefix}_done`), resultRef: "s3://r/1" });
  const failed = await propose(client, `${prefix}_failed`);
  await client.approveAction({ id: failed, approver: "human:bob" });
  await client.failAction({ id: failed, claimToken: await claim(client, `${prefix}_failed`), reason: "disk full", retryable: false });
  await client.rejectAction({ id: await propose(client, `${prefix}_rejected`), actor: "human:bob", reason: "not now" });
  await client.cancelAction({ id: await propose(client, `${prefix}_cancelled`), actor: "human:carol", reason: "withdrawn" });
}

describe("actionctl export --to-dir", () => {
  let a: TestServer;
  let b: TestServer;
  const onA = actionctlAt(() => a.address);
  const onB = actionctlAt(() => b.address);

  beforeAll(async () => {
    [a, b] = await Promise.all([startTestServer(), startTestServer()]);
  });
  afterEach(killChildren);
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await removeTrees();
  });

  it("round-trips: exported, imported into another deployment and exported again, it is the same bytes; imported back, it creates nothing", async () => {
    await everyStatus(a.client, "rt");
    const t1 = await emptyTree("t1");
    const exported = await onA.ok(["export", "--to-dir", t1]);
    expect(exported).toMatchObject({ actions: 8, by_directory: { pending: 2, approved: 2, running: 0, completed: 1, failed: 1, rejected: 2 } });
    const files1 = await readTreeFiles(t1);
    expect(files1.size).toBe(9);

    const imported = await onB.actionctl(["import", "--from-dir", t1, "--trust-approvals", "--actor", "human:ops", "--json"]);
    expect(imported.code, imported.stderr).toBe(0);
    expect(JSON.parse(imported.stdout).counts).toMatchObject({
      imported_pending: 2,
      imported_approved: 2,
      imported_completed: 1,
      imported_failed: 1,
      imported_rejected: 1,
      imported_cancelled: 1,
    });
    const t2 = await emptyTree("t2");
    await onB.ok(["export", "--to-dir", t2]);
    const files2 = await readTreeFiles(t2);
    expect([...files2.keys()]).toEqual([...files1.keys()]);
    for (const [name, text] of files1) expect(files2.get(name), name).toBe(text);

    const before = await snapshot(a.db);
    const back = await onA.actionctl(["import", "--from-dir", t1, "--trust-approvals", "--actor", "human:ops", "--json"]);
    expect(back.code, back.stderr).toBe(0);
    expect(JSON.parse(back.stdout).counts).toMatchObject({ already_present: 8, imported_pending: 0, imported_approved: 0 });
    expect(await snapshot(a.db)).toBe(before);

    // Run here after the import, an action's history is the lines it
    // brought, then its own, going on from where the import left it.
    const approvedHere = (await b.client.listActions({ actionTypes: ["rt_approved"] })).actions[0]!;
    await b.client.completeAction({ id: approvedHere.id, claimToken: await claim(b.client, "rt_approved"), resultRef: "done" });
    const t3 = await emptyTree("t3");
    await onB.ok(["export", "--to-dir", t3]);
    const linesOf = (files: Map<string, string>) =>
      files
        .get("history.log")!
        .split("\n")
        .filter((line) => line.includes(approvedHere.externalId));
    const after = linesOf(await readTreeFiles(t3));
    expect(after.slice(0, -2)).toEqual(linesOf(files1));
    expect(after.slice(-2).map((line) => JSON.parse(line) as Json)).toMatchObject([
      { event: "action_claimed", from: "approved", to: "running" },
      { event: "action_completed", from: "running", to: "completed" },
    ]);
    expect(await whereIs(t3, approvedHere.externalId)).toBe("completed");

    // What the docs show: the tree, one document and a few lines.
    console.log(`exported tree:\n${[...files1.keys()].join("\n")}`);
    console.log(
      `a document (${[...files1.keys()].find((name) => name.startsWith("failed/"))}):\n${[...files1].find(([name]) => name.startsWith("failed/"))![1]}`,
    );
    console.log(`history.log:\n${files1.get("history.log")}`);
  });

  it("writes the layout's documents: the seed's keys in order, statuses as directories, cancelled in rejected/", async () => {
    const root = await emptyTree("doc");
    const id = await propose(a.client, "doc_cancelled", { correlationId: "c-9", payload: { a: [1, 2] } });
    await a.client.cancelAction({ id, actor: "human:carol", reason: "withdrawn" });
    await onA.ok(["export", "--to-dir", root]);
    const { action } = await a.client.getAction({ id });
    const text = await readFile(path.join(root, "rejected", `${action!.externalId}.json`), "utf8");
    const document = JSON.parse(text) as Json;
    expect(Object.keys(document)).toEqual([
      "action_id",
      "created_at",
      "proposed_by",
      "correlation_id",
      "node",
      "service",
      "action_type",
      "risk_level",
      "confidence",
      "approval_required",
      "autonomous_eligible",
      "status",
      "payload",
      "rollback_reference",
    ]);
    expect(document).toMatchObject({
      status: "cancelled",
      proposed_by: "agent:triage",
      correlation_id: "c-9",
      node: null,
      risk_level: "guarded",
      payload: { a: [1, 2] },
    });
    expect(text).toBe(`${JSON.stringify(document, null, 2)}\n`);
    const lines = (await readFile(path.join(root, "history.log"), "utf8")).split("\n").filter((line) => line.includes(action!.externalId));
    expect(lines.map((line) => JSON.parse(line) as Json)).toEqual([
      { timestamp: expect.any(Number), action_id: action!.externalId, event: "action_enqueued", actor: "agent:triage", from: null, to: "pending" },
      {
        timestamp: expect.any(Number),
        action_id: action!.externalId,
        event: "action_cancelled",
        actor: "human:carol",
        from: "pending",
        to: "cancelled",
        reason: "withdrawn",
      },
    ]);
  });
});

describe("actionctl export --to-dir --follow", () => {
  // Each test starts its own server, to restart it.
  const { ok } = actionctlAt(() => "");

  afterEach(killChildren);
  afterAll(removeTrees);

  /** Waits for the document to be in `directory`; the time it took. */
  async function movedTo(root: string, externalId: string, directory: string, what: string): Promise<number> {
    const start = performance.now();
    await eventually(async () => (await whereIs(root, externalId)) === directory, `${what}: ${externalId} in ${directory}/`, 20_000, 5);
    return performance.now() - start;
  }

  const externalIdOf = async (client: Client, id: bigint) => (await client.getAction({ id })).action!.externalId;

  it("moves a document as its action changes, through a server restart and its own SIGKILL, with no history line twice", async () => {
    const first = await startTestServer();
    const address = first.address;
    let second: TestServer | undefined;
    const root = await emptyTree("follow");
    const latencies: number[] = [];
    try {
      const id = await propose(first.client, "follow_one");
      const externalId = await externalIdOf(first.client, id);
      const follow = startActionctl(["export", "--to-dir", root, "--follow", "-o", "jsonl"], { ACTIONQ_ADDR: address });
      await eventually(() => follow.stderr().includes("exported 1 action"), `the whole export (stderr: ${follow.stderr()})`, 20_000);
      expect(await whereIs(root, externalId)).toBe("pending");

      await first.client.approveAction({ id, approver: "human:bob" });
      latencies.push(await movedTo(root, externalId, "approved", "after approve"));
      const token = await claim(first.client, "follow_one");
      latencies.push(await movedTo(root, externalId, "running", "after claim"));
      // Printed once the batch's cursor is saved, a moment after the document.
      await eventually(() => follow.lines().some((line) => line.path === `running/${externalId}.json`), "the printed move", 10_000);
      expect(follow.lines().at(-1)).toMatchObject({ action_id: externalId, path: `running/${externalId}.json` });

      // Down, and up again on the same port and schema.
      second = await restartServer(first);
      await second.client.completeAction({ id, claimToken: token });
      latencies.push(await movedTo(root, externalId, "completed", "after complete, across the restart"));
      await eventually(() => /reconnecting in [\d.]+ s, after event \d+/.test(follow.stderr()), "the reconnect line", 20_000);

      // Killed outright; meanwhile an action is proposed and approved.
      follow.child.kill("SIGKILL");
      await follow.exited;
      const later = await propose(second.client, "follow_two");
      await second.client.approveAction({ id: later, approver: "human:bob" });
      // As if the follower had appended a batch and died before saving its
      // cursor: the resumed follower must cut it off, not keep it twice.
      const history = path.join(root, "history.log");
      const lastLine = (await readFile(history, "utf8")).trimEnd().split("\n").at(-1)!;
      await appendFile(history, `${lastLine}\n`);

      const resumed = startActionctl(["export", "--to-dir", root, "--follow", "-o", "jsonl"], { ACTIONQ_ADDR: address });
      const laterId = await externalIdOf(second.client, later);
      await movedTo(root, laterId, "approved", "after the resume");
      await eventually(() => resumed.stderr().includes("resuming the export"), "the resume note", 10_000);
      await second.client.rejectAction({ id: await propose(second.client, "follow_three"), actor: "human:bob", reason: "no" });
      await eventually(async () => (await readFile(history, "utf8")).includes('"reason":"no"'), "the rejection's line", 20_000);

      const lines = (await readFile(history, "utf8")).trimEnd().split("\n");
      expect(new Set(lines).size, lines.join("\n")).toBe(lines.length);
      // The same lines and documents as a whole export made now.
      const whole = await emptyTree("whole");
      await ok(["export", "--to-dir", whole], address);
      const followed = await readTreeFiles(root);
      const exported = await readTreeFiles(whole);
      expect([...lines].sort()).toEqual(exported.get("history.log")!.trimEnd().split("\n").sort());
      for (const [name, text] of exported) if (name !== "history.log") expect(followed.get(name), name).toBe(text);
      expect(followed.size).toBe(exported.size);

      resumed.child.kill("SIGTERM");
      expect((await resumed.exited).code).toBe(0);
      // The latency is for the record (bench/ holds the speed goals).
      console.log(`export --follow: document moved ${latencies.map((ms) => `${ms.toFixed(0)} ms`).join(", ")} after the transition call returned`);
    } finally {
      await (second ?? first).close();
    }
  }, 120_000);

  it("a follower started before its server waits for it, then writes the whole tree", async () => {
    // An address nothing listens on yet: a server's, once it has closed.
    const gone = await startTestServer();
    const address = gone.address;
    await gone.close();
    const root = await emptyTree("early");
    const follow = startActionctl(["export", "--to-dir", root, "--follow"], { ACTIONQ_ADDR: address });
    let server: TestServer | undefined;
    try {
      await eventually(() => /could not export from .*; trying again in [\d.]+ s/.test(follow.stderr()), `the retry line (stderr: ${follow.stderr()})`, 20_000);
      server = await startTestServer({ ACTIONQ_LISTEN: address });
      const id = await propose(server.client, "early_one");
      const externalId = await externalIdOf(server.client, id);
      await movedTo(root, externalId, "pending", "once the server is up");
      follow.child.kill("SIGTERM");
      expect((await follow.exited).code).toBe(0);
    } finally {
      await server?.close();
    }
  }, 60_000);
});
