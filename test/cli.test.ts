// actionctl, the built CLI, run as a subprocess against a real server: what
// operators and scripts see on stdout, stderr and in the exit code.
import { randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Json, actionctlAt, errorOf, killChildren, startActionctl } from "./support/actionctl.js";
import { type TestServer, startTestServer } from "./support/harness.js";
import { eventually } from "./support/wait.js";

describe("actionctl", () => {
  let t: TestServer;
  const { actionctl, ok, okLines, refused, usageError } = actionctlAt(() => t.address);

  beforeAll(async () => {
    // No background sweeps, so that `actionctl sweep` is the one to requeue
    // an expired lease.
    t = await startTestServer({ ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600" });
  });
  afterEach(killChildren);
  afterAll(async () => {
    await t?.close();
  });

  async function addAndClaim(type: string, extra: string[] = []): Promise<{ id: string; token: string }> {
    const added = await ok(["add", "--type", type, "--created-by", "human:t", ...extra]);
    const claim = await ok(["claim", "--worker", "worker-1", "--type", type]);
    expect(claim.action.id).toBe(added.action.id);
    return { id: added.action.id, token: claim.claim_token };
  }

  /** `history` as text: the action, its status now, then a line per event. */
  async function story(id: string, addr = t.address): Promise<{ header: string; status: string; events: string[] }> {
    const run = await actionctl(["history", id], addr);
    if (run.code !== 0) throw new Error(`actionctl history ${id} exited ${run.code}: ${run.stderr}`);
    const [header, status, ...events] = run.stdout.trimEnd().split("\n");
    expect(header).toMatch(new RegExp(`^action ${id}: `));
    return { header: header!, status: status!, events };
  }

  /** The newest event id, to read only what a test wrote after it. */
  async function latestEventId(db: TestServer["db"] = t.db): Promise<string> {
    const { rows } = await db.query<{ id: string }>("SELECT coalesce(max(id), 0)::text AS id FROM events");
    return rows[0]!.id;
  }

  it("add, ls and show agree on a new action with every field the producer gave", async () => {
    // Every option add takes, as pairs; sent twice, the second is a retry.
    const addArgs = [
      "add",
      ...[
        ["--type", "collect_diagnostics"],
        ["--project", "cli-add"],
        ["--target", "node/7"],
        ["--source", "alert:1"],
        ["--source", "ticket:2"],
        ["--payload", '{"depth":2,"paths":["/var/log"]}'],
        ["--priority", "-3"],
        ["--confidence", "0.75"],
        ["--created-by", "human:alice"],
        ["--correlation-id", "corr-9"],
        ["--node", "node-7"],
        ["--service", "api"],
        ["--rollback", "noop"],
        ["--idempotency-key", "key-1"],
      ].flat(),
    ];
    const added = await ok(addArgs);
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

    const again = await ok(addArgs);
    expect(again.created).toBe(false);
    expect(again.action.id).toBe(action.id);

    const listed = await ok(["ls", "--project", "cli-add"]);
    expect(listed.actions.map((a: Json) => a.id)).toEqual([action.id]);
    expect(listed.next_page_token).toBe("");
    expect((await ok(["ls", "--project", "cli-add", "--status", "APPROVED", "--status", "pending"])).actions).toHaveLength(1);
    expect((await ok(["ls", "--project", "cli-add", "--status", "action_status_pending"])).actions).toEqual([]);
    expect((await ok(["ls", "--created-by", "human:alice", "--type", "collect_diagnostics"])).actions.map((a: Json) => a.id)).toEqual([action.id]);

    const shown = await ok(["show", action.id]);
    expect(Object.keys(shown), "the action leads").toEqual(["action", "events"]);
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

  it("claim exits 2 with nothing on stdout and one JSON line on stderr when nothing is claimable, as --help says", async () => {
    const run = await actionctl(["claim", "--worker", "worker-1", "--type", "never_enqueued"]);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe("");
    expect(errorOf(run)).toMatchObject({ code: "not_found", message: "nothing to claim", reason: "NOTHING_TO_CLAIM", metadata: {} });
    const help = await actionctl(["claim", "--help"]);
    expect(help.stdout.replace(/\s+/g, " ")).toContain(
      "exit 2 with one line on stderr (JSON in the JSON modes, reason NOTHING_TO_CLAIM, CLAIMS_PAUSED naming the pause that holds claims back, or HELD_BY_WINDOW",
    );
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
    expect(await ok(["sweep"])).toEqual({ requeued_actions: [], expired_actions: [] });
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
    const { rows: typed } = await t.db.query<{ id: string }>(
      "SELECT e.id::text AS id FROM events e WHERE e.event_type IN ('action_enqueued', 'action_approved') ORDER BY e.id",
    );
    expect(enqueued.map((e) => e.id)).toEqual(typed.map((row) => row.id));
  });

  it("events --follow prints a live event and exits 0 on SIGTERM", async () => {
    const [latest] = (await t.db.query<{ id: string }>("SELECT coalesce(max(id), 0)::text AS id FROM events")).rows;
    const follow = startActionctl(["events", "--follow", "--after", latest!.id, "--type", "coordinator_paused"], { ACTIONQ_ADDR: t.address });
    // Let the watch open first so that the event arrives live, not in the replay.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const emitted = await ok(["emit", "--type", "coordinator_paused", "--actor", "dispatcher:main", "--payload", '{"why":"test"}']);
    await ok(["emit", "--type", "coordinator_cycle", "--actor", "dispatcher:main"]);
    await eventually(() => follow.stdout().includes("\n"), "the followed event");

    follow.child.kill("SIGTERM");
    expect(await follow.exited).toEqual({ code: 0, signal: null });
    expect(follow.stderr()).toBe("");
    expect(follow.lines()).toEqual([emitted.event]);
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

  it("an unreachable server is reported as unavailable, exit 3", async () => {
    const run = await actionctl(["ls"], "http://127.0.0.1:1");
    expect(run.code).toBe(3);
    expect(errorOf(run)).toMatchObject({ code: "unavailable", reason: "", hint: expect.stringContaining("no server is listening at 127.0.0.1:1") });
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

  it("add --supersedes replaces a pending action, which is cancelled, and refuses one past APPROVED", async () => {
    const first = await ok(["add", "--type", "cli_supersede", "--approval-required", "--payload", '{"v":1}', "--created-by", "agent:cli"]);
    expect(first.action.status).toBe("ACTION_STATUS_PENDING");
    const second = await ok([
      "add",
      "--type",
      "cli_supersede",
      "--approval-required",
      "--payload",
      '{"v":2}',
      "--created-by",
      "agent:cli",
      "--supersedes",
      first.action.id,
    ]);
    expect(second.action).toMatchObject({ status: "ACTION_STATUS_PENDING", supersedes_id: first.action.id, payload: { v: 2 } });

    const replaced = await ok(["show", first.action.id]);
    expect(replaced.action).toMatchObject({ status: "ACTION_STATUS_CANCELLED", failure_reason: `superseded by action ${second.action.id}` });
    const cancelled = replaced.events.at(-1);
    expect(cancelled.event_type).toBe("action_cancelled");
    expect(String(cancelled.payload.superseded_by)).toBe(second.action.id);
    expect((await story(second.action.id)).events[0]).toContain(`supersedes action ${first.action.id}`);
    const firstStory = await story(first.action.id);
    expect(firstStory.events.at(-1)).toMatch(/action_cancelled .*superseded by action \d+; was /);
    expect(firstStory.status).toBe(`status: CANCELLED; reason superseded by action ${second.action.id}`);

    // Once cancelled, it cannot be superseded again; nor can a finished action.
    expect(await refused(["add", "--type", "cli_supersede", "--created-by", "agent:cli", "--supersedes", first.action.id])).toMatchObject({
      code: "failed_precondition",
      reason: "INVALID_TRANSITION",
      metadata: { current_status: "CANCELLED" },
    });
    const { id: done, token } = await addAndClaim("cli_supersede_done");
    await ok(["complete", done, "--token", token, "--result", "r"]);
    expect(await refused(["add", "--type", "cli_supersede", "--created-by", "agent:cli", "--supersedes", done])).toMatchObject({
      code: "failed_precondition",
      reason: "INVALID_TRANSITION",
      metadata: { current_status: "COMPLETED" },
    });
    expect((await refused(["add", "--type", "cli_supersede", "--created-by", "agent:cli", "--supersedes", "999999999"])).code).toBe("not_found");
    expect((await ok(["ls", "--type", "cli_supersede"])).actions.map((a: Json) => a.id)).toEqual([second.action.id, first.action.id]);

    await usageError(["add", "--type", "cli_supersede", "--created-by", "agent:cli", "--supersedes", "abc"]);
  });

  it("add --rollback-payload is kept with the action and needs --rollback", async () => {
    const added = await ok([
      "add",
      "--type",
      "cli_rb_payload",
      "--created-by",
      "human:t",
      "--rollback",
      "cli_rb_undo",
      "--rollback-payload",
      '{"image":"web:1.0"}',
    ]);
    expect(added.action).toMatchObject({ rollback_ref: "cli_rb_undo", rollback_payload: { image: "web:1.0" } });

    expect(await refused(["add", "--type", "cli_rb_payload", "--created-by", "human:t", "--rollback-payload", '{"image":"web:1.0"}'])).toMatchObject({
      code: "invalid_argument",
      reason: "INVALID_FIELD",
      metadata: { field: "rollback_payload" },
    });
    await usageError(["add", "--type", "cli_rb_payload", "--created-by", "human:t", "--rollback", "cli_rb_undo", "--rollback-payload", "[1]"]);
  });

  it("rollback enqueues the reverse of a completed action once, as a child proposed by the actor", async () => {
    const { id, token } = await addAndClaim("cli_rb_deploy", [
      "--project",
      "cli-rb",
      "--target",
      "svc/web",
      "--node",
      "node-1",
      "--service",
      "web",
      "--correlation-id",
      "corr-rb",
      "--rollback",
      "cli_rb_undo",
      "--rollback-payload",
      '{"image":"web:1.0"}',
    ]);
    await ok(["complete", id, "--token", token, "--result", "deployed web:1.1"]);

    const rolled = await ok(["rollback", id, "--actor", "human:ops", "--reason", "bad release"]);
    expect(rolled.created).toBe(true);
    expect(rolled.rollback).toMatchObject({
      action_type: "cli_rb_undo",
      payload: { image: "web:1.0" },
      project: "cli-rb",
      target_ref: "svc/web",
      node: "node-1",
      service: "web",
      correlation_id: "corr-rb",
      parent_id: id,
      rollback_of_id: id,
      chain_depth: 1,
      created_by: "human:ops",
      source_refs: [`action:${id}`],
    });
    expect(rolled.rollback.id).not.toBe(id);
    // Like every command that answers with one action, under `action` too.
    expect(rolled.action).toEqual(rolled.rollback);

    const again = await ok(["rollback", id, "--actor", "human:ops"]);
    expect(again).toEqual({ action: rolled.rollback, created: false, rollback: rolled.rollback });
    expect((await story(rolled.rollback.id)).events[0]).toMatch(
      new RegExp(`action_enqueued +human:ops .*; rolls back action ${id}; (note|reason) bad release$`),
    );
  });

  it("rollback is refused for an unfinished action, one with no rollback_ref and an unknown id", async () => {
    const pending = await ok(["add", "--type", "cli_rb_pending", "--approval-required", "--rollback", "cli_rb_undo", "--created-by", "human:t"]);
    expect(await refused(["rollback", pending.action.id, "--actor", "human:ops"])).toMatchObject({
      code: "failed_precondition",
      reason: "INVALID_TRANSITION",
      metadata: { current_status: "PENDING" },
    });

    const { id, token } = await addAndClaim("cli_rb_none");
    await ok(["fail", id, "--token", token, "--reason", "timeout"]);
    const none = await refused(["rollback", id, "--actor", "human:ops"]);
    expect(none).toMatchObject({ code: "failed_precondition", reason: "NO_ROLLBACK_REF" });

    expect(await refused(["rollback", "999999999", "--actor", "human:ops"])).toMatchObject({ code: "not_found", reason: "ACTION_NOT_FOUND" });
    expect((await ok(["ls", "--parent", id])).actions).toEqual([]);

    await usageError(["rollback", id]);
    await usageError(["rollback", "abc", "--actor", "human:ops"]);
  });

  it("pause --type holds back that type's claims until resume, and stats shows the pause", async () => {
    const added = await ok(["add", "--type", "cli_pause_type", "--created-by", "human:t"]);
    expect(added.action.status).toBe("ACTION_STATUS_APPROVED");
    const before = await ok(["stats"]);
    const cursor = await latestEventId();

    const paused = await ok(["pause", "--type", "cli_pause_type", "--actor", "human:ops", "--reason", "deploy freeze"]);
    try {
      expect(paused).toMatchObject({
        created: true,
        pause: { scope: { kind: "PAUSE_KIND_ACTION_TYPE", value: "cli_pause_type" }, paused_by: "human:ops", reason: "deploy freeze" },
      });
      expect(paused.pause.create_time).toBeDefined();
      const again = await ok(["pause", "--type", "cli_pause_type", "--actor", "human:other", "--reason", "again"]);
      expect(again).toEqual({ created: false, pause: paused.pause });

      expect((await actionctl(["claim", "--worker", "worker-1", "--type", "cli_pause_type"])).code).toBe(2);
      const during = await ok(["stats"]);
      expect(during.pauses).toEqual([paused.pause]);
      expect(BigInt(during.claimable)).toBe(BigInt(before.claimable) - 1n);
      expect(during.counts).toContainEqual({ status: "ACTION_STATUS_APPROVED", action_type: "cli_pause_type", count: "1" });
      expect((await ok(["show", added.action.id])).action.status).toBe("ACTION_STATUS_APPROVED");
    } finally {
      const resumed = await ok(["resume", "--type", "cli_pause_type", "--actor", "human:ops", "--reason", "freeze over"]);
      expect(resumed).toEqual({ pause: paused.pause });
    }

    expect((await ok(["stats"])).pauses).toEqual([]);
    const claim = await ok(["claim", "--worker", "worker-1", "--type", "cli_pause_type"]);
    expect(claim.action.id).toBe(added.action.id);

    const events = await okLines(["events", "--after", cursor, "--type", "coordinator_paused", "--type", "coordinator_resumed"]);
    expect(events).toHaveLength(2);
    expect(events[0]).toMatchObject({
      event_type: "coordinator_paused",
      actor: "human:ops",
      payload: { scope: { kind: "action_type", value: "cli_pause_type" }, reason: "deploy freeze" },
    });
    expect(events[1]).toMatchObject({
      event_type: "coordinator_resumed",
      actor: "human:ops",
      payload: { scope: { kind: "action_type", value: "cli_pause_type" }, reason: "freeze over" },
    });
    expect(events.every((e) => e.action_id === undefined)).toBe(true);

    expect(await refused(["resume", "--type", "cli_pause_type", "--actor", "human:ops"])).toMatchObject({ code: "not_found", reason: "PAUSE_NOT_FOUND" });
  });

  it("pause --all and --project stop claiming in their scope; resume lets the work through", async () => {
    const everything = await ok(["add", "--type", "cli_pause_all", "--created-by", "human:t"]);
    const paused = await ok(["pause", "--all", "--actor", "human:ops", "--reason", "incident 42"]);
    try {
      expect(paused.pause.scope).toEqual({ kind: "PAUSE_KIND_ALL" });
      expect((await actionctl(["claim", "--worker", "worker-1", "--type", "cli_pause_all"])).code).toBe(2);
      expect((await ok(["stats"])).claimable).toBe("0");
    } finally {
      await ok(["resume", "--all", "--actor", "human:ops"]);
    }
    expect((await ok(["claim", "--worker", "worker-1", "--type", "cli_pause_all"])).action.id).toBe(everything.action.id);

    const inProject = await ok(["add", "--type", "cli_pause_project", "--project", "cli-paused", "--created-by", "human:t"]);
    const other = await ok(["add", "--type", "cli_pause_project", "--project", "cli-running", "--created-by", "human:t"]);
    await ok(["pause", "--project", "cli-paused", "--actor", "human:ops", "--reason", "migration"]);
    try {
      expect((await ok(["claim", "--worker", "worker-1", "--type", "cli_pause_project"])).action.id).toBe(other.action.id);
      expect((await actionctl(["claim", "--worker", "worker-1", "--type", "cli_pause_project"])).code).toBe(2);
    } finally {
      await ok(["resume", "--project", "cli-paused", "--actor", "human:ops", "--reason", "done"]);
    }
    expect((await ok(["claim", "--worker", "worker-1", "--type", "cli_pause_project"])).action.id).toBe(inProject.action.id);
  });

  it("pause --auto-approval makes new actions wait for a human while claiming goes on", async () => {
    const approvedBefore = await ok(["add", "--type", "cli_pause_auto", "--created-by", "human:t"]);
    await ok(["pause", "--auto-approval", "--actor", "human:ops", "--reason", "policy review"]);
    try {
      const held = await ok(["add", "--type", "cli_pause_auto", "--created-by", "human:t"]);
      expect(held.action).toMatchObject({ status: "ACTION_STATUS_PENDING", autonomous_eligible: true, approvals_required: 1 });
      expect((await ok(["claim", "--worker", "worker-1", "--type", "cli_pause_auto"])).action.id).toBe(approvedBefore.action.id);
      expect((await ok(["stats"])).pauses.map((p: Json) => p.scope)).toEqual([{ kind: "PAUSE_KIND_AUTO_APPROVAL" }]);
    } finally {
      await ok(["resume", "--auto-approval", "--actor", "human:ops"]);
    }
    expect((await ok(["add", "--type", "cli_pause_auto", "--created-by", "human:t"])).action.status).toBe("ACTION_STATUS_APPROVED");
  });

  it("pause and resume take exactly one scope, and pause needs an actor and a reason", async () => {
    for (const args of [
      ["pause", "--actor", "human:ops", "--reason", "r"],
      ["pause", "--all", "--type", "x", "--actor", "human:ops", "--reason", "r"],
      ["pause", "--project", "p", "--auto-approval", "--actor", "human:ops", "--reason", "r"],
      ["pause", "--all", "--reason", "r"],
      ["pause", "--all", "--actor", "human:ops"],
      ["resume", "--actor", "human:ops"],
      ["resume", "--all", "--type", "x", "--actor", "human:ops"],
      ["resume", "--all"],
    ]) {
      await usageError(args);
    }
    expect(await usageError(["pause", "--actor", "human:ops", "--reason", "r"])).toMatch(/exactly one scope/);
    expect((await ok(["stats"])).pauses).toEqual([]);

    // An empty value is the server's to refuse, naming the field.
    expect(await refused(["pause", "--type", "", "--actor", "human:ops", "--reason", "r"])).toMatchObject({
      code: "invalid_argument",
      reason: "INVALID_FIELD",
      metadata: { field: "scope.value" },
    });
  });

  it("stats counts actions by status and type and names the policy version", async () => {
    await ok(["add", "--type", "cli_stats", "--created-by", "human:t"]);
    await ok(["add", "--type", "cli_stats", "--created-by", "human:t"]);
    await ok(["add", "--type", "cli_stats", "--approval-required", "--created-by", "human:t"]);
    const stats = await ok(["stats"]);
    const mine = stats.counts.filter((c: Json) => c.action_type === "cli_stats");
    expect(mine).toHaveLength(2);
    expect(mine).toContainEqual({ status: "ACTION_STATUS_APPROVED", action_type: "cli_stats", count: "2" });
    expect(mine).toContainEqual({ status: "ACTION_STATUS_PENDING", action_type: "cli_stats", count: "1" });
    expect(BigInt(stats.claimable)).toBeGreaterThanOrEqual(2n);
    expect(stats.oldest_claimable_age).toMatch(/^\d+(\.\d+)?s$/);
    expect(stats.pauses).toEqual([]);
    expect(stats.policy_version).toMatch(/^builtin@[0-9a-f]{12}$/);
  });

  it("policy show prints the built-in policy; policy reload without a file changes nothing", async () => {
    const shown = await ok(["policy", "show"]);
    expect(shown.policy_version).toMatch(/^builtin@[0-9a-f]{12}$/);
    expect(shown.source).toBe("");
    expect(shown.policy).toMatchObject({
      mode: "standard",
      quorum: { safe: 1, guarded: 1, dangerous: 2 },
      action_types: { collect_diagnostics: "safe", redeploy_service: "guarded" },
    });
    expect((await ok(["stats"])).policy_version).toBe(shown.policy_version);

    const cursor = await latestEventId();
    expect(await ok(["policy", "reload", "--actor", "human:ops"])).toEqual({ policy_version: shown.policy_version, changed: false });
    expect(await okLines(["events", "--after", cursor, "--type", "policy_reloaded"])).toEqual([]);

    await usageError(["policy", "reload"]);
    expect((await actionctl(["policy"])).code).toBe(2);
  });

  it("history tells an action's story line by line, approvals towards the quorum included, and ends with its status", async () => {
    const added = await ok(["add", "--type", "cli_history", "--risk", "dangerous", "--payload", '{"db":"orders"}', "--created-by", "agent:triage"]);
    const id: string = added.action.id;
    expect(added.action).toMatchObject({ status: "ACTION_STATUS_PENDING", approvals_required: 2 });

    // PERMISSION_DENIED exits 4.
    expect(await refused(["approve", id, "--approver", "agent:triage"], t.address, 4)).toMatchObject({ code: "permission_denied", reason: "SELF_APPROVAL" });
    await ok(["approve", id, "--approver", "human:bob", "--note", "checked the backup"]);
    expect(await refused(["approve", id, "--approver", "human:bob"])).toMatchObject({ code: "failed_precondition", reason: "DUPLICATE_APPROVAL" });

    expect((await story(id)).status).toMatch(/^status: PENDING; approvals 1 of 2 \(human:bob\); expires \d{4}-/);

    await ok(["approve", id, "--approver", "human:carol"]);
    const claim = await ok(["claim", "--worker", "worker-h", "--type", "cli_history"]);
    await ok([
      "emit",
      "--type",
      "action_progress",
      "--actor",
      "worker-h",
      "--action",
      id,
      "--token",
      claim.claim_token,
      "--payload",
      '{"step":"snapshot","detail":"3 of 3 tables"}',
    ]);
    await ok(["complete", id, "--token", claim.claim_token, "--result", "s3://history/1"]);

    const run = await actionctl(["history", id]);
    expect(run.code).toBe(0);
    expect(run.stderr).toBe("");
    const [header, status, ...lines] = run.stdout.trimEnd().split("\n");
    expect(header).toBe(`action ${id}: cli_history proposed by agent:triage`);
    expect(status).toBe("status: COMPLETED; result s3://history/1");
    const shown = await ok(["show", id]);
    expect(shown.events.map((e: Json) => e.event_type)).toEqual([
      "action_enqueued",
      "approval_granted",
      "action_approved",
      "action_claimed",
      "action_progress",
      "action_completed",
    ]);
    expect(lines).toHaveLength(shown.events.length);
    shown.events.forEach((event: Json, i: number) => {
      expect(lines[i]!.startsWith(`${new Date(event.create_time).toISOString()}  ${event.event_type} `)).toBe(true);
      expect(lines[i]).toContain(event.actor);
    });
    expect(lines[0]).toMatch(
      /agent:triage +policy standard \(builtin@[0-9a-f]{12}\): needs approval; why .+; risk dangerous \(type safe\); 2 approval\(s\) required$/,
    );
    expect(lines[1]).toMatch(/human:bob +approval 1 of 2 \(human:bob\); note checked the backup$/);
    expect(lines[2]).toMatch(/human:carol +approved 2 of 2 \(human:bob, human:carol\)$/);
    expect(lines[3]).toMatch(/attempt 1; worker worker-h; lease until \d{4}-/);
    expect(lines[4]).toMatch(/action_progress +worker-h +(attempt 1; )?step=snapshot detail=3 of 3 tables$/);
    expect(lines[5]).toMatch(/result s3:\/\/history\/1; attempt 1$/);

    const json = await okLines(["history", id, "--json"]);
    expect(json).toEqual(shown.events);
  });

  it("history shows the policy's own approval and why", async () => {
    const added = await ok(["add", "--type", "collect_diagnostics", "--target", "node-9", "--created-by", "human:t"]);
    const { header, status, events } = await story(added.action.id);
    expect(header).toBe(`action ${added.action.id}: collect_diagnostics on node-9 proposed by human:t`);
    expect(status).toBe("status: APPROVED; approved by policy:standard; waiting for a worker");
    expect(events).toHaveLength(2);
    expect(events[1]).toMatch(/action_approved +policy:standard +policy standard \(builtin@[0-9a-f]{12}\): approved; why .+; risk safe/);
  });

  it("history of an unknown action is refused; a malformed id is a usage error", async () => {
    expect(await refused(["history", "999999999"])).toMatchObject({ code: "not_found", reason: "ACTION_NOT_FOUND" });
    expect(await refused(["history", "999999999", "--json"])).toMatchObject({ code: "not_found" });
    await usageError(["history", "abc"]);
    await usageError(["history"]);
  });

  describe("with a policy file", () => {
    let p: TestServer;
    let dir: string;
    let file: string;

    beforeAll(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), "actionctl-policy-"));
      file = path.join(dir, "policy.yaml");
      await writeFile(file, "name: cli-test\nmode: standard\napproval_ttl:\n  safe: 1s\n");
      p = await startTestServer({ ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600", ACTIONQ_POLICY: file });
    });
    afterAll(async () => {
      await p?.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it("sweep rejects an action whose approval expired, and history says so", async () => {
      const added = await ok(["add", "--type", "cli_expire", "--approval-required", "--created-by", "human:t"], p.address);
      expect(added.action).toMatchObject({ status: "ACTION_STATUS_PENDING", approvals_required: 1 });
      expect(Date.parse(added.action.approval_expire_time) - Date.parse(added.action.create_time)).toBeLessThanOrEqual(1_000);
      await new Promise((resolve) => setTimeout(resolve, 1_300));

      const swept = await ok(["sweep", "--actor", "human:ops"], p.address);
      expect(swept.requeued_actions).toEqual([]);
      expect(swept.expired_actions).toHaveLength(1);
      expect(swept.expired_actions[0]).toMatchObject({ id: added.action.id, status: "ACTION_STATUS_REJECTED", failure_reason: "approval_expired" });

      const { status, events } = await story(added.action.id, p.address);
      expect(status).toBe("status: REJECTED; reason approval_expired");
      expect(events).toHaveLength(2);
      expect(events[0]).toMatch(/policy standard \(cli-test@[0-9a-f]{12}\): needs approval; why .+; 1 approval\(s\) required/);
      expect(events[1]).toMatch(/action_rejected +human:ops +reason approval_expired/);
      expect(await refused(["approve", added.action.id, "--approver", "human:bob"], p.address)).toMatchObject({ code: "failed_precondition" });
    });

    it("policy reload picks up a changed file, records it, and refuses an invalid one keeping the old", async () => {
      const first = await ok(["policy", "show"], p.address);
      expect(first.policy_version).toMatch(/^cli-test@[0-9a-f]{12}$/);
      expect(first.source).toBe(file);
      expect(first.policy.mode).toBe("standard");

      const cursor = await latestEventId(p.db);
      await writeFile(file, "name: cli-test\nmode: autonomous\napproval_ttl:\n  safe: 1s\n");
      const reloaded = await ok(["policy", "reload", "--actor", "human:ops"], p.address);
      expect(reloaded.changed).toBe(true);
      expect(reloaded.policy_version).toMatch(/^cli-test@[0-9a-f]{12}$/);
      expect(reloaded.policy_version).not.toBe(first.policy_version);
      expect((await ok(["policy", "show"], p.address)).policy.mode).toBe("autonomous");
      expect((await ok(["stats"], p.address)).policy_version).toBe(reloaded.policy_version);

      const events = await okLines(["events", "--after", cursor, "--type", "policy_reloaded"], p.address);
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ actor: "human:ops", payload: { from: first.policy_version, to: reloaded.policy_version, source: file } });

      expect(await ok(["policy", "reload", "--actor", "human:ops"], p.address)).toEqual({ policy_version: reloaded.policy_version, changed: false });

      await writeFile(file, "name: cli-test\nmode: sometimes\n");
      const bad = await refused(["policy", "reload", "--actor", "human:ops"], p.address);
      expect(bad).toMatchObject({ code: "invalid_argument" });
      expect(bad.message).toMatch(/mode/);
      expect((await ok(["policy", "show"], p.address)).policy_version).toBe(reloaded.policy_version);
    });
  });

  it("--help describes the commands, the address and the exit codes", async () => {
    const top = await actionctl(["--help"]);
    expect(top.code).toBe(0);
    for (const word of ["ACTIONQ_ADDR", "claim", "events", "Exit codes", "pause", "resume", "stats", "rollback", "policy", "history"])
      expect(top.stdout).toContain(word);
    const pause = await actionctl(["pause", "--help"]);
    expect(pause.code).toBe(0);
    for (const flag of ["--all", "--type <type>", "--project <project>", "--auto-approval", "--actor <who>", "--reason <text>"])
      expect(pause.stdout).toContain(flag);
    const add = await actionctl(["add", "--help"]);
    for (const flag of ["--supersedes <id>", "--rollback-payload <json>", "--run-after <time>", "--max-attempts <n>"]) expect(add.stdout).toContain(flag);
    // The type's registered level applies when --risk is left out, not "safe".
    expect(add.stdout).not.toMatch(/default safe/);
    expect(add.stdout.replace(/\s+/g, " ")).toMatch(/unset, the level the policy registers for the type applies/);
    for (const word of ["Exit codes", "ACTIONQ_TOKEN", "-o, --output", "--address", "--version"]) expect(top.stdout).toContain(word);
    const claim = await actionctl(["claim", "--help"]);
    expect(claim.code).toBe(0);
    expect(claim.stdout).toContain("--lease <duration>");
  });
});
