// examples/walkthrough.sh cannot rot: it runs to its end against a real
// server, once in cleartext without authentication and once over TLS with
// bearer tokens, and every action it drives ends as it says. When the
// server refuses it, it stops with one line that says what to set.
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ActionStatus } from "../gen/actionq/v1/action_pb.js";
import { type Principal, principal } from "./support/auth.js";
import { ExampleProcess, type SecureServer, killExamples, startSecureServer } from "./support/examples.js";
import { type TestServer, startTestServer } from "./support/harness.js";
import { packageRoot } from "./support/processes.js";

const WALKTHROUGH = path.join(packageRoot, "examples", "walkthrough.sh");

/** Proposes, claims and reads, with the roles the script's header names. */
const agent: Principal = principal("agent:walkthrough", ["producer", "worker", "viewer"]);
const approver: Principal = principal("human:walkthrough-approver", ["approver"]);

let plain: TestServer;
let secure: SecureServer;

beforeAll(async () => {
  plain = await startTestServer();
  secure = await startSecureServer([agent, approver]);
});

afterEach(killExamples);

afterAll(async () => {
  await plain?.close();
  await secure?.close();
});

async function walkthrough(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string; run: ExampleProcess }> {
  const run = new ExampleProcess("bash", [WALKTHROUGH], { env });
  const exit = await run.exitWithin(60_000);
  return { code: exit.code, stdout: run.stdout, stderr: run.stderr, run };
}

/** The action the walkthrough drove, from its last line. */
function drivenAction(stdout: string): bigint {
  const match = /^== Done: action (\d+) went PENDING -> APPROVED -> CLAIMED -> COMPLETED$/m.exec(stdout);
  expect(match, stdout).not.toBeNull();
  return BigInt(match![1]!);
}

/** Lines of `id<TAB>event_type<TAB>actor` under a step's heading. */
function eventLines(stdout: string, heading: string): string[][] {
  const section = stdout.split(`== ${heading}`)[1]?.split("\n== ")[0] ?? "";
  return section
    .split("\n")
    .filter((line) => /^\d+\t/.test(line))
    .map((line) => line.split("\t").slice(1));
}

describe("examples/walkthrough.sh", () => {
  it("runs to its end against a cleartext server without authentication, and the action ends COMPLETED", async () => {
    const { code, stdout, stderr, run } = await walkthrough({ ACTIONQ_ADDR: plain.address });
    expect(code, run.output()).toBe(0);
    expect(stderr).toBe("");
    expect(stdout).toContain(`http://${plain.address} is SERVING`);
    expect(stdout).toContain("authentication is off: callers name themselves in identity fields");
    expect(stdout).toMatch(/action \d+ by agent:triage is ACTION_STATUS_PENDING, needs 1 approval\(s\)/);
    expect(stdout).toMatch(/action \d+ is ACTION_STATUS_APPROVED, approved by human:bob/);
    expect(stdout).toMatch(/worker:walkthrough claimed action \d+, attempt 1, lease until \d{4}-\d\d-\d\dT/);
    expect(stdout).toMatch(/refused \(HTTP 400\): failed_precondition CLAIM_TOKEN_MISMATCH: action \d+ is CLAIMED under a different claim/);
    expect(stdout).toContain("still ACTION_STATUS_COMPLETED");

    const id = drivenAction(stdout);
    const { action, events } = await plain.client.getAction({ id });
    expect(action!.status).toBe(ActionStatus.COMPLETED);
    expect(action!.resultRef).toBe("deploy://api/1.4.2");
    const story = events.map((e) => [e.eventType, e.actor]);
    expect(story).toEqual([
      ["action_enqueued", "agent:triage"],
      ["action_approved", "human:bob"],
      ["action_claimed", "worker:walkthrough"],
      ["claim_extended", "worker:walkthrough"],
      ["action_completed", "worker:walkthrough"],
    ]);
    // The history it printed, and what the live watcher saw, are that story.
    expect(eventLines(stdout, `The event log: the whole history of action ${id} (ListEvents)`)).toEqual(story);
    expect(eventLines(stdout, "What the watcher saw, as it happened")).toEqual(story);
  });

  it("runs to its end over TLS with bearer tokens, every identity taken from the tokens", async () => {
    const { code, stdout, stderr, run } = await walkthrough({ ...secure.clientEnv(agent), ACTIONQ_APPROVER_TOKEN: approver.tokens[0]! });
    expect(code, run.output()).toBe(0);
    expect(stderr).toBe("");
    expect(stdout).toContain(`${secure.url} is SERVING`);
    expect(stdout).toContain("authenticated as agent:walkthrough with roles producer, worker, viewer");
    expect(stdout).toMatch(/approved by human:walkthrough-approver/);
    expect(stdout).toMatch(/refused \(HTTP 400\): failed_precondition CLAIM_TOKEN_MISMATCH/);

    const id = drivenAction(stdout);
    const { action, events } = await secure.client(agent).getAction({ id });
    expect(action!.status).toBe(ActionStatus.COMPLETED);
    const story = events.map((e) => [e.eventType, e.actor]);
    expect(story).toEqual([
      ["action_enqueued", "agent:walkthrough"],
      ["action_approved", "human:walkthrough-approver"],
      ["action_claimed", "agent:walkthrough"],
      ["claim_extended", "agent:walkthrough"],
      ["action_completed", "agent:walkthrough"],
    ]);
    expect(eventLines(stdout, "What the watcher saw, as it happened")).toEqual(story);
  });

  it("stops at once with one line naming ACTIONQ_TOKEN when the server does not know the token", async () => {
    const { code, stdout, stderr } = await walkthrough({ ...secure.clientEnv({ tokens: ["not-a-known-token"] }), ACTIONQ_APPROVER_TOKEN: approver.tokens[0]! });
    expect(code).toBe(1);
    expect(stderr.trimEnd().split("\n")).toEqual([
      expect.stringMatching(
        /^walkthrough\.sh: GetCaller was refused \(HTTP 401\): unauthenticated UNAUTHENTICATED: the bearer token is not known .* \(set ACTIONQ_TOKEN to a token the server's auth file lists\)$/,
      ) as string,
    ]);
    expect(stdout).not.toContain("An agent proposes");
  });

  it("says that a second principal must approve when only ACTIONQ_TOKEN is set", async () => {
    const { code, stderr } = await walkthrough(secure.clientEnv(agent));
    expect(code).toBe(1);
    expect(stderr).toMatch(/^walkthrough\.sh: .*set ACTIONQ_APPROVER_TOKEN to the token of another principal with the approver role\n$/);
  });

  it("says to set ACTIONQ_TLS_CA when it does not trust the server's certificate", async () => {
    const { ACTIONQ_TLS_CA: _ca, ...withoutCa } = secure.clientEnv(agent);
    const { code, stderr } = await walkthrough(withoutCa);
    expect(code).toBe(1);
    expect(stderr).toMatch(
      /^walkthrough\.sh: https:\/\/127\.0\.0\.1:\d+: curl: \(60\) .*\(set ACTIONQ_TLS_CA to the PEM CA that signed the server's certificate\)\n$/,
    );
  });

  it("says the server may not speak TLS when https:// meets a cleartext port", async () => {
    const { code, stderr } = await walkthrough({ ACTIONQ_ADDR: `https://${plain.address}` });
    expect(code).toBe(1);
    expect(stderr).toMatch(/does the server speak TLS\? ACTIONQ_ADDR must be https:\/\/host:port for a TLS server, host:port for a cleartext one\)\n$/);
  });
});
