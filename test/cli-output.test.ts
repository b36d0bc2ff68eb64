// actionctl's output modes and the commands issue 15 added, through the
// built command against a real server: tables and summaries on a terminal
// (a pseudo-terminal from util-linux `script`), the unchanged JSON when
// piped, one record a line with -o jsonl, --version, and retry, fail
// --retryable, add --run-after/--max-attempts, whoami and the batch calls.
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Json, actionctlAt, hasScript, killChildren, runInTerminal, startActionctl } from "./support/actionctl.js";
import { type TestServer, startTestServer } from "./support/harness.js";
import { eventually } from "./support/wait.js";

const packageVersion = (JSON.parse(readFileSync(path.resolve(import.meta.dirname, "..", "package.json"), "utf8")) as { version: string }).version;

describe("actionctl output", () => {
  let t: TestServer;
  let dir: string;
  const { actionctl, ok, okLines, followed } = actionctlAt(() => t.address);
  const terminal = (args: string[]) => runInTerminal(args, { ACTIONQ_ADDR: t.address });
  /** Claims an action deferred until now: the server makes it claimable a
   * moment after its run_after, later on a loaded machine. */
  const claimOnceDue = async (type: string): Promise<Json> =>
    (await eventually(async () => {
      const run = await actionctl(["claim", "--worker", "w", "--type", type]);
      return run.code === 0 ? (JSON.parse(run.stdout) as Json) : undefined;
    }, `a claim of ${type}`))!;

  beforeAll(async () => {
    expect(hasScript(), "util-linux `script` lends the tests a terminal").toBe(true);
    t = await startTestServer({ ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600", ACTIONQ_MAX_ATTEMPTS: "2" });
    dir = await mkdtemp(path.join(os.tmpdir(), "actionctl-output-"));
  });
  afterEach(killChildren);
  afterAll(async () => {
    await t?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const longTarget = `svc/${"very-long-name-".repeat(6)}end`;

  it("on a terminal, ls is an aligned table with long fields cut; piped, it is the JSON it always was", async () => {
    const first = await ok(["add", "--type", "out_table", "--project", "out-ls", "--target", longTarget, "--created-by", "human:alice"]);
    const second = await ok(["add", "--type", "out_table", "--project", "out-ls", "--target", "node-3", "--risk", "guarded", "--created-by", "agent:triage"]);

    const run = await terminal(["ls", "--project", "out-ls"]);
    expect(run.code, run.stdout).toBe(0);
    const lines = run.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^ID +STATUS +TYPE +PROJECT +TARGET +RISK +BY +AGE +DETAIL$/);
    expect(lines[1]).toMatch(new RegExp(`^ *${second.action.id}  PENDING +out_table +out-ls +node-3 +guarded +agent:triage +\\d+s +0 of 1 approvals$`));
    expect(lines[2]).toMatch(new RegExp(`^ *${first.action.id}  APPROVED +out_table +out-ls +svc/very-long-name-very… `));
    expect(lines[2]).not.toContain("end");
    // Aligned: every column starts at the same place on every line.
    for (const header of ["STATUS", "TYPE", "PROJECT", "TARGET"]) {
      const at = lines[0]!.indexOf(header);
      expect(lines.slice(1).map((line) => line[at - 1])).toEqual([" ", " "]);
      expect(lines.slice(1).map((line) => line[at])).not.toContain(" ");
    }

    const piped = await actionctl(["ls", "--project", "out-ls"]);
    expect(piped.stdout).toBe(`${JSON.stringify({ actions: [second.action, first.action], next_page_token: "" }, null, 2)}\n`);
    expect((await actionctl(["-o", "json", "ls", "--project", "out-ls"])).stdout).toBe(piped.stdout);
    expect((await actionctl(["ls", "--project", "out-ls", "--output", "json"])).stdout).toBe(piped.stdout);
    // -o json on a terminal too: nothing cut.
    const json = await runInTerminal(["ls", "-o", "json", "--project", "out-ls"], { ACTIONQ_ADDR: t.address });
    expect(JSON.parse(json.stdout).actions[1].target_ref).toBe(longTarget);
  });

  it("-o jsonl prints one action a line for ls, one event a line for events, and a document on one line otherwise", async () => {
    const added = await ok(["add", "--type", "out_jsonl", "--project", "out-jsonl", "--created-by", "human:t"]);
    await ok(["add", "--type", "out_jsonl", "--project", "out-jsonl", "--created-by", "human:t"]);
    const actions = await okLines(["ls", "--project", "out-jsonl", "-o", "jsonl"]);
    expect(actions.map((a) => a.id)).toEqual((await ok(["ls", "--project", "out-jsonl"])).actions.map((a: Json) => a.id));
    expect(actions[1]).toEqual(added.action);

    const events = await okLines(["events", "--action", added.action.id, "-o", "jsonl"]);
    expect(events.map((e) => e.event_type)).toEqual(["action_enqueued", "action_approved"]);
    expect(await okLines(["events", "--action", added.action.id])).toEqual(events);

    const shown = await actionctl(["show", added.action.id, "-o", "jsonl"]);
    expect(shown.stdout.trimEnd().split("\n")).toHaveLength(1);
    expect(JSON.parse(shown.stdout)).toEqual(await ok(["show", added.action.id]));

    const history = await okLines(["history", added.action.id, "-o", "jsonl"]);
    expect(history).toEqual(events);
  });

  it("show on a terminal leads with the action, then its events; history too", async () => {
    const added = await ok([
      "add",
      "--type",
      "out_show",
      "--target",
      longTarget,
      "--payload",
      JSON.stringify({ note: "x".repeat(300) }),
      "--created-by",
      "human:alice",
    ]);
    const id: string = added.action.id;
    const run = await terminal(["show", id]);
    expect(run.code).toBe(0);
    const lines = run.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(new RegExp(`^action +${id}  out_show  APPROVED$`));
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^target +${longTarget}$`)));
    const payload = lines.find((line) => line.startsWith("payload"))!;
    expect(payload.length).toBeLessThan(120);
    expect(payload.endsWith("…")).toBe(true);
    const header = lines.findIndex((line) => /^ +ID +TIME +ACTION +TYPE +ACTOR +DETAIL$/.test(line));
    expect(header).toBeGreaterThan(0);
    expect(lines.slice(header + 1).map((line) => line.trim().split(/ +/)[3])).toEqual(["action_enqueued", "action_approved"]);

    const piped = await ok(["show", id]);
    expect(piped.action.payload.note).toHaveLength(300);

    const story = (await terminal(["history", id])).stdout.trimEnd().split("\n");
    expect(story[0]).toBe(`action ${id}: out_show on ${longTarget} proposed by human:alice`);
    expect(story[1]).toBe("status: APPROVED; approved by policy:standard; waiting for a worker");
    expect(story.slice(2).map((line) => line.split(/ +/)[1])).toEqual(["action_enqueued", "action_approved"]);
    expect(await ok(["history", id, "-o", "json"])).toEqual(piped);
  });

  it("add, claim and complete on a terminal print short summaries, the claim token first", async () => {
    const added = await terminal(["add", "--type", "out_summary", "--target", "node-3", "--created-by", "human:alice"]);
    expect(added.code).toBe(0);
    const addLines = added.stdout.trimEnd().split("\n");
    expect(addLines[0]).toBe("created");
    const id = /^action +(\d+) {2}out_summary {2}APPROVED$/.exec(addLines[1]!)?.[1];
    expect(id, added.stdout).toBeDefined();
    expect(addLines).toContainEqual(expect.stringMatching(/^target +node-3$/));
    expect(addLines.length).toBeLessThan(10);

    const claimed = await terminal(["claim", "--worker", "worker:one", "--type", "out_summary"]);
    const token = /^claim token +([0-9a-f-]{36})$/.exec(claimed.stdout.split("\n")[0]!)?.[1];
    expect(token, claimed.stdout).toBeDefined();
    expect(claimed.stdout).toMatch(new RegExp(`\naction +${id}  out_summary  CLAIMED\n`));
    expect(claimed.stdout).toMatch(/claimed by +worker:one, attempt 1/);

    const completed = await terminal(["complete", id!, "--token", token!, "--result", "s3://diag/node-3.tgz"]);
    const [what, action] = completed.stdout.split("\n");
    expect(what).toBe("completed");
    expect(action).toMatch(new RegExp(`^action +${id}  out_summary  COMPLETED$`));
    expect(completed.stdout).toMatch(/result +s3:\/\/diag\/node-3\.tgz/);
  });

  it("stats on a terminal is one row per type with a column per status, then the backlog, the policy and the pauses", async () => {
    await ok(["add", "--type", "out_stats", "--created-by", "human:t"]);
    await ok(["add", "--type", "out_stats", "--approval-required", "--created-by", "human:t"]);
    await ok(["pause", "--project", "out-stats-paused", "--actor", "human:ops", "--reason", "migration"]);
    try {
      const lines = (await terminal(["stats"])).stdout.trimEnd().split("\n");
      const header = lines[0]!;
      expect(header).toMatch(/^TYPE +PENDING +APPROVED/);
      const row = lines.find((line) => line.startsWith("out_stats "))!;
      const cell = (column: string) =>
        row
          .slice(0, header.indexOf(column) + column.length)
          .trim()
          .split(/ +/)
          .at(-1);
      expect(cell("PENDING")).toBe("1");
      expect(cell("APPROVED")).toBe("1");
      expect(lines).toContainEqual(expect.stringMatching(/^claimable: \d+ \(the oldest has waited \d+[smhd]\)$/));
      expect(lines).toContainEqual(expect.stringMatching(/^policy: builtin@[0-9a-f]{12}$/));
      expect(lines).toContainEqual(expect.stringMatching(/^ {2}claims of project out-stats-paused paused by human:ops since \S+Z: migration$/));
    } finally {
      await ok(["resume", "--project", "out-stats-paused", "--actor", "human:ops"]);
    }
  });

  it("--version prints package.json's version", async () => {
    for (const flag of ["--version", "-V"]) {
      const run = await actionctl([flag]);
      expect(run).toEqual({ code: 0, stdout: `${packageVersion}\n`, stderr: "" });
    }
  });

  it("add --run-after and --max-attempts: not claimable before the time, and as many retryable failures as allowed", async () => {
    const sent = Date.now();
    const later = await ok(["add", "--type", "out_run_after", "--created-by", "human:t", "--run-after", "2s", "--max-attempts", "3"]);
    const answered = Date.now();
    expect(later.action).toMatchObject({ status: "ACTION_STATUS_APPROVED", max_attempts: 3 });
    // Two seconds from when actionctl read the flag, which lies between
    // these two readings of the same clock, however slow the start.
    const runAfter = Date.parse(later.action.run_after);
    expect(runAfter).toBeGreaterThanOrEqual(sent + 2_000);
    expect(runAfter).toBeLessThanOrEqual(answered + 2_000);
    await new Promise((resolve) => setTimeout(resolve, runAfter - Date.now()));
    expect((await claimOnceDue("out_run_after")).action.id).toBe(later.action.id);

    const at = new Date(Date.now() + 3_600_000).toISOString().replace(/\.\d+Z$/, "Z");
    const fixed = await ok(["add", "--type", "out_run_after_abs", "--created-by", "human:t", "--run-after", at]);
    expect(fixed.action.run_after).toBe(at);
    // On a terminal the summary says when it runs and how many attempts it has.
    const shown = await terminal(["show", fixed.action.id]);
    expect(shown.stdout).toMatch(new RegExp(`^run after +${at}\\s*$`, "m"));
    const three = await terminal(["show", later.action.id]);
    expect(three.stdout).toMatch(/^max attempts +3\s*$/m);
    expect((await actionctl(["claim", "--worker", "w", "--type", "out_run_after_abs"])).code, "not claimable before its time").toBe(2);
    expect((await actionctl(["add", "--type", "x", "--created-by", "human:t", "--run-after", "tomorrow"])).code).toBe(2);
    expect((await actionctl(["add", "--type", "x", "--created-by", "human:t", "--max-attempts", "0"])).code).toBe(2);
  });

  it("fail --retryable --retry-delay schedules the retry after the delay; retry sends a FAILED action back", async () => {
    const added = await ok(["add", "--type", "out_retry", "--created-by", "human:t", "--max-attempts", "2"]);
    const id: string = added.action.id;
    const first = await ok(["claim", "--worker", "w", "--type", "out_retry"]);
    const failed = await ok(["fail", id, "--token", first.claim_token, "--reason", "network blip", "--retry-delay", "1.5s"]);
    expect(failed.action).toMatchObject({ id, status: "ACTION_STATUS_APPROVED", failures: 1, last_error: "network blip" });
    const delayMs = Date.parse(failed.action.run_after) - Date.parse(failed.action.update_time);
    expect(delayMs).toBeGreaterThanOrEqual(1_400);
    expect(delayMs).toBeLessThanOrEqual(1_600);
    await new Promise((resolve) => setTimeout(resolve, Date.parse(failed.action.run_after) - Date.now()));

    // The second failure uses the last attempt: FAILED, even though retryable.
    const second = await claimOnceDue("out_retry");
    const dead = await ok(["fail", id, "--token", second.claim_token, "--reason", "still down", "--retryable"]);
    expect(dead.action).toMatchObject({ status: "ACTION_STATUS_FAILED", failures: 2, failure_reason: "still down" });

    const retried = await ok(["retry", id, "--actor", "human:carol", "--reason", "network fixed", "--attempts", "2"]);
    expect(retried.action).toMatchObject({ id, status: "ACTION_STATUS_APPROVED", max_attempts: 4 });
    const shown = await ok(["show", id]);
    expect(shown.events.map((e: Json) => e.event_type)).toContain("action_retried");
    expect(shown.events.at(-1)).toMatchObject({ event_type: "action_retried", actor: "human:carol" });
    expect((await ok(["claim", "--worker", "w", "--type", "out_retry"])).action.id).toBe(id);

    const summary = await terminal(["retry", id, "--actor", "human:carol", "--reason", "again"]);
    expect(summary.code).toBe(1);
    expect(summary.stdout).toMatch(/^actionctl: action \d+ is CLAIMED; .*FAILED.*; `actionctl show \d+` shows where it stands\n$/);
  });

  it("whoami says authentication is off on a server without an auth file", async () => {
    expect(await ok(["whoami"])).toEqual({ authentication_enabled: false });
    expect((await terminal(["whoami"])).stdout).toMatch(/^authentication is off/);
  });

  it("add-many and complete-many send JSON Lines in one call each and report every item", async () => {
    const requests = path.join(dir, "actions.jsonl");
    await writeFile(
      requests,
      [
        '{"action_type":"out_batch","created_by":"human:t","target_ref":"a"}',
        '{"action_type":"out_batch","created_by":"human:t","target_ref":"b"}',
        '{"action_type":"","created_by":"human:t"}',
      ].join("\n"),
    );
    const run = await actionctl(["add-many", requests]);
    expect(run.code).toBe(1);
    const { results } = JSON.parse(run.stdout) as Json;
    expect(results).toHaveLength(3);
    expect(results[0].ok.action).toMatchObject({ action_type: "out_batch", target_ref: "a" });
    expect(results[2].error).toMatchObject({ reason: "INVALID_FIELD" });

    const claims = [await ok(["claim", "--worker", "w", "--type", "out_batch"]), await ok(["claim", "--worker", "w", "--type", "out_batch"])];
    const completions = path.join(dir, "completions.jsonl");
    await writeFile(completions, claims.map((c) => JSON.stringify({ id: c.action.id, claim_token: c.claim_token, result_ref: "done" })).join("\n"));
    const done = await okLines(["complete-many", completions, "-o", "jsonl"]);
    expect(done.map((d) => d.action.status)).toEqual(["ACTION_STATUS_COMPLETED", "ACTION_STATUS_COMPLETED"]);
  });

  it("stream-claims prints each claim as a JSON line, acknowledged, until SIGTERM", async () => {
    const stream = startActionctl(["stream-claims", "--worker", "w-stream", "--type", "out_stream"], { ACTIONQ_ADDR: t.address });
    const added = await ok(["add", "--type", "out_stream", "--created-by", "human:t"]);
    const [claim] = await followed(stream, 1, "the streamed claim");
    expect(claim!.action).toMatchObject({ id: added.action.id, status: "ACTION_STATUS_CLAIMED", claimed_by: "w-stream" });
    // Acknowledged: the claim is not released when the stream closes.
    stream.child.kill("SIGTERM");
    expect(await stream.exited).toEqual({ code: 0, signal: null });
    expect((await ok(["show", added.action.id])).action).toMatchObject({ status: "ACTION_STATUS_CLAIMED", claim_acked: true });
    expect((await ok(["complete", added.action.id, "--token", claim!.claim_token, "--result", "streamed"])).action.status).toBe("ACTION_STATUS_COMPLETED");
  });

  it("every RPC of ActionQueueService has a command", async () => {
    const proto = readFileSync(path.resolve(import.meta.dirname, "..", "proto", "actionq", "v1", "action_queue_service.proto"), "utf8");
    const rpcs = [...proto.matchAll(/^\s*rpc (\w+)\(/gm)].map((match) => match[1]!);
    const help = (await actionctl(["--help"])).stdout + (await actionctl(["policy", "--help"])).stdout;
    const described = [...help.matchAll(/\(([A-Z]\w+)\)/g)].map((match) => match[1]!);
    const commands = await Promise.all(["add", "events", "claim", "stream-claims"].map(async (name) => (await actionctl([name, "--help"])).stdout));
    for (const rpc of rpcs) expect(described.join(" ") + commands.join(" "), rpc).toContain(rpc);
  });
});
