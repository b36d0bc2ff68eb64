// Outgoing webhooks over the wire: a real receiver on loopback that checks
// every signature with the standardwebhooks library, each notification
// kind arriving for its cause, the filters by kind, project and type, the
// Slack body, retries in order with the same webhook-id, reloads (an invalid
// file keeps the endpoints in force; a new endpoint starts from now), two
// replicas sending each notification once, and an invalid file refused at
// start. The spawned-process test runs the compiled code: run `npm run
// build` before running this file on its own.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GrpcClient, type TestServer, startTestServer } from "./support/harness.js";
import { databaseUrl, dropSchema, freshSchema } from "./support/database.js";
import { ActionqProcess, freePort, killRunning, requireBuiltCli, runToEnd } from "./support/processes.js";
import { eventually, sleep } from "./support/wait.js";
import { RISK, unique } from "./support/safety.js";
import { enqueue } from "./support/wire.js";
import { pruneOutbox } from "../src/store/webhooks.js";
import { type Received, Receiver, newSecret } from "./support/webhook-receiver.js";

const SECRET = newSecret();
const dirs: string[] = [];

async function tempFile(name: string, text: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "actionq-webhooks-"));
  dirs.push(dir);
  const file = path.join(dir, name);
  await writeFile(file, text);
  return file;
}

const POLICY = `
name: webhooks-test
quorum: { guarded: 2, dangerous: 1 }
approval_ttl: { dangerous: 1s }
action_types: { wh_change: guarded, wh_risky: dangerous, wh_job: safe }
`;

function webhooksYaml(receiver: Receiver, extra = ""): string {
  return `
retry: { initial: 50ms, max: 200ms }
endpoints:
  - name: all
    url: ${receiver.url("/all")}
    secret: ${SECRET}
    events: ["*"]
  - name: payments
    url: ${receiver.url("/payments")}
    secret: ${SECRET}
    events: [approval_requested, action_failed]
    projects: ["pay-*"]
    action_types: ["wh_*"]
  - name: chat
    url: ${receiver.url("/slack")}
    secret: ${SECRET}
    format: slack
    events: [approval_requested]
    projects: ["chat"]
  - name: flaky
    url: ${receiver.url("/flaky")}
    secret: ${SECRET}
    events: [approval_requested]
    projects: ["flaky"]
${extra}`;
}

let receiver: Receiver;
let t: TestServer;
let webhooksFile: string;
let policyFile: string;

beforeAll(async () => {
  receiver = await Receiver.start(SECRET);
  webhooksFile = await tempFile("webhooks.yaml", webhooksYaml(receiver));
  policyFile = await tempFile("policy.yaml", POLICY);
  t = await startTestServer({
    ACTIONQ_WEBHOOKS_FILE: webhooksFile,
    ACTIONQ_POLICY: policyFile,
    ACTIONQ_SWEEP_INTERVAL_SECONDS: "0.2",
    ACTIONQ_POLL_INTERVAL_SECONDS: "1",
    ACTIONQ_RETRY_BACKOFF_SECONDS: "0.01",
    ACTIONQ_METRICS_LISTEN: "127.0.0.1:0",
  });
});

