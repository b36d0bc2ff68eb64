// `actionq executor`, the built reference executor, run as a real process
// against a real server: what it simulates, what it records in the event
// log, how it resumes after kill -9, and when it calls a plugged handler.
// These tests run the compiled code: `npm test` builds first; run
// `npm run build` before running this file on its own.
import { existsSync } from "node:fs";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { JsonObject } from "@bufbuild/protobuf";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Action, ActionStatus, type Event, RiskLevel } from "../gen/actionq/v1/action_pb.js";
import { Journal } from "../src/executor/journal.js";
import { createLogger } from "../src/log.js";
import { ActionqServer } from "../src/server.js";
import { ActionqProcess, freePort, killRunning, requireBuiltCli } from "./support/processes.js";
import { bearer, principal, removeAuthDirs, writeAuthFile } from "./support/auth.js";
import { type TestServer, startTestServer, testConfig } from "./support/harness.js";
import { eventually } from "./support/wait.js";

const packageRoot = path.resolve(import.meta.dirname, "..");
const exampleHandler = path.join(packageRoot, "examples", "handlers", "redeploy-spool.js");

/** A running `actionq executor`, with a private XDG_STATE_HOME so that
 * nothing lands in the real home directory. */
class ExecutorProcess extends ActionqProcess {
  constructor(args: string[], env: Record<string, string> = {}) {
    super(["executor", ...args], { XDG_STATE_HOME: path.join(tmpdir(), "actionq-executor-test-xdg"), ...env });
  }
}

const tempDirs: string[] = [];

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

async function journalFiles(stateDir: string): Promise<string[]> {
  if (!existsSync(stateDir)) return [];
  return (await readdir(stateDir)).filter((name) => name.endsWith(".json"));
}

const progressSteps = (events: Event[]) => events.filter((e) => e.eventType === "action_progress").map((e) => e.payload?.step);
const count = (events: Event[], type: string) => events.filter((e) => e.eventType === type).length;

