// actionctl, the built CLI, run as a subprocess against a real server: what
// operators and scripts see on stdout, stderr and in the exit code.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, eventually, startTestServer } from "./harness.js";

const CLI = path.resolve(import.meta.dirname, "..", "dist", "src", "cli", "actionctl.js");

interface Run {
  /** The exit code; null when the process was killed (e.g. by the timeout). */
  code: number | null;
  stdout: string;
  stderr: string;
}

// Proto JSON as actionctl prints it; the tests read what they assert on.
type Json = Record<string, any>;

describe("actionctl", () => {
  let t: TestServer;
  const children = new Set<ChildProcess>();

  beforeAll(async () => {
    // No background sweeps, so that `actionctl sweep` is the one to requeue
    // an expired lease.
    t = await startTestServer({ ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600" });
  });
  afterEach(() => {
    for (const child of children) child.kill("SIGKILL");
    children.clear();
  });
  afterAll(async () => {
    await t?.close();
  });

  function actionctl(args: string[], addr = t.address): Promise<Run> {
    return new Promise((resolve) => {
      const child = execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ACTIONQ_ADDR: addr }, timeout: 20_000 }, (error, stdout, stderr) => {
        children.delete(child);
        const code = error ? (typeof error.code === "number" ? error.code : null) : 0;
        resolve({ code, stdout, stderr });
      });
      children.add(child);
    });
  }

  /** Runs a command that must succeed and returns its JSON document. */
  async function ok(args: string[]): Promise<Json> {
    const run = await actionctl(args);
    if (run.code !== 0) throw new Error(`actionctl ${args.join(" ")} exited ${run.code}: ${run.stderr}`);
    return JSON.parse(run.stdout) as Json;
  }

  async function okLines(args: string[]): Promise<Json[]> {
    const run = await actionctl(args);
    if (run.code !== 0) throw new Error(`actionctl ${args.join(" ")} exited ${run.code}: ${run.stderr}`);
    return run.stdout
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line) as Json);
  }

  function errorOf(run: Run): Json {
    const lines = run.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    return (JSON.parse(lines[0]!) as Json).error as Json;
  }

  async function addAndClaim(type: string): Promise<{ id: string; token: string }> {
    const added = await ok(["add", "--type", type, "--created-by", "human:t"]);
    const claim = await ok(["claim", "--worker", "worker-1", "--type", type]);
    expect(claim.action.id).toBe(added.action.id);
    return { id: added.action.id, token: claim.claim_token };
  }

  it("add, ls and show agree on a new action with every field the producer gave", async () => {
    const added = await ok([
      "add",
      "--type", "collect_diagnostics",
      "--project", "cli-add",
      "--target", "node/7",
      "--source", "alert:1",
      "--source", "ticket:2",
      "--payload", '{"depth":2,"paths":["/var/log"]}',
      "--priority", "-3",
      "--confidence", "0.75",
      "--created-by", "human:alice",
      "--correlation-id", "corr-9",
      "--node", "node-7",
      "--service", "api",
      "--rollback", "noop",
      "--idempotency-key", "key-1",
    ]); // prettier-ignore
    expect(added.created).toBe(true);
    const action = added.action;
    expect(action.id).toMatch(/^[1-9]\d*$/);
    expect(action).toMatchObject({
      action_type: "collect_diagnostics",
      project: "cli-add",
      target_ref: "node/7",
      source_refs: ["alert:1", "ticket:2"],
      payload: { depth: 2, paths: ["/var/log"] },
      priority: -3,
      confidence: 0.75,
      status: "ACTION_STATUS_APPROVED",
      risk_level: "RISK_LEVEL_SAFE",
      created_by: "human:alice",
      correlation_id: "corr-9",
      node: "node-7",
      service: "api",
      rollback_ref: "noop",
      idempotency_key: "key-1",
    });

    const again = await ok(["add", "--type", "collect_diagnostics", "--project", "cli-add", "--target", "node/7", "--source", "alert:1", "--source", "ticket:2", "--payload", '{"depth":2,"paths":["/var/log"]}', "--priority", "-3", "--confidence", "0.75", "--created-by", "human:alice", "--correlation-id", "corr-9", "--node", "node-7", "--service", "api", "--rollback", "noop", "--idempotency-key", "key-1"]);
    expect(again.created).toBe(false);
    expect(again.action.id).toBe(action.id);

    const listed = await ok(["ls", "--project", "cli-add"]);
    expect(listed.actions.map((a: Json) => a.id)).toEqual([action.id]);
    expect(listed.next_page_token).toBe("");
    expect((await ok(["ls", "--project", "cli-add", "--status", "APPROVED", "--status", "pending"])).actions).toHaveLength(1);
    expect((await ok(["ls", "--project", "cli-add", "--status", "action_status_pending"])).actions).toEqual([]);
    expect((await ok(["ls", "--created-by", "human:alice", "--type", "collect_diagnostics"])).actions.map((a: Json) => a.id)).toEqual([action.id]);

    const shown = await ok(["show", action.id]);
    expect(shown.action).toEqual(action);
    expect(shown.events.map((e: Json) => e.event_type)).toEqual(["action_enqueued", "action_approved"]);
    expect(shown.events.every((e: Json) => e.action_id === action.id)).toBe(true);
  });

  it("ls pages with --limit and --page-token", async () => {
    const first = await ok(["add", "--type", "page_me", "--project", "cli-pages", "--created-by", "human:t"]);
    const second = await ok(["add", "--type", "page_me", "--project", "cli-pages", "--created-by", "human:t"]);
    const page1 = await ok(["ls", "--project", "cli-pages", "--limit", "1"]);
    expect(page1.actions.map((a: Json) => a.id)).toEqual([second.action.id]);
    expect(page1.next_page_token).not.toBe("");
    const page2 = await ok(["ls", "--project", "cli-pages", "--limit", "1", "--page-token", page1.next_page_token]);
    expect(page2.actions.map((a: Json) => a.id)).toEqual([first.action.id]);
  });

  it("claim hands out an action with a token; extend and complete use it", async () => {
    const added = await ok(["add", "--type", "cli_complete", "--created-by", "human:t"]);
    const claim = await ok(["claim", "--worker", "worker-7", "--type", "cli_complete", "--lease", "5m"]);
    expect(claim.claim_token).toMatch(/^[0-9a-f-]{36}$/);
    expect(claim.action).toMatchObject({ id: added.action.id, status: "ACTION_STATUS_CLAIMED", claimed_by: "worker-7", attempt: 1 });
    const leaseMs = Date.parse(claim.action.claim_deadline) - Date.parse(claim.action.claim_time);
    expect(leaseMs).toBeGreaterThan(299_000);
    expect(leaseMs).toBeLessThan(301_000);

    const extended = await ok(["extend", claim.action.id, "--token", claim.claim_token, "--lease", "1.5h"]);
    const extendedMs = Date.parse(extended.claim_deadline) - Date.now();
    expect(extendedMs).toBeGreaterThan(5_300_000);
    expect(extendedMs).toBeLessThan(5_401_000);
    expect(extended.action.claim_deadline).toBe(extended.claim_deadline);

    const completed = await ok(["complete", claim.action.id, "--token", claim.claim_token, "--result", "s3://results/1"]);
    expect(completed.action).toMatchObject({ id: added.action.id, status: "ACTION_STATUS_COMPLETED", result_ref: "s3://results/1" });
    expect(completed.action.finish_time).toBeDefined();
  });

  it("claim exits 2 with nothing on stdout when nothing is claimable", async () => {
    const run = await actionctl(["claim", "--worker", "worker-1", "--type", "never_enqueued"]);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe("");
    expect(run.stderr).toMatch(/nothing to claim/);
  });

  it("fail records the reason", async () => {
    const { id, token } = await addAndClaim("cli_fail");
    const failed = await ok(["fail", id, "--token", token, "--reason", "disk full"]);
    expect(failed.action).toMatchObject({ id, status: "ACTION_STATUS_FAILED", failure_reason: "disk full" });
  });

  it("a guarded action is marked as having to wait for an approval", async () => {
    const added = await ok(["add", "--type", "cli_guarded_flag", "--risk", "guarded", "--created-by", "agent:triage"]);
    expect(added.action).toMatchObject({ status: "ACTION_STATUS_PENDING", risk_level: "RISK_LEVEL_GUARDED" });
    // Action.approval_required: "True when the action had to wait for an approval."
    expect(added.action.approval_required).toBe(true);
  });

  it("a guarded action waits for approve, then can be claimed", async () => {
    const added = await ok(["add", "--type", "cli_guarded", "--risk", "GUARDED", "--created-by", "agent:triage"]);
    expect(added.action).toMatchObject({ status: "ACTION_STATUS_PENDING", risk_level: "RISK_LEVEL_GUARDED" });
    expect((await actionctl(["claim", "--worker", "worker-1", "--type", "cli_guarded"])).code).toBe(2);

    const approved = await ok(["approve", added.action.id, "--approver", "human:bob", "--note", "looks right"]);
    expect(approved.action).toMatchObject({ id: added.action.id, status: "ACTION_STATUS_APPROVED", approved_by: "human:bob" });

    const claim = await ok(["claim", "--worker", "worker-2", "--type", "cli_guarded"]);
    expect(claim.action).toMatchObject({ id: added.action.id, status: "ACTION_STATUS_CLAIMED", claimed_by: "worker-2" });
    const shown = await ok(["show", added.action.id]);
    const approval = shown.events.find((e: Json) => e.event_type === "action_approved");
    expect(approval.actor).toBe("human:bob");
  });

  it("reject denies a pending action", async () => {
    const added = await ok(["add", "--type", "cli_reject", "--approval-required", "--created-by", "human:t"]);
    expect(added.action.status).toBe("ACTION_STATUS_PENDING");
    const rejected = await ok(["reject", added.action.id, "--reason", "not now", "--actor", "human:bob"]);
    expect(rejected.action).toMatchObject({ id: added.action.id, status: "ACTION_STATUS_REJECTED", failure_reason: "not now" });
  });

  it("reject with --token refuses a claimed action as its worker", async () => {
    const { id, token } = await addAndClaim("cli_reject_claimed");
    const rejected = await ok(["reject", id, "--reason", "invalid target", "--actor", "worker-1", "--token", token]);
    expect(rejected.action).toMatchObject({ id, status: "ACTION_STATUS_REJECTED", failure_reason: "invalid target" });
  });

  it("cancel withdraws an approved action", async () => {
    const added = await ok(["add", "--type", "cli_cancel", "--created-by", "human:t"]);
    const cancelled = await ok(["cancel", added.action.id, "--reason", "superseded", "--actor", "human:carol"]);
    expect(cancelled.action).toMatchObject({ id: added.action.id, status: "ACTION_STATUS_CANCELLED", failure_reason: "superseded" });
    expect((await actionctl(["claim", "--worker", "worker-1", "--type", "cli_cancel"])).code).toBe(2);
  });

  it("sweep requeues a claim whose lease ran out", async () => {
    expect(await ok(["sweep"])).toEqual({ requeued_actions: [] });
    const added = await ok(["add", "--type", "cli_sweep", "--created-by", "human:t"]);
    await ok(["claim", "--worker", "worker-1", "--type", "cli_sweep", "--lease", "1s"]);
    await new Promise((resolve) => setTimeout(resolve, 1_300));
    const swept = await ok(["sweep", "--actor", "human:ops"]);
    expect(swept.requeued_actions).toHaveLength(1);
    expect(swept.requeued_actions[0]).toMatchObject({ id: added.action.id, status: "ACTION_STATUS_APPROVED" });
    const shown = await ok(["show", added.action.id]);
    expect(shown.events.at(-1)).toMatchObject({ event_type: "claim_timed_out", actor: "human:ops" });
  });

  it("emit writes a coordinator event", async () => {
    const added = await ok(["add", "--type", "cli_emit", "--created-by", "human:t"]);
    const emitted = await ok(["emit", "--type", "coordinator_cycle", "--actor", "dispatcher:main", "--payload", '{"cycle":3}', "--action", added.action.id]);
    expect(emitted.event).toMatchObject({ event_type: "coordinator_cycle", actor: "dispatcher:main", payload: { cycle: 3 }, action_id: added.action.id });
    expect(emitted.event.id).toMatch(/^[1-9]\d*$/);
    const bad = await actionctl(["emit", "--type", "action_completed", "--actor", "dispatcher:main"]);
    expect(bad.code).toBe(2);
    expect(bad.stdout).toBe("");
  });

  it("events pages through the whole log, listing every event exactly once", async () => {
    for (let i = 0; i < 4; i++) await ok(["add", "--type", "cli_events", "--created-by", "human:t"]);
    const { rows } = await t.db.query<{ id: string }>("SELECT e.id::text AS id FROM events e ORDER BY e.id");
    expect(rows.length).toBeGreaterThanOrEqual(8); // several pages of 3
    const expected = rows.map((row) => row.id);

    const events = await okLines(["events", "--page-size", "3"]);
    expect(events.map((e) => e.id)).toEqual(expected);
    expect(events[0]).toHaveProperty("event_type");

    const limited = await okLines(["events", "--page-size", "3", "--limit", "5", "--after", expected[1]!]);
    expect(limited.map((e) => e.id)).toEqual(expected.slice(2, 7));

    const enqueued = await okLines(["events", "--page-size", "2", "--type", "action_enqueued", "--type", "action_approved"]);
    const { rows: typed } = await t.db.query<{ id: string }>("SELECT e.id::text AS id FROM events e WHERE e.event_type IN ('action_enqueued', 'action_approved') ORDER BY e.id");
    expect(enqueued.map((e) => e.id)).toEqual(typed.map((row) => row.id));
  });

  it("events --follow prints a live event and exits 0 on SIGTERM", async () => {
    const [latest] = (await t.db.query<{ id: string }>("SELECT coalesce(max(id), 0)::text AS id FROM events")).rows;
    const child = spawn(process.execPath, [CLI, "events", "--follow", "--after", latest!.id, "--type", "coordinator_paused"], {
      env: { ...process.env, ACTIONQ_ADDR: t.address },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));

    // Let the watch open first so that the event arrives live, not in the replay.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const emitted = await ok(["emit", "--type", "coordinator_paused", "--actor", "dispatcher:main", "--payload", '{"why":"test"}']);
    await ok(["emit", "--type", "coordinator_cycle", "--actor", "dispatcher:main"]);
    await eventually(() => stdout.includes("\n"), "the followed event");

    child.kill("SIGTERM");
    const exit = await exited;
    expect(stderr).toBe("");
    expect(exit).toEqual({ code: 0, signal: null });
    const lines = stdout.trim().split("\n").map((line) => JSON.parse(line) as Json);
    expect(lines).toEqual([emitted.event]);
  });

  it("a wrong claim token prints the server's error as JSON and exits 1", async () => {
    const { id } = await addAndClaim("cli_wrong_token");
    const run = await actionctl(["complete", id, "--token", randomUUID(), "--result", "r"]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    const error = errorOf(run);
    expect(error).toMatchObject({ code: "failed_precondition", reason: "CLAIM_TOKEN_MISMATCH", metadata: { action_id: id, current_status: "CLAIMED" } });
    expect(error.message).toMatch(/different claim/);

    const missing = await actionctl(["show", "999999999"]);
    expect(missing.code).toBe(1);
    expect(errorOf(missing)).toMatchObject({ code: "not_found", reason: "ACTION_NOT_FOUND", metadata: { action_id: "999999999" } });
  });

  it("an unreachable server is reported as unavailable", async () => {
    const run = await actionctl(["ls"], "http://127.0.0.1:1");
    expect(run.code).toBe(1);
    expect(errorOf(run)).toMatchObject({ code: "unavailable", reason: "" });
  });

  it("accepts ACTIONQ_ADDR as a URL", async () => {
    const added = await ok(["add", "--type", "cli_url", "--project", "cli-url", "--created-by", "human:t"]);
    const run = await actionctl(["ls", "--project", "cli-url"], `http://${t.address}`);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout).actions.map((a: Json) => a.id)).toEqual([added.action.id]);
  });

  it("a malformed id, duration or enum is a usage error (exit 2) that calls nothing", async () => {
    for (const args of [
      ["show", "12abc"],
      ["show", "0"],
      ["complete", "1.5", "--token", "x", "--result", "r"],
      ["ls", "--parent", "abc"],
      ["events", "--after", "-1"],
      ["claim", "--worker", "w", "--lease", "10"],
      ["ls", "--status", "sleeping"],
      ["add", "--type", "x", "--created-by", "human:t", "--payload", "[1]"],
      ["add", "--type", "x"],
    ]) {
      const run = await actionctl(args);
      expect(run.code, args.join(" ")).toBe(2);
      expect(run.stdout, args.join(" ")).toBe("");
      expect(run.stderr, args.join(" ")).toMatch(/error:/);
    }
    const shown = await actionctl(["show", "12abc"]);
    expect(shown.stderr).toMatch(/invalid for argument 'id'/);
  });

  it("--help describes the commands, the address and the exit codes", async () => {
    const top = await actionctl(["--help"]);
    expect(top.code).toBe(0);
    for (const word of ["ACTIONQ_ADDR", "claim", "events", "Exit codes"]) expect(top.stdout).toContain(word);
    const claim = await actionctl(["claim", "--help"]);
    expect(claim.code).toBe(0);
    expect(claim.stdout).toContain("--lease <duration>");
  });
});