afterAll(async () => {
  await t?.close();
  await receiver?.close();
  await killRunning();
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

/** Notifications at `path` about this action, by kind, once each
 * (a retried one arrives more than once with the same webhook-id). */
const about = (path: string, actionId: string) => receiver.delivered(path).filter((r) => String(r.body.data?.event.actionId) === actionId);
const kinds = (records: Received[]) => [...new Set(records.map((r) => `${r.id}:${r.body.type}`))].map((key) => key.split(":")[1]);

async function waitFor(path: string, what: string, test: (records: Received[]) => boolean, timeoutMs = 10_000): Promise<Received[]> {
  return eventually(
    () => {
      const records = receiver.delivered(path);
      return test(records) ? records : undefined;
    },
    what,
    timeoutMs,
  ) as Promise<Received[]>;
}

async function claim(actionType: string): Promise<{ id: string; token: string }> {
  const claimed = await eventually(
    async () =>
      (
        await t.grpc.unary<{ claim: { action: { id: string }; claimToken: string } | null }>("ClaimAction", {
          worker: "worker:hooks",
          actionTypes: [actionType],
        })
      ).claim,
    `a claim of ${actionType}`,
  );
  return { id: claimed!.action.id, token: claimed!.claimToken };
}

describe("each notification kind arrives for its cause, signed", () => {
  it("approval requested, granted, approved by people; nothing for what the policy approves", async () => {
    const { action } = await enqueue(t, { actionType: "wh_change", project: "pay-eu", targetRef: "svc-a", createdBy: "agent:proposer" });
    await t.grpc.unary("ApproveAction", { id: action.id, approver: "human:alice", note: "ok" });
    await t.grpc.unary("ApproveAction", { id: action.id, approver: "human:bob", note: "ok too" });
    const { action: auto } = await enqueue(t, { actionType: "wh_job", project: "pay-eu" });
    const records = await waitFor("/all", "three notifications about the approved action", () => about("/all", action.id).length >= 3);
    expect(kinds(about("/all", action.id))).toEqual(["approval_requested", "approval_granted", "action_approved"]);
    const [requested, granted, approved] = about("/all", action.id);
    // The action as the event left it, not as it is now.
    expect(requested!.body.data!.action).toMatchObject({ id: action.id, status: "ACTION_STATUS_PENDING", project: "pay-eu", targetRef: "svc-a" });
    expect(requested!.body.data!.event).toMatchObject({ id: requested!.id, eventType: "action_enqueued", actor: "agent:proposer" });
    expect(granted!.body.data!.event).toMatchObject({ eventType: "approval_granted", actor: "human:alice" });
    expect(approved!.body.data!.action).toMatchObject({ status: "ACTION_STATUS_APPROVED", approvedBy: "human:bob" });
    expect(requested!.body.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    // Approved by the policy at enqueue: no notification at all.
    expect(about("/all", auto.id)).toEqual([]);
    expect(records.every((r) => r.verified)).toBe(true);
  });

  it("rejected, and approval expired, are told apart", async () => {
    const { action: rejected } = await enqueue(t, { actionType: "wh_change", project: "ops" });
    await t.grpc.unary("RejectAction", { id: rejected.id, actor: "human:carol", reason: "approval_expired" });
    const { action: expiring } = await enqueue(t, { actionType: "wh_risky", project: "ops" });
    await waitFor("/all", "the expiry", () => about("/all", expiring.id).length >= 2);
    await waitFor("/all", "the rejection", () => about("/all", rejected.id).length >= 2);
    // A person's reason text cannot pass for an expiry.
    expect(kinds(about("/all", rejected.id))).toEqual(["approval_requested", "action_rejected"]);
    expect(kinds(about("/all", expiring.id))).toEqual(["approval_requested", "approval_expired"]);
    expect(about("/all", expiring.id)[1]!.body.data!.action).toMatchObject({ status: "ACTION_STATUS_REJECTED", failureReason: "approval_expired" });
  });

  it("a failed attempt with a retry ahead, then the final failure (dead-lettered)", async () => {
    const type = unique("wh_fail");
    const { action } = await enqueue(t, { actionType: type, project: "pay-eu", maxAttempts: 2 });
    const first = await claim(type);
    expect(first.id).toBe(action.id);
    await t.grpc.unary("FailAction", { id: action.id, claimToken: first.token, reason: "disk full", retryable: true });
    const second = await claim(type);
    expect(second.id).toBe(action.id);
    await t.grpc.unary("FailAction", { id: action.id, claimToken: second.token, reason: "disk still full", retryable: true });
    await waitFor("/all", "both failures", () => about("/all", action.id).length >= 2);
    expect(kinds(about("/all", action.id))).toEqual(["attempt_failed", "action_failed"]);
    expect(about("/all", action.id)[1]!.body.data!.action).toMatchObject({ status: "ACTION_STATUS_FAILED", failures: 2 });
  });

  it("pause and resume, and a policy reload", async () => {
    const project = unique("p");
    const scope = { kind: "PAUSE_KIND_PROJECT", value: project };
    await t.grpc.unary("PauseClaims", { scope, actor: "human:ops", reason: "maintenance" });
    await t.grpc.unary("ResumeClaims", { scope, actor: "human:ops", reason: "done" });
    await writeFile(policyFile, `${POLICY}\nrules: [{ name: reloaded, effect: forbid, action_types: [nothing_at_all] }]\n`);
    const { policyVersion } = await t.grpc.unary<{ policyVersion: string }>("ReloadPolicy", { actor: "human:ops" });
    const records = await waitFor("/all", "pause, resume and reload", (all) => all.some((r) => r.body.type === "policy_reloaded"));
    const pause = records.find((r) => r.body.type === "paused" && JSON.stringify(r.body.data!.event).includes(project));
    const resume = records.find((r) => r.body.type === "resumed" && JSON.stringify(r.body.data!.event).includes(project));
    const reload = records.find((r) => r.body.type === "policy_reloaded");
    expect(pause?.body.data).toMatchObject({ action: null, event: { eventType: "coordinator_paused", actor: "human:ops" } });
    expect(resume?.body.data?.event).toMatchObject({ eventType: "coordinator_resumed" });
    expect(reload?.body.data?.event).toMatchObject({ eventType: "policy_reloaded", payload: { to: policyVersion } });
    expect(BigInt(pause!.id)).toBeLessThan(BigInt(resume!.id));
  });

  it("break-glass on an action", async () => {
    const { action } = await enqueue(t, { actionType: unique("glass"), createdBy: "agent:proposer" });
    await t.grpc.unary("BreakGlass", { id: action.id, actor: "human:ops", reason: "outage bridge" });
    await waitFor("/all", "the break-glass", () => about("/all", action.id).length >= 1);
    const [broken] = about("/all", action.id);
    expect(broken!.body.type).toBe("break_glass");
    expect(broken!.body.data!.event).toMatchObject({ eventType: "break_glass", actor: "human:ops", payload: { reason: "outage bridge" } });
    expect(broken!.body.data!.action).toMatchObject({ breakGlassBy: "human:ops", breakGlassReason: "outage bridge" });
  });

  it("every request to every endpoint verifies, and each endpoint gets its notifications in event order", () => {
    expect(receiver.received.length).toBeGreaterThan(10);
    expect(receiver.received.filter((r) => !r.verified)).toEqual([]);
    for (const endpoint of ["/all", "/payments", "/slack", "/flaky"]) {
      const ids = receiver.delivered(endpoint).map((r) => BigInt(r.id));
      expect(ids, endpoint).toEqual([...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    }
  });
});

describe("filters and formats", () => {
  it("an endpoint gets only its kinds, projects and types", async () => {
    // Wanted: pending, a pay-* project, a wh_* type.
    const { action: wanted } = await enqueue(t, { actionType: "wh_change", project: "pay-us" });
    const { action: otherProject } = await enqueue(t, { actionType: "wh_change", project: "hr" });
    const { action: otherType } = await enqueue(t, { actionType: unique("other"), riskLevel: RISK.guarded, project: "pay-us" });
    await t.grpc.unary("RejectAction", { id: wanted.id, actor: "human:carol", reason: "not now" });
    // /all saw every one of them; /payments only the approval request of the wanted one.
    await waitFor("/all", "the notifications of all three", () => [wanted, otherProject, otherType].every((a) => about("/all", a.id).length > 0));
    await waitFor("/all", "the rejection", () => about("/all", wanted.id).length >= 2);
    await waitFor("/payments", "the wanted one", () => about("/payments", wanted.id).length > 0);
    const payments = receiver.delivered("/payments");
    expect(payments.length).toBeGreaterThan(0);
    for (const record of payments) {
      expect(["approval_requested", "action_failed"]).toContain(record.body.type);
      expect(String(record.body.data!.action!.project)).toMatch(/^pay-/);
      expect(String(record.body.data!.action!.actionType)).toMatch(/^wh_/);
    }
    expect(kinds(about("/payments", wanted.id))).toEqual(["approval_requested"]);
    expect(about("/payments", otherProject.id)).toEqual([]);
    expect(about("/payments", otherType.id)).toEqual([]);
  });

  it("the Slack format is an incoming-webhook body, still signed", async () => {
    const { action } = await enqueue(t, { actionType: "wh_change", project: "chat", targetRef: "svc-chat", createdBy: "agent:bot" });
    const [record] = await waitFor("/slack", "the Slack message", (records) => records.length > 0);
    expect(record!.verified).toBe(true);
    expect(Object.keys(record!.body)).toEqual(["text"]);
    expect(record!.body.text).toContain(`action ${action.id} wh_change on svc-chat (project chat) waits for approval`);
    expect(record!.body.text).toContain("agent:bot");
  });
});

describe("delivery", () => {
  it("a failing endpoint gets the notification again with the same webhook-id, then the next ones in order", async () => {
    let failures = 0;
    receiver.answer("/flaky", () => (failures++ < 3 ? 500 : 204));
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await enqueue(t, { actionType: "wh_change", project: "flaky" })).action.id);
    const delivered = await waitFor("/flaky", "three deliveries", (records) => records.length >= 3);
    const attempts = receiver.all("/flaky");
    // The first notification was tried four times under one id.
    expect(attempts.slice(0, 4).map((r) => r.id)).toEqual(Array(4).fill(attempts[0]!.id));
    expect(attempts.slice(0, 4).map((r) => r.status)).toEqual([500, 500, 500, 204]);
    expect(delivered.map((r) => String(r.body.data!.event.actionId))).toEqual(ids);
    // The metrics count the failures and the deliveries.
    const metrics = await (await fetch(`http://127.0.0.1:${t.server.metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/actionq_webhook_deliveries_total\{endpoint="flaky",outcome="http_error"\} 3/);
    expect(metrics).toMatch(/actionq_webhook_deliveries_total\{endpoint="flaky",outcome="delivered"\} 3/);
    expect(metrics).toMatch(/actionq_webhook_backlog\{endpoint="flaky"\} 0/);
    expect(metrics).toMatch(/actionq_webhook_consecutive_failures\{endpoint="flaky"\} 0/);
  });
  it("GetQueueStats says where each endpoint stands, failing or not", async () => {
    receiver.answer("/flaky", () => 503);
    const { action } = await enqueue(t, { actionType: "wh_change", project: "flaky" });
    type Stats = { webhooks: { endpoint: string; pending: string; consecutiveFailures: number; lastError: string; oldestPendingAge: unknown }[] };
    const failing = (await eventually(async () => {
      const stats = await t.grpc.unary<Stats>("GetQueueStats", {});
      const flaky = stats.webhooks.find((hook) => hook.endpoint === "flaky");
      return flaky && flaky.consecutiveFailures >= 2 ? stats : undefined;
    }, "the failing endpoint in the stats")) as Stats;
    expect(failing.webhooks.map((hook) => hook.endpoint)).toEqual(["all", "payments", "chat", "flaky"]);
    expect(failing.webhooks.find((hook) => hook.endpoint === "flaky")).toMatchObject({ pending: "1", lastError: "HTTP 503" });
    expect(failing.webhooks.find((hook) => hook.endpoint === "flaky")!.oldestPendingAge).not.toBeNull();
    receiver.answer("/flaky", () => 204);
    await waitFor("/flaky", "the delivery after the failures", () => about("/flaky", action.id).length > 0);
    // The receiver has answered before the sender records the delivery.
    const recovered = await eventually(async () => {
      const stats = await t.grpc.unary<Stats>("GetQueueStats", {});
      return stats.webhooks.find((hook) => hook.endpoint === "flaky" && hook.consecutiveFailures === 0);
    }, "the delivery recorded");
    expect(recovered).toMatchObject({ pending: "0", lastError: "", oldestPendingAge: null });
  });

  it("retention removes from the outbox what every endpoint has passed, and nothing a lagging one still needs", async () => {
    receiver.answer("/flaky", () => 500);
    const { action } = await enqueue(t, { actionType: "wh_change", project: "flaky" });
    await eventually(() => receiver.all("/flaky").some((r) => String(r.body.data?.event.actionId) === action.id), "the lagging endpoint's first attempt");
    const { rows: waiting } = await t.db.query<{ id: string }>(
      "SELECT max(id)::text AS id FROM events WHERE action_id = $1 AND event_type = 'action_enqueued'",
      [action.id],
    );
    const { rows: before } = await t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM webhook_outbox");
    const pruned = await pruneOutbox(t.db);
    const { rows: after } = await t.db.query<{ n: number; min: string }>("SELECT count(*)::int AS n, min(event_id)::text AS min FROM webhook_outbox");
    expect(pruned).toBeGreaterThan(0);
    expect(after[0]!.n).toBe(before[0]!.n - pruned);
    // What the lagging endpoint has not had yet stays.
    expect(after[0]!.min).toBe(waiting[0]!.id);
    receiver.answer("/flaky", () => 204);
    await waitFor("/flaky", "the lagging endpoint's delivery", () => about("/flaky", action.id).length > 0);
  });

  it("a notification whose event commits late is not jumped over", async () => {
    // An event id drawn first and committed last: the sender must wait for
    // it (the event horizon) rather than pass it by.
    const held = await t.db.connect();
    let lowId = "";
    let highId = "";
    try {
      await held.query("BEGIN");
      const { rows } = await held.query<{ id: string }>(
        "INSERT INTO events (action_id, event_type, actor, payload) VALUES (NULL, 'coordinator_paused', 'human:slow', $1) RETURNING id::text AS id",
        [JSON.stringify({ scope: { kind: "project", value: "slow" }, reason: "committed late" })],
      );
      lowId = rows[0]!.id;
      await t.grpc.unary("PauseClaims", { scope: { kind: "PAUSE_KIND_PROJECT", value: unique("p") }, actor: "human:ops", reason: "committed first" });
      const { rows: high } = await t.db.query<{ id: string }>("SELECT max(id)::text AS id FROM events WHERE event_type = 'coordinator_paused'");
      highId = high[0]!.id;
      expect(BigInt(highId)).toBeGreaterThan(BigInt(lowId));
      await sleep(1500);
      expect(receiver.delivered("/all").map((r) => r.id)).not.toContain(highId);
      await held.query("COMMIT");
    } finally {
      held.release();
    }
    await waitFor("/all", "both pauses", (records) => records.some((r) => r.id === highId));
    const ids = receiver.delivered("/all").map((r) => r.id);
    expect(ids).toContain(lowId);
    expect(ids.indexOf(lowId)).toBeLessThan(ids.indexOf(highId));
  });
});

describe("reloading the webhooks file", () => {
  it("an invalid file is refused and the endpoints in force stay; a new endpoint starts from now", async () => {
    const { action: before } = await enqueue(t, { actionType: "wh_change", project: "late" });
    await waitFor("/all", "the notification before the reload", () => about("/all", before.id).length > 0);

    await writeFile(webhooksFile, webhooksYaml(receiver).replace(`events: ["*"]`, "events: [approval_wanted]"));
    const refused = await t.server.reloadWebhooks().then(
      () => undefined,
      (error: Error) => error.message,
    );
    expect(refused).toMatch(/endpoints\[0\]\.events\[0\]: must be "\*" or one of approval_requested, /);

    await writeFile(
      webhooksFile,
      webhooksYaml(
        receiver,
        `  - name: late
    url: ${receiver.url("/late")}
    secret: ${SECRET}
    events: [approval_requested]`,
      ),
    );
    expect(await t.server.reloadWebhooks()).toEqual({ endpoints: 5 });
    const { action: after } = await enqueue(t, { actionType: "wh_change", project: "late" });
    await waitFor("/late", "the new endpoint's first notification", (records) => records.length > 0);
    await waitFor("/all", "the old endpoint still sends", () => about("/all", after.id).length > 0);
    // History is not replayed to an endpoint added later.
    expect(receiver.delivered("/late").map((r) => String(r.body.data!.event.actionId))).toEqual([after.id]);
  });
});

describe("two replicas", () => {
  it("each notification is sent by one of them", async () => {
    const schema = freshSchema();
    const file = await tempFile("replicas.yaml", `endpoints:\n  - { name: shared, url: "${receiver.url("/shared")}", secret: "${SECRET}", events: ["*"] }\n`);
    const env = { ACTIONQ_WEBHOOKS_FILE: file, ACTIONQ_POLL_INTERVAL_SECONDS: "1" };
    const one = await startTestServer(env, schema);
    const two = await startTestServer(env, schema).catch(async (error: unknown) => {
      await one.close();
      throw error;
    });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 10; i++) {
        const replica = i % 2 === 0 ? one : two;
        ids.push((await enqueue(replica, { actionType: "redeploy_service", project: "shared" })).action.id);
      }
      await waitFor("/shared", "ten notifications", (records) => records.length >= 10);
      // The first replica took the endpoint at its start; when it stops,
      // the other carries on from the cursor in the database.
      await one.server.close(); // the server only: the schema stays for the other
      for (let i = 0; i < 5; i++) ids.push((await enqueue(two, { actionType: "redeploy_service", project: "shared" })).action.id);
      await waitFor("/shared", "five more from the other replica", (records) => records.length >= 15);
      const delivered = receiver.delivered("/shared");
      expect(delivered.map((r) => String(r.body.data!.event.actionId))).toEqual(ids);
      expect(new Set(delivered.map((r) => r.id)).size).toBe(delivered.length);
    } finally {
      await two.close();
      await one.close();
    }
  });
});

describe("an invalid webhooks file at start", () => {
  it("is refused with one line naming the key, before the server starts", async () => {
    requireBuiltCli();
    const file = await tempFile(
      "bad.yaml",
      `endpoints:\n  - name: bad\n    url: ${receiver.url("/bad")}\n    secret: not-a-secret\n    events: [approval_requested]\n`,
    );
    const result = await runToEnd(["serve"], { ACTIONQ_URL: "postgres://127.0.0.1:1/none", ACTIONQ_LISTEN: "127.0.0.1:0", ACTIONQ_WEBHOOKS_FILE: file });
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toMatch(/^actionq: ACTIONQ_WEBHOOKS_FILE .*bad\.yaml: endpoints\[0\]\.secret: must be "whsec_" followed by the base64/);
  });
});

describe("SIGHUP on a running `actionq serve`", () => {
  it("reads the webhooks file again: an invalid one is logged and the endpoints in force stay; a valid one takes over", async () => {
    requireBuiltCli();
    const schema = freshSchema();
    const port = await freePort();
    const endpoint = (name: string) =>
      `endpoints:\n  - { name: ${name}, url: "${receiver.url(`/${name}`)}", secret: "${SECRET}", events: [approval_requested] }\n`;
    const file = await tempFile("sighup.yaml", endpoint("hup-a"));
    const proc = new ActionqProcess(["serve"], {
      ACTIONQ_URL: databaseUrl(),
      ACTIONQ_SCHEMA: schema,
      ACTIONQ_LISTEN: `127.0.0.1:${port}`,
      ACTIONQ_WEBHOOKS_FILE: file,
      ACTIONQ_POLL_INTERVAL_SECONDS: "1",
    });
    const client = new GrpcClient(`127.0.0.1:${port}`);
    const propose = async (target: string) =>
      (await client.unary<{ action: { id: string } }>("EnqueueAction", { actionType: "redeploy_service", targetRef: target, createdBy: "human:hup" })).action
        .id;
    try {
      await proc.waitForLog("actionq is serving", 30_000);
      await writeFile(file, endpoint("hup-b").replace("events: [approval_requested]", "events: [approval_wanted]"));
      proc.child.kill("SIGHUP");
      const refused = await proc.waitForLog("webhooks reload refused; the endpoints in force stay", 10_000);
      expect(String(refused.err)).toMatch(/endpoints\[0\]\.events\[0\]/);
      const first = await propose("first");
      await waitFor("/hup-a", "the endpoint in force", (records) => records.some((r) => String(r.body.data?.event.actionId) === first));

      await writeFile(file, endpoint("hup-b"));
      proc.child.kill("SIGHUP");
      await proc.waitForLog("webhooks reloaded", 10_000);
      const second = await propose("second");
      await waitFor("/hup-b", "the new endpoint", (records) => records.some((r) => String(r.body.data?.event.actionId) === second));
      expect(receiver.delivered("/hup-b").map((r) => String(r.body.data?.event.actionId))).toEqual([second]);
      expect(receiver.delivered("/hup-a").map((r) => String(r.body.data?.event.actionId))).toEqual([first]);
    } finally {
      client.close();
      await proc.stop();
      await dropSchema(databaseUrl(), schema);
    }
  });
});