describe("actionq executor", () => {
  let t: TestServer;

  beforeAll(async () => {
    requireBuiltCli();
    t = await startTestServer();
  });

  afterEach(async () => {
    await killRunning();
    // Work left unfinished by a test must not reach the next test's executor.
    const open = await t.client.listActions({ statuses: [ActionStatus.PENDING, ActionStatus.APPROVED, ActionStatus.CLAIMED], pageSize: 1000 });
    for (const action of open.actions) await t.client.cancelAction({ id: action.id, actor: "human:tester", reason: "test cleanup" }).catch(() => {});
  });

  afterAll(async () => {
    for (const dir of tempDirs) await rm(dir, { recursive: true, force: true });
    await t?.close();
  });

  async function enqueue(fields: {
    actionType: string;
    createdBy?: string;
    riskLevel?: RiskLevel;
    node?: string;
    service?: string;
    targetRef?: string;
    payload?: JsonObject;
  }): Promise<Action> {
    // A human producer: agents are rate limited, and this file enqueues many.
    const response = await t.client.enqueueAction({ createdBy: "human:alice", ...fields });
    return response.action!;
  }

  async function approve(id: bigint): Promise<Action> {
    return (await t.client.approveAction({ id, approver: "human:bob", note: "checked the diff" })).action!;
  }

  async function history(id: bigint): Promise<{ action: Action; events: Event[] }> {
    const response = await t.client.getAction({ id });
    return { action: response.action!, events: response.events };
  }

  /** eventually(), with the executor's output in the error when time runs
   * out or it exits first. */
  async function waitFor<T>(executor: ExecutorProcess, fn: () => Promise<T | undefined | false>, what: string, timeoutMs: number): Promise<T> {
    try {
      const value = await eventually(
        async () => {
          if (!executor.alive) throw new Error(`the executor exited before ${what}`);
          return fn();
        },
        what,
        timeoutMs,
        50,
      );
      return value as T;
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${executor.output()}`);
    }
  }

  function allFinished(ids: bigint[], executor: ExecutorProcess, timeoutMs: number): Promise<Action[]> {
    return waitFor(
      executor,
      async () => {
        const actions = await Promise.all(ids.map(async (id) => (await history(id)).action));
        return actions.every((a) => a.status === ActionStatus.COMPLETED || a.status === ActionStatus.FAILED) && actions;
      },
      `actions ${ids.join(", ")} to finish`,
      timeoutMs,
    );
  }

  /** The ids among `ids` with a progress step `step` in the event log. */
  async function withStep(ids: bigint[], step: string): Promise<Set<bigint>> {
    const page = await t.client.listEvents({ eventTypes: ["action_progress"], pageSize: 1000 });
    const wanted = new Set(ids);
    return new Set(page.events.filter((e) => wanted.has(e.actionId) && e.payload?.step === step).map((e) => e.actionId));
  }

  it("simulates the four built-in types, guarded ones after a human approved them, and records every step", { timeout: 60_000 }, async () => {
    const stateDir = await tempDir("actionq-executor-state-");
    const redeploy = await enqueue({
      actionType: "redeploy_service",
      riskLevel: RiskLevel.GUARDED,
      node: "node-3",
      service: "api",
      targetRef: "k8s/prod/api",
      payload: { image: "api:1.4.2" },
    });
    const stage = await enqueue({
      actionType: "rerun_deployment_stage",
      riskLevel: RiskLevel.GUARDED,
      service: "web",
      targetRef: "deploy/web#42",
      payload: { stage: "canary" },
    });
    const healthcheck = await enqueue({ actionType: "rerun_healthcheck", node: "node-3", service: "api", payload: { check: "http-ready" } });
    const diagnostics = await enqueue({ actionType: "collect_diagnostics", node: "node-7", payload: { collect: ["logs", "heap"] } });
    expect(redeploy.status).toBe(ActionStatus.PENDING);
    expect(stage.status).toBe(ActionStatus.PENDING);
    await approve(redeploy.id);
    await approve(stage.id);

    const executor = new ExecutorProcess(["--server", t.address, "--worker", "executor:sim", "--state-dir", stateDir]);
    const ids = [redeploy.id, stage.id, healthcheck.id, diagnostics.id];
    const finished = await allFinished(ids, executor, 30_000);

    for (const action of finished) {
      expect(action.status, `${action.actionType}: ${action.failureReason}`).toBe(ActionStatus.COMPLETED);
      expect(action.resultRef).toMatch(/^simulated: would /);
      expect(action.resultRef.length).toBeLessThanOrEqual(512);
      expect(action.claimedBy).toBe("executor:sim");
    }
    expect(finished[0]!.resultRef).toBe("simulated: would restart service api on node node-3 with image api:1.4.2 (target k8s/prod/api)");
    expect(finished[1]!.resultRef).toContain("rerun stage canary of deployment deploy/web#42");
    expect(finished[2]!.resultRef).toContain("rerun healthcheck http-ready of service api on node node-3");
    expect(finished[3]!.resultRef).toContain("collect diagnostics (logs, heap) from node node-7");

    for (const id of ids) {
      const { events } = await history(id);
      const sequence = events.map((e) => (e.eventType === "action_progress" ? `progress:${String(e.payload?.step)}` : e.eventType));
      expect(sequence).toEqual(["action_enqueued", "action_approved", "action_claimed", "progress:started", "progress:applied", "action_completed"]);
      const progress = events.filter((e) => e.eventType === "action_progress");
      for (const event of progress) {
        expect(event.actor).toBe("executor:sim");
        expect(event.payload).toMatchObject({ mode: "simulate", attempt: 1 });
        expect(String(event.payload?.mutation)).not.toBe("");
      }
    }
    const approvals = await Promise.all(
      [redeploy.id, stage.id].map(async (id) => (await history(id)).events.find((e) => e.eventType === "action_approved")!.actor),
    );
    expect(approvals).toEqual(["human:bob", "human:bob"]);

    expect(await executor.stop()).toEqual({ code: 0, signal: null });
    expect(await journalFiles(stateDir)).toEqual([]);
  });

  it("on SIGTERM takes no new work, finishes the claims it holds, and exits 0", { timeout: 60_000 }, async () => {
    const stateDir = await tempDir("actionq-executor-state-");
    const held = [await enqueue({ actionType: "collect_diagnostics", node: "node-1" }), await enqueue({ actionType: "collect_diagnostics", node: "node-2" })];
    const ids = held.map((a) => a.id);
    const executor = new ExecutorProcess([
      "--server",
      t.address,
      "--worker",
      "executor:term",
      "--state-dir",
      stateDir,
      "--simulate-delay",
      "1500",
      "--max-in-flight",
      "2",
    ]);
    await waitFor(executor, async () => (await withStep(ids, "started")).size === 2, "both actions to start", 20_000);
    const later = await enqueue({ actionType: "collect_diagnostics", node: "node-9" });

    executor.child.kill("SIGTERM");
    expect(await executor.exitWithin(20_000)).toEqual({ code: 0, signal: null });
    for (const id of ids) expect((await history(id)).action.status).toBe(ActionStatus.COMPLETED);
    expect((await history(later.id)).action.status).toBe(ActionStatus.APPROVED);
    expect(await journalFiles(stateDir)).toEqual([]);
  });

  it("after kill -9 in the middle of eight actions, a restart resumes the held claims and applies and completes each action exactly once", {
    timeout: 120_000,
  }, async () => {
    const stateDir = await tempDir("actionq-executor-state-");
    const actions = [];
    for (let i = 0; i < 8; i++)
      actions.push(await enqueue({ actionType: i % 2 ? "rerun_healthcheck" : "collect_diagnostics", node: `node-${i}`, service: "api" }));
    const ids = actions.map((a) => a.id);
    const args = [
      "--server",
      t.address,
      "--worker",
      "executor:crash",
      "--state-dir",
      stateDir,
      "--simulate-delay",
      "2000",
      "--max-in-flight",
      "4",
      "--lease",
      "30",
    ];

    const first = new ExecutorProcess(args);
    const started = await waitFor(
      first,
      async () => {
        const inFlight = await withStep(ids, "started");
        return inFlight.size === 4 && inFlight;
      },
      "four actions to start",
      20_000,
    );
    first.child.kill("SIGKILL");
    expect((await first.exitWithin(10_000)).signal).toBe("SIGKILL");
    // Killed mid-apply: nothing finished, and every held claim is journaled.
    expect(await withStep(ids, "applied")).toEqual(new Set());
    expect((await journalFiles(stateDir)).length).toBe(4);

    const second = new ExecutorProcess(args);
    const finished = await allFinished(ids, second, 60_000);
    for (const action of finished) expect(action.status, action.failureReason).toBe(ActionStatus.COMPLETED);

    for (const id of ids) {
      const { events } = await history(id);
      expect(count(events, "action_completed"), `action ${id}`).toBe(1);
      expect(
        progressSteps(events).filter((step) => step === "applied"),
        `action ${id}`,
      ).toHaveLength(1);
      const completedAt = events.findIndex((e) => e.eventType === "action_completed");
      expect(
        events.slice(completedAt + 1).map((e) => e.eventType),
        `action ${id} after completion`,
      ).toEqual([]);
      if (started.has(id)) {
        // Held by the killed executor: taken up again with the same claim.
        expect(progressSteps(events), `action ${id}`).toEqual(["started", "resumed", "applied"]);
        expect(count(events, "action_claimed"), `action ${id}`).toBe(1);
        expect(events.find((e) => e.eventType === "action_progress" && e.payload?.step === "resumed")!.payload).toMatchObject({ phase: "acked", attempt: 1 });
      } else {
        expect(progressSteps(events), `action ${id}`).not.toContain("resumed");
      }
    }
    expect(second.logs().some((line) => line.msg === "resuming journaled claims" && line.entries === 4)).toBe(true);
    expect(await second.stop()).toEqual({ code: 0, signal: null });
    expect(await journalFiles(stateDir)).toEqual([]);
  });

  it("a journaled claim already applied is only completed with its stored result, one for a finished action is dropped, and one taken live is left alone by a simulation", {
    timeout: 60_000,
  }, async () => {
    const stateDir = await tempDir("actionq-executor-state-");
    const worker = "executor:journal";
    const applied = await enqueue({ actionType: "collect_diagnostics", node: "node-4" });
    const appliedClaim = (await t.client.claimAction({ worker, actionTypes: ["collect_diagnostics"], leaseDuration: { seconds: 60n } })).claim!;
    const finished = await enqueue({ actionType: "collect_diagnostics", node: "node-5" });
    const finishedClaim = (await t.client.claimAction({ worker, actionTypes: ["collect_diagnostics"], leaseDuration: { seconds: 60n } })).claim!;
    expect([appliedClaim.action!.id, finishedClaim.action!.id]).toEqual([applied.id, finished.id]);
    await t.client.completeAction({ id: finished.id, claimToken: finishedClaim.claimToken, resultRef: "done elsewhere" });
    const takenLive = await enqueue({ actionType: "collect_diagnostics", node: "node-6" });
    const liveClaim = (await t.client.claimAction({ worker, actionTypes: ["collect_diagnostics"], leaseDuration: { seconds: 60n } })).claim!;
    const finishedEvents = (await history(finished.id)).events.length;

    // What an executor stopped between applying and completing leaves behind.
    const journal = await Journal.open(stateDir);
    await journal.write({
      id: applied.id.toString(),
      token: appliedClaim.claimToken,
      attempt: 1,
      actionType: "collect_diagnostics",
      mode: "simulate",
      phase: "applied",
      resultRef: "simulated: from the run before",
    });
    await journal.write({
      id: finished.id.toString(),
      token: finishedClaim.claimToken,
      attempt: 1,
      actionType: "collect_diagnostics",
      mode: "simulate",
      phase: "acked",
      resultRef: "",
    });
    await journal.write({
      id: takenLive.id.toString(),
      token: liveClaim.claimToken,
      attempt: 1,
      actionType: "collect_diagnostics",
      mode: "live",
      phase: "acked",
      resultRef: "",
    });
    await journal.close();

    const executor = new ExecutorProcess(["--server", t.address, "--worker", worker, "--state-dir", stateDir]);
    const [done] = await allFinished([applied.id], executor, 20_000);
    expect(done!.status).toBe(ActionStatus.COMPLETED);
    expect(done!.resultRef).toBe("simulated: from the run before");
    const { events } = await history(applied.id);
    expect(progressSteps(events)).toEqual(["resumed", "applied"]);
    expect(count(events, "action_completed")).toBe(1);
    // The handler did not run again.
    expect(executor.logs().some((line) => line.action === applied.id.toString() && String(line.msg).startsWith("simulating"))).toBe(false);

    await waitFor(executor, async () => (await journalFiles(stateDir)).length === 1, "the journal to keep only the live entry", 10_000);
    expect(await journalFiles(stateDir)).toEqual([`action-${takenLive.id}-attempt-1.json`]);
    // Perhaps half applied by a live handler: a simulation must not report it done.
    const leftAlone = await history(takenLive.id);
    expect(leftAlone.action.status).toBe(ActionStatus.CLAIMED);
    expect(progressSteps(leftAlone.events)).toEqual([]);
    expect((await history(finished.id)).events).toHaveLength(finishedEvents);
    expect((await history(finished.id)).action.resultRef).toBe("done elsewhere");
    expect(await executor.stop()).toEqual({ code: 0, signal: null });
  });

  it("on Drain finishes the claims it holds through the server's restart, then reconnects and takes new work", { timeout: 90_000 }, async () => {
    // A second server on the same schema and a fixed port, so that it can
    // go away and come back where the executor looks for it.
    const port = await freePort();
    const config = testConfig(t.schema, { ACTIONQ_LISTEN: `127.0.0.1:${port}` });
    let replica = await ActionqServer.start(config, createLogger("silent"));
    try {
      const held = [await enqueue({ actionType: "rerun_healthcheck", service: "api" }), await enqueue({ actionType: "rerun_healthcheck", service: "web" })];
      const ids = held.map((a) => a.id);
      const executor = new ExecutorProcess([
        "--server",
        `127.0.0.1:${port}`,
        "--worker",
        "executor:drain",
        "--state-dir",
        await tempDir("actionq-executor-state-"),
        "--simulate-delay",
        "2000",
      ]);
      await waitFor(executor, async () => (await withStep(ids, "started")).size === 2, "both actions to start", 20_000);

      await replica.close();
      await waitFor(executor, async () => executor.logs().some((line) => line.msg === "server sent Drain"), "the executor to log the Drain", 10_000);
      replica = await ActionqServer.start(config, createLogger("silent"));

      const finished = await allFinished(ids, executor, 40_000);
      for (const action of finished) expect(action.status, action.failureReason).toBe(ActionStatus.COMPLETED);
      for (const id of ids) expect(progressSteps((await history(id)).events)).toEqual(["started", "applied"]);
      const next = await enqueue({ actionType: "rerun_healthcheck", service: "db" });
      const [nextDone] = await allFinished([next.id], executor, 40_000);
      expect(nextDone!.claimedBy).toBe("executor:drain");
      expect(executor.logs().filter((line) => line.msg === "opening claim stream").length).toBeGreaterThanOrEqual(2);
      expect(await executor.stop()).toEqual({ code: 0, signal: null });
    } finally {
      await replica.close();
    }
  });

  it("runs the plugged example handler only in live mode, and fails the action with the handler's error", { timeout: 60_000 }, async () => {
    const spool = await tempDir("actionq-redeploy-spool-");
    const env = { ACTIONQ_REDEPLOY_SPOOL: spool };
    const handler = `redeploy_service=${path.relative(packageRoot, exampleHandler)}`;

    // Simulation with a handler plugged in: simulated, and the handler never called.
    const simulated = await enqueue({ actionType: "redeploy_service", riskLevel: RiskLevel.GUARDED, node: "node-3", service: "api" });
    await approve(simulated.id);
    const simulation = new ExecutorProcess(
      ["--server", t.address, "--worker", "executor:sim-plugged", "--state-dir", await tempDir("actionq-executor-state-"), "--handler", handler],
      env,
    );
    const [simulatedDone] = await allFinished([simulated.id], simulation, 20_000);
    expect(simulatedDone!.resultRef).toBe("simulated: would restart service api on node node-3");
    expect(await simulation.stop()).toEqual({ code: 0, signal: null });
    expect(await readdir(spool)).toEqual([]);

    // Live: only the plugged type is taken, and the handler does the work.
    const other = await enqueue({ actionType: "collect_diagnostics", node: "node-3" });
    const live = await enqueue({
      actionType: "redeploy_service",
      riskLevel: RiskLevel.GUARDED,
      node: "node-3",
      service: "api",
      payload: { image: "api:1.4.3" },
    });
    const broken = await enqueue({ actionType: "redeploy_service", riskLevel: RiskLevel.GUARDED, node: "node-3" });
    await approve(live.id);
    await approve(broken.id);
    const executor = new ExecutorProcess(
      ["--server", t.address, "--worker", "executor:live", "--state-dir", await tempDir("actionq-executor-state-"), "--live", "--handler", handler],
      env,
    );
    const [liveDone, brokenDone] = await allFinished([live.id, broken.id], executor, 20_000);

    const requestFile = path.join(spool, `redeploy-${live.id}.json`);
    expect(liveDone!.status).toBe(ActionStatus.COMPLETED);
    expect(liveDone!.resultRef).toBe(`file://${requestFile}`);
    expect(JSON.parse(await readFile(requestFile, "utf8"))).toMatchObject({
      action_id: live.id.toString(),
      service: "api",
      node: "node-3",
      image: "api:1.4.3",
      attempt: 1,
    });
    const liveProgress = (await history(live.id)).events.filter((e) => e.eventType === "action_progress");
    expect(liveProgress.map((e) => e.payload?.step)).toEqual(["started", "applied"]);
    for (const event of liveProgress)
      expect(event.payload).toMatchObject({ mode: "live", mutation: "restart service api on node node-3 with image api:1.4.3" });

    expect(brokenDone!.status).toBe(ActionStatus.FAILED);
    expect(brokenDone!.failureReason).toBe("redeploy_service needs a service (or a target_ref naming one)");
    expect((await history(other.id)).action.status).toBe(ActionStatus.APPROVED);
    expect(await executor.stop()).toEqual({ code: 0, signal: null });
  });

  it("refuses live mode without a handler, and a handler module that does not exist, with exit code 2", { timeout: 30_000 }, async () => {
    const noHandler = new ExecutorProcess(["--server", t.address, "--live"]);
    expect(await noHandler.exitWithin(15_000)).toEqual({ code: 2, signal: null });
    expect(noHandler.stderr).toContain("--live needs at least one --handler");

    const missing = new ExecutorProcess(["--server", t.address, "--live", "--handler", "redeploy_service=./no/such/handler.js"]);
    expect(await missing.exitWithin(15_000)).toEqual({ code: 2, signal: null });
    expect(missing.stderr).toContain("no such file");
  });
});

