// What `actionq serve` logs at its default level, for a person reading it:
// one info line per action a call moved (action, type, who, from, to), and
// no line per call (those are at debug). These run the compiled command:
// `npm test` builds first.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ActionqProcess, freePort, killRunning, requireBuiltCli } from "./support/processes.js";
import { GrpcClient } from "./support/harness.js";
import type { WireAction, WireClaim } from "./support/wire.js";
import { eventually } from "./support/wait.js";
import { databaseUrl, dropSchema, freshSchema } from "./support/database.js";

const schema = freshSchema();
let client: GrpcClient | undefined;
beforeAll(() => requireBuiltCli());
afterEach(async () => {
  client?.close();
  await killRunning();
});
afterAll(async () => {
  await dropSchema(databaseUrl(), schema);
});

/** `actionq serve` on this file's schema, logging at info; `client` talks to it. */
async function serveAtInfo(env: Record<string, string> = {}): Promise<{ proc: ActionqProcess; grpc: GrpcClient }> {
  const port = await freePort();
  const proc = new ActionqProcess(["serve"], {
    ACTIONQ_URL: databaseUrl(),
    ACTIONQ_SCHEMA: schema,
    ACTIONQ_LISTEN: `127.0.0.1:${port}`,
    ACTIONQ_LOG_LEVEL: "info",
    ...env,
  });
  await proc.waitForLog("actionq is serving", 60_000);
  client = new GrpcClient(`127.0.0.1:${port}`);
  return { proc, grpc: client };
}

describe("actionq serve's log at the info level", () => {
  it("has a line for each move of an action, naming it, its type, who moved it, from and to; one for a pause and a resume; and none per call", {
    timeout: 90_000,
  }, async () => {
    const { proc, grpc } = await serveAtInfo();
    const { action } = await grpc.unary<{ action: WireAction }>("EnqueueAction", {
      actionType: "redeploy_service",
      createdBy: "agent:triage",
      riskLevel: "RISK_LEVEL_GUARDED",
    });
    await grpc.unary("ApproveAction", { id: action.id, approver: "human:bob", note: "ok" });
    const { claim } = await grpc.unary<{ claim: WireClaim }>("ClaimAction", { worker: "worker:one", actionTypes: ["redeploy_service"] });
    await grpc.unary("CompleteAction", { id: action.id, claimToken: claim.claimToken, resultRef: "done" });
    await grpc.unary("GetAction", { id: action.id });

    const moves = await eventually(
      async () => {
        const lines = proc.logs().filter((line) => line.actionId === action.id);
        return lines.length >= 4 ? lines : undefined;
      },
      "four lines about the action",
      10_000,
      50,
    );
    if (!moves) throw new Error("unreachable");
    expect(moves.map((line) => [line.msg, line.actionType, line.principal, line.from, line.to])).toEqual([
      [`action ${action.id} NEW -> PENDING`, "redeploy_service", "agent:triage", "NEW", "PENDING"],
      [`action ${action.id} PENDING -> APPROVED`, "redeploy_service", "human:bob", "PENDING", "APPROVED"],
      [`action ${action.id} APPROVED -> CLAIMED`, "redeploy_service", "worker:one", "APPROVED", "CLAIMED"],
      [`action ${action.id} CLAIMED -> COMPLETED`, "redeploy_service", "worker:one", "CLAIMED", "COMPLETED"],
    ]);
    expect(moves.every((line) => line.level === 30)).toBe(true);
    // A pause and its resume are state changes of the queue.
    await grpc.unary("PauseClaims", { scope: { kind: "PAUSE_KIND_ACTION_TYPE", value: "redeploy_service" }, actor: "human:carol", reason: "freeze" });
    await grpc.unary("ResumeClaims", { scope: { kind: "PAUSE_KIND_ACTION_TYPE", value: "redeploy_service" }, actor: "human:carol" });
    const pauses = await eventually(
      async () => {
        const lines = proc.logs().filter((line) => String(line.msg).startsWith("claims "));
        return lines.length >= 2 ? lines : undefined;
      },
      "the pause and resume lines",
      10_000,
      50,
    );
    expect(pauses?.map((line) => [line.msg, line.principal, line.reason ?? line.pausedBy])).toEqual([
      ["claims paused: action_type redeploy_service", "human:carol", "freeze"],
      ["claims resumed: action_type redeploy_service", "human:carol", "human:carol"],
    ]);
    // The calls themselves are not logged at info.
    expect(proc.logs().filter((line) => line.msg === "rpc")).toEqual([]);
  });
  it("logs the moves the server's own timers make, and the status a cancel started from", { timeout: 90_000 }, async () => {
    const { proc, grpc } = await serveAtInfo({ ACTIONQ_SWEEP_INTERVAL_SECONDS: "0.2" });
    const linesAbout = (id: string, count: number) =>
      eventually(
        async () => {
          const lines = proc.logs().filter((line) => line.actionId === id);
          return lines.length >= count ? lines : undefined;
        },
        `${count} lines about action ${id}`,
        15_000,
        50,
      );

    // A lease that runs out: the sweeper puts the action back, and says so.
    const { action: leased } = await grpc.unary<{ action: WireAction }>("EnqueueAction", { actionType: "lease_job", createdBy: "agent:triage" });
    await grpc.unary("ClaimAction", { worker: "worker:slow", actionTypes: ["lease_job"], leaseDuration: { seconds: 1 } });
    const leaseLines = await linesAbout(leased.id, 3);
    expect(leaseLines!.map((line) => [line.msg, line.principal, line.change])).toEqual([
      [`action ${leased.id} NEW -> APPROVED`, "agent:triage", "enqueued"],
      [`action ${leased.id} APPROVED -> CLAIMED`, "worker:slow", "claimed"],
      [`action ${leased.id} CLAIMED -> APPROVED`, "server:sweeper", "timed_out"],
    ]);

    // A cancel can start from PENDING, APPROVED or CLAIMED: the line names which.
    const { action: pending } = await grpc.unary<{ action: WireAction }>("EnqueueAction", {
      actionType: "cancel_job",
      createdBy: "agent:triage",
      riskLevel: "RISK_LEVEL_GUARDED",
    });
    await grpc.unary("CancelAction", { id: pending.id, actor: "human:carol", reason: "not needed" });
    await grpc.unary("CancelAction", { id: leased.id, actor: "human:carol", reason: "not needed either" });
    expect((await linesAbout(pending.id, 2))!.at(-1)).toMatchObject({
      msg: `action ${pending.id} PENDING -> CANCELLED`,
      principal: "human:carol",
      from: "PENDING",
    });
    expect((await linesAbout(leased.id, 4))!.at(-1)).toMatchObject({
      msg: `action ${leased.id} APPROVED -> CANCELLED`,
      principal: "human:carol",
      from: "APPROVED",
    });
  });
});

describe("actionq serve with approver groups it cannot meet", () => {
  it("warns at start, naming the groups, when the policy requires groups and there is no auth file", { timeout: 90_000 }, async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "actionq-groups-"));
    try {
      const policy = path.join(dir, "policy.yaml");
      await writeFile(policy, "approvers:\n  dangerous: [{ group: sre-leads, count: 1 }]\n");
      const { proc } = await serveAtInfo({ ACTIONQ_POLICY: policy });
      const warning = proc.logs().find((line) => typeof line.msg === "string" && line.msg.includes("there is no auth file"));
      expect(warning).toMatchObject({ level: 40, groups: ["sre-leads"] }); // pino: 40 is warn
      expect(String(warning?.msg)).toContain("nobody belongs to a group");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