describe("actionq executor with a credential", () => {
  let t: TestServer;
  const executorPrincipal = principal("svc:executor-a", ["worker"]);
  const producer = principal("human:producer", ["producer", "viewer"]);

  beforeAll(async () => {
    requireBuiltCli();
    t = await startTestServer({ ACTIONQ_AUTH_FILE: await writeAuthFile([executorPrincipal, producer]) });
  });
  afterEach(() => killRunning());
  afterAll(async () => {
    await t?.close();
    await removeAuthDirs();
    for (const dir of tempDirs) await rm(dir, { recursive: true, force: true });
  });

  it("without --worker, logs under the principal's name, the name the server records", { timeout: 60_000 }, async () => {
    const { action } = await t.grpc.unary<{ action: { id: string } }>(
      "EnqueueAction",
      { actionType: "collect_diagnostics", node: "node-9" },
      bearer(producer.tokens[0]),
    );
    const executor = new ExecutorProcess(["--server", t.address, "--state-dir", await tempDir("actionq-executor-state-")], {
      ACTIONQ_TOKEN: executorPrincipal.tokens[0]!,
    });
    const done = await eventually(
      async () => {
        const { action: now } = await t.grpc.unary<{ action: { status: string; claimedBy: string } }>(
          "GetAction",
          { id: action.id },
          bearer(producer.tokens[0]),
        );
        return now.status === "ACTION_STATUS_COMPLETED" ? now : undefined;
      },
      "the action to complete",
      30_000,
      100,
    );
    expect(done!.claimedBy).toBe("svc:executor-a");
    const started = executor.logs().find((line) => line.msg === "executor started");
    expect(started?.worker).toBe("svc:executor-a");
    expect(executor.logs().some((line) => String(line.worker).startsWith("executor:"))).toBe(false);
  });
});
