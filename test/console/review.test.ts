// The approval inbox and the action page, in a real browser against a real
// server with authentication on: approvers find what waits for them and
// bring it to quorum, the server's refusals are shown in its words,
// DANGEROUS reviews need a typed confirmation, viewers cannot approve even
// by forging a call, and producer-written text never runs.
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EnqueueResponse, type Json, type WireAction, type WireClaim, STATUS, toStruct } from "../support/wire.js";
import { type ConsoleKit, type ConsolePrincipals, axeViolations, noChromium, screenshot, startConsole } from "./harness.js";

type Who = keyof ConsolePrincipals;

const IMG = `<img src=x onerror="window.__pwned=1">`;
const SCRIPT = `<script>window.__pwned=2</script>`;

/** The few page globals the tests read inside page.evaluate (the test build has no DOM types). */
interface PageGlobals {
  document: { activeElement: { tagName: string; textContent: string | null } | null };
  sessionStorage: { getItem(key: string): string | null };
  __pwned?: number;
}

describe.skipIf(noChromium)("console: approval inbox and action page", () => {
  let kit: ConsoleKit;
  let serial = 0;

  beforeAll(async () => {
    // The sweeper would reject an expired action within seconds; slowed, the
    // expired-approval test sees the server's own refusal instead.
    kit = await startConsole({ auth: true, env: { ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600" } });
  });
  afterAll(async () => {
    await kit?.close();
  });

  /** A type of its own for each action, so that tests do not see each other's. */
  const uniqueType = (base: string) => `${base}_${++serial}`;

  async function enqueue(who: Who, request: Record<string, unknown>): Promise<WireAction> {
    const { payload, rollbackPayload, ...rest } = request as { payload?: { [key: string]: Json }; rollbackPayload?: { [key: string]: Json } };
    const wire = { ...rest, ...(payload ? { payload: toStruct(payload) } : {}), ...(rollbackPayload ? { rollbackPayload: toStruct(rollbackPayload) } : {}) };
    const { action } = await kit.server.grpc.unary<EnqueueResponse>("EnqueueAction", wire, kit.as(who));
    return action;
  }

  async function approve(who: Who, id: string, note = ""): Promise<WireAction> {
    const { action } = await kit.server.grpc.unary<{ action: WireAction }>("ApproveAction", { id, note }, kit.as(who));
    return action;
  }

  async function getAction(id: string): Promise<WireAction> {
    const { action } = await kit.server.grpc.unary<{ action: WireAction & { approvers: string[] } }>("GetAction", { id }, kit.as("admin"));
    return action;
  }

  async function claim(actionType: string): Promise<WireClaim | null> {
    const { claim } = await kit.server.grpc.unary<{ claim: WireClaim | null }>("ClaimAction", { actionTypes: [actionType] }, kit.as("worker"));
    return claim ?? null;
  }

  async function inboxLoaded(page: Page): Promise<void> {
    await page.getByRole("heading", { level: 1, name: /Approval inbox/ }).waitFor();
    await page.locator(".inbox-count").waitFor();
  }

  async function openFromInbox(page: Page, actionType: string): Promise<void> {
    await page.goto(`${kit.url}/inbox`);
    await inboxLoaded(page);
    await page.getByRole("link", { name: actionType, exact: true }).click();
    await page.getByRole("heading", { level: 1, name: new RegExp(actionType) }).waitFor();
  }

  /** Approves on the action page already open, typing the confirmation a DANGEROUS action asks for. */
  async function approveOnPage(page: Page, action: WireAction, note: string): Promise<void> {
    await page.getByRole("button", { name: "Approve", exact: true }).click();
    await page.getByLabel("Note").fill(note);
    if (action.riskLevel === "RISK_LEVEL_DANGEROUS") {
      await page.getByLabel("Type the action type to confirm").fill(action.actionType);
      if (action.targetRef) await page.getByLabel("Type the target to confirm").fill(action.targetRef);
    }
    await page.getByRole("button", { name: "Confirm approval" }).click();
  }

  it("the inbox lists what an approver may approve, riskiest and oldest first, with what a row needs to be triaged", async () => {
    const drain = await enqueue("producer", {
      actionType: "drain_node",
      project: "payments",
      targetRef: "node/db-7.eu-west-1",
      node: "db-7",
      service: "postgres",
      riskLevel: "RISK_LEVEL_DANGEROUS",
      confidence: 0.72,
      payload: { reason: "disk 97% full on /var/lib/postgresql", grace_seconds: 300 },
      rollbackRef: "uncordon_node",
      rollbackPayload: { node: "db-7" },
    });
    const failover = await enqueue("producer", {
      actionType: "failover_database",
      project: "payments",
      targetRef: "cluster/pg-main",
      service: "postgres",
      riskLevel: "RISK_LEVEL_DANGEROUS",
      confidence: 0.9,
      payload: { to: "pg-main-replica-2" },
    });
    await approve("bob", failover.id, "replica lag is under 1s; go");
    const redeploy = await enqueue("producer", {
      actionType: "redeploy_service",
      project: "shop",
      targetRef: "svc/checkout@v2.14.1",
      service: "checkout",
      riskLevel: "RISK_LEVEL_GUARDED",
      confidence: 0.95,
      payload: { image: "checkout:v2.14.1", strategy: "rolling" },
    });
    const restart = await enqueue("alice", {
      actionType: "restart_service",
      project: "shop",
      targetRef: "svc/search",
      node: "web-3",
      service: "search",
      riskLevel: "RISK_LEVEL_GUARDED",
    });
    const diagnostics = await enqueue("producer", {
      actionType: "collect_diagnostics",
      project: "shop",
      targetRef: "svc/cart",
      service: "cart",
      approvalRequired: true,
    });
    // One window closing soon, as the reviewer must notice it.
    await kit.server.db.query("UPDATE actions SET approval_expires_at = now() + interval '20 minutes' WHERE id = $1", [redeploy.id]);

    const { page } = await kit.signedIn("carol", "/inbox");
    await inboxLoaded(page);
    const types = await page.locator(".inbox-table tbody th[scope=row] a").allTextContents();
    const mine = [drain, failover, redeploy, restart, diagnostics].map((a) => a.actionType);
    expect(types.filter((t) => mine.includes(t))).toEqual([
      drain.actionType,
      failover.actionType,
      redeploy.actionType,
      restart.actionType,
      diagnostics.actionType,
    ]);

    const row = page.getByRole("row", { name: new RegExp(failover.actionType) });
    await expect.poll(() => row.textContent()).toContain("1 of 2");
    expect(await row.textContent()).toContain("0.90");
    expect(await row.textContent()).toContain("agent:triage");
    expect(await page.getByRole("row", { name: new RegExp(redeploy.actionType) }).textContent()).toMatch(/in (19|20)m \(soon\)/);
    expect(await page.getByRole("row", { name: new RegExp(diagnostics.actionType) }).textContent()).toContain("—");
    expect(await page.locator(".inbox-count").textContent()).toBe(`${types.length} waiting for you`);

    expect(await axeViolations(page)).toEqual([]);
    await screenshot(page, "console-inbox");

    // bob approved the failover: it is no longer his to approve.
    const bob = await kit.signedIn("bob", "/inbox");
    await inboxLoaded(bob.page);
    expect(await bob.page.getByRole("link", { name: failover.actionType, exact: true }).count()).toBe(0);
    expect(await bob.page.getByRole("link", { name: drain.actionType, exact: true }).count()).toBe(1);
    // alice proposed the restart: not hers to approve.
    const alice = await kit.signedIn("alice", "/inbox");
    await inboxLoaded(alice.page);
    expect(await alice.page.getByRole("link", { name: restart.actionType, exact: true }).count()).toBe(0);
    expect(await alice.page.getByRole("link", { name: drain.actionType, exact: true }).count()).toBe(1);

    // The open inbox follows the event log: a new proposal appears without a reload.
    const fresh = await enqueue("producer", { actionType: uniqueType("flush_queue"), targetRef: "queue/emails", riskLevel: "RISK_LEVEL_GUARDED" });
    await page.getByRole("link", { name: fresh.actionType, exact: true }).waitFor({ timeout: 15_000 });
    expect(await page.locator(".inbox-count").textContent()).toBe(`${types.length + 1} waiting for you`);
  });
  it("an action's page tells the whole story, passes axe, and offers an operator the rollback", async () => {
    const action = await enqueue("producer", {
      actionType: "restart_database",
      project: "payments",
      targetRef: "cluster/pg-ledger",
      node: "db-3",
      service: "postgres",
      riskLevel: "RISK_LEVEL_DANGEROUS",
      confidence: 0.84,
      correlationId: "incident-4512",
      sourceRefs: ["alert:pg-ledger-conn-saturation", "runbook:postgres#restart"],
      payload: { mode: "fast", reason: "connections saturated at 100%; pgbouncer queue 4k", max_wait_seconds: 120 },
      rollbackRef: "promote_replica",
      rollbackPayload: { cluster: "pg-ledger", replica: "db-4" },
    });
    await approve("bob", action.id, "checked the replica lag first: 0.4s");
    await approve("carol", action.id, "ok, inside the maintenance window");
    const claimed = await claim(action.actionType);
    expect(claimed?.action.id).toBe(action.id);
    const token = claimed!.claimToken;
    for (const step of [
      { step: "started", message: "stopping connections" },
      { step: "applied", message: "postgres restarted in 41s" },
    ]) {
      await kit.server.grpc.unary(
        "EmitEvent",
        { eventType: "action_progress", actionId: action.id, claimToken: token, payload: toStruct(step) },
        kit.as("worker"),
      );
    }
    await kit.server.grpc.unary("CompleteAction", { id: action.id, claimToken: token, resultRef: "s3://runs/restart-db-3.log" }, kit.as("worker"));

    const { page } = await kit.signedIn("operator", `/actions/${action.id}`);
    await page.getByRole("heading", { level: 1, name: new RegExp(action.actionType) }).waitFor();
    const timeline = page.locator("ol.action-timeline");
    await expect.poll(() => timeline.locator("li").count()).toBe(7);
    const text = await timeline.textContent();
    expect(text).toContain("checked the replica lag first: 0.4s");
    expect(text).toContain("postgres restarted in 41s");
    expect(text).toContain("s3://runs/restart-db-3.log");
    // The policy's decision and its reason, the approvals with notes and the quorum.
    const review = page.getByRole("region", { name: "Decision" });
    expect(await review.textContent()).toContain("needs a human approval");
    expect(await review.textContent()).toContain("2 of 2");
    expect(await review.textContent()).toContain("ok, inside the maintenance window");
    expect(await page.getByRole("region", { name: "Rollback plan" }).textContent()).toContain('"replica": "db-4"');
    expect(await page.getByRole("region", { name: "Claims and attempts" }).textContent()).toContain("completed");
    // An operator may roll back; nobody may approve a finished action.
    expect(await page.getByRole("button", { name: "Roll back" }).count()).toBe(1);
    expect(await page.getByRole("button", { name: "Approve", exact: true }).count()).toBe(0);
    expect(await axeViolations(page)).toEqual([]);
    await screenshot(page, "console-action");

    // Rolling back opens the new action, a child marked as the rollback.
    await page.getByRole("button", { name: "Roll back" }).click();
    await page.getByLabel("Reason").fill("error rate doubled after the restart");
    await page.getByRole("button", { name: "Propose the rollback" }).click();
    await page.getByRole("heading", { level: 1, name: /promote_replica/ }).waitFor();
    expect(await page.getByRole("region", { name: "Lineage" }).textContent()).toContain(`#${action.id}`);
  });
  it("two approvers in two browsers bring a DANGEROUS action to quorum through the inbox, and a worker can then claim it", async () => {
    const action = await enqueue("producer", {
      actionType: uniqueType("purge_cache"),
      project: "edge",
      targetRef: "cdn/eu-all",
      riskLevel: "RISK_LEVEL_DANGEROUS",
      payload: { paths: ["/*"] },
    });
    const bob = await kit.signedIn("bob", "/inbox");
    const carol = await kit.signedIn("carol", "/inbox");

    await openFromInbox(bob.page, action.actionType);
    await approveOnPage(bob.page, action, "stale assets after the deploy");
    await bob.page.getByRole("status").filter({ hasText: "1 of 2 approvals" }).waitFor();
    expect((await getAction(action.id)).status).toBe(STATUS.pending);
    expect(await claim(action.actionType)).toBeNull();

    await openFromInbox(carol.page, action.actionType);
    // carol sees bob's approval and note before she decides.
    expect(await carol.page.getByRole("region", { name: "Review" }).textContent()).toContain("stale assets after the deploy");
    await approveOnPage(carol.page, action, "agreed");
    await carol.page.getByRole("status").filter({ hasText: "The quorum is met" }).waitFor();
    expect((await getAction(action.id)).status).toBe(STATUS.approved);
    // bob's open page follows the event log: it shows the approval without a reload.
    await bob.page.locator(".action-eyebrow .badge", { hasText: "approved" }).waitFor({ timeout: 15_000 });
    // carol's inbox no longer lists it.
    await carol.page.goto(`${kit.url}/inbox`);
    await inboxLoaded(carol.page);
    expect(await carol.page.getByRole("link", { name: action.actionType, exact: true }).count()).toBe(0);

    const claimed = await claim(action.actionType);
    expect(claimed?.action.id).toBe(action.id);
    expect(claimed?.action.status).toBe(STATUS.claimed);
  });

  it("the producer's own approval is refused in the server's words, and it is not in the producer's inbox", async () => {
    const action = await enqueue("alice", { actionType: uniqueType("rotate_credentials"), targetRef: "secret/payments-db", riskLevel: "RISK_LEVEL_GUARDED" });
    const { page } = await kit.signedIn("alice", "/inbox");
    await inboxLoaded(page);
    expect(await page.getByRole("link", { name: action.actionType, exact: true }).count()).toBe(0);

    await page.goto(`${kit.url}/actions/${action.id}`);
    await page.getByText("You proposed this action").waitFor();
    await approveOnPage(page, action, "looks right to me");
    const alert = page.getByRole("alert").filter({ hasText: "The server refused" });
    await alert.waitFor();
    expect(await alert.textContent()).toContain(`human:alice proposed action ${action.id} and cannot approve it; another approver must`);
    expect(await alert.textContent()).toContain("SELF_APPROVAL");
    const after = (await getAction(action.id)) as WireAction & { approvers: string[] };
    expect(after.status).toBe(STATUS.pending);
    expect(after.approvers).toEqual([]);
  });

  it("a rejection's reason is kept and shown on the timeline, and the action becomes rejected", async () => {
    const action = await enqueue("producer", { actionType: uniqueType("scale_down"), targetRef: "svc/api", service: "api", riskLevel: "RISK_LEVEL_GUARDED" });
    const { page } = await kit.signedIn("bob", `/actions/${action.id}`);
    await page.getByRole("heading", { level: 1, name: new RegExp(action.actionType) }).waitFor();
    await page.getByRole("button", { name: "Reject", exact: true }).click();
    // The server needs a reason: the form says so before sending.
    await page.getByRole("button", { name: "Confirm rejection" }).click();
    await page.getByRole("alert").filter({ hasText: "Reason is required" }).waitFor();
    await page.getByLabel("Reason").fill("traffic peak expected at 18:00; not today");
    await page.getByRole("button", { name: "Confirm rejection" }).click();
    await page.getByRole("status").filter({ hasText: "You rejected" }).waitFor();
    const rejected = page.locator("ol.action-timeline li", { hasText: "Rejected" });
    await rejected.waitFor();
    expect(await rejected.textContent()).toContain("human:bob");
    expect(await rejected.textContent()).toContain("traffic peak expected at 18:00; not today");
    await page.locator(".action-eyebrow .badge", { hasText: "rejected" }).waitFor();
    const after = await getAction(action.id);
    expect(after.status).toBe(STATUS.rejected);
    expect(after.failureReason).toBe("traffic peak expected at 18:00; not today");
  });

  it("a viewer sees no inbox and no approve button, and a forged approve call from the browser is refused", async () => {
    const action = await enqueue("producer", { actionType: uniqueType("reboot_host"), targetRef: "host/web-9", riskLevel: "RISK_LEVEL_GUARDED" });
    const { page } = await kit.signedIn("viewer", "/inbox");
    await page.getByRole("heading", { level: 1, name: "Approval inbox" }).waitFor();
    await page.getByText("does not have the approver role").waitFor();
    expect(await page.getByRole("table").count()).toBe(0);

    await page.goto(`${kit.url}/actions/${action.id}`);
    await page.getByRole("heading", { level: 1, name: new RegExp(action.actionType) }).waitFor();
    await page.getByRole("region", { name: "Timeline" }).waitFor();
    expect(await page.getByRole("button", { name: /approve|reject/i }).count()).toBe(0);

    const forged = await page.evaluate(async (id) => {
      const response = await fetch("/actionq.v1.ActionQueueService/ApproveAction", {
        method: "POST",
        headers: {
          "content-type": "application/json",
          authorization: `Bearer ${(globalThis as unknown as PageGlobals).sessionStorage.getItem("actionq.token")}`,
        },
        body: JSON.stringify({ id, note: "forged" }),
      });
      return { status: response.status, body: (await response.json()) as { code?: string; message?: string } };
    }, action.id);
    expect(forged.status).toBe(403);
    expect(forged.body.code).toBe("permission_denied");
    const after = (await getAction(action.id)) as WireAction & { approvers: string[] };
    expect(after.status).toBe(STATUS.pending);
    expect(after.approvers).toEqual([]);
  });

  it("markup and script in producer-written text render as text and run nothing", async () => {
    const hostile = `${IMG} ${SCRIPT}`;
    const action = await enqueue("producer", {
      actionType: uniqueType("hostile_action"),
      targetRef: hostile,
      node: IMG,
      service: SCRIPT,
      correlationId: hostile,
      sourceRefs: [IMG],
      riskLevel: "RISK_LEVEL_DANGEROUS",
      payload: { command: IMG, comment: SCRIPT },
      rollbackRef: "undo_hostile",
      rollbackPayload: { command: SCRIPT },
    });
    await approve("bob", action.id, hostile);
    const rejectedOne = await enqueue("producer", { actionType: uniqueType("hostile_reject"), targetRef: IMG, riskLevel: "RISK_LEVEL_GUARDED" });
    await kit.server.grpc.unary("RejectAction", { id: rejectedOne.id, reason: hostile }, kit.as("bob"));

    const { page } = await kit.signedIn("carol", "/inbox");
    const dialogs: string[] = [];
    const consoleErrors: string[] = [];
    page.on("dialog", (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });
    page.on("console", (message) => {
      if (message.type() === "error") consoleErrors.push(message.text());
    });
    page.on("pageerror", (error) => consoleErrors.push(error.message));

    await page.reload();
    await inboxLoaded(page);
    const row = page.getByRole("row", { name: new RegExp(action.actionType) });
    expect(await row.textContent()).toContain("<img src=x onerror=");
    await page.getByRole("link", { name: action.actionType, exact: true }).click();
    await page.getByRole("heading", { level: 1, name: new RegExp(action.actionType) }).waitFor();
    // Visible as text: in the title, the payload, the rollback payload and bob's approval note.
    await expect.poll(() => page.getByText(IMG, { exact: false }).count()).toBeGreaterThan(3);
    expect(await page.getByRole("heading", { level: 1 }).textContent()).toContain(hostile);
    expect(await page.getByRole("region", { name: "Review" }).textContent()).toContain(hostile);
    expect(await page.getByRole("region", { name: "Payload" }).textContent()).toContain(SCRIPT.replaceAll('"', '\\"'));
    expect(await page.locator("main img, main script").count()).toBe(0);

    await page.goto(`${kit.url}/actions/${rejectedOne.id}`);
    await page.locator("ol.action-timeline li", { hasText: "Rejected" }).waitFor();
    expect(await page.locator("ol.action-timeline").textContent()).toContain(hostile);
    expect(await page.locator("main img, main script").count()).toBe(0);

    expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).__pwned)).toBeUndefined();
    expect(dialogs).toEqual([]);
    expect(consoleErrors).toEqual([]);
  });

  it("a DANGEROUS review needs the type and target typed before the final button enables, and no review button is focused for you", async () => {
    const action = await enqueue("producer", { actionType: uniqueType("delete_volume"), targetRef: "vol-0a12 (db-7 data)", riskLevel: "RISK_LEVEL_DANGEROUS" });
    const { page } = await kit.signedIn("bob", `/actions/${action.id}`);
    await page.getByRole("button", { name: "Approve", exact: true }).waitFor();
    const focusedButton = () =>
      page.evaluate(() => {
        const active = (globalThis as unknown as PageGlobals).document.activeElement;
        return active?.tagName === "BUTTON" ? active.textContent : null;
      });
    expect(await focusedButton()).toBeNull();

    for (const [open, final] of [
      ["Approve", "Confirm approval"],
      ["Reject", "Confirm rejection"],
    ] as const) {
      await page.getByRole("button", { name: open, exact: true }).click();
      // The form opens on its text box, not on a button.
      expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).document.activeElement?.tagName)).toBe("TEXTAREA");
      const button = page.getByRole("button", { name: final });
      expect(await button.isDisabled()).toBe(true);
      await page.getByLabel("Type the action type to confirm").fill(action.actionType);
      expect(await button.isDisabled()).toBe(true);
      await page.getByLabel("Type the target to confirm").fill("vol-0a12");
      expect(await button.isDisabled()).toBe(true);
      await page.getByLabel("Type the target to confirm").fill(action.targetRef);
      expect(await button.isDisabled()).toBe(false);
      if (open === "Approve") expect(await axeViolations(page)).toEqual([]);
      await page.getByRole("button", { name: "Back" }).click();
    }
    expect((await focusedButton()) ?? "").not.toMatch(/approve|reject/i);
    const after = (await getAction(action.id)) as WireAction & { approvers: string[] };
    expect(after.status).toBe(STATUS.pending);
    expect(after.approvers).toEqual([]);
  });

  it("the whole approval can be done with the keyboard alone", async () => {
    const action = await enqueue("producer", { actionType: uniqueType("restart_pod"), targetRef: "pod/checkout-7f9c", riskLevel: "RISK_LEVEL_DANGEROUS" });
    const { page } = await kit.signedIn("carol", "/inbox");
    await inboxLoaded(page);
    const focused = () => page.evaluate(() => (globalThis as unknown as PageGlobals).document.activeElement?.textContent?.trim() ?? "");
    /** Tabs until the focused element's text is `text`; at most `limit` presses. */
    async function tabTo(text: string, limit = 60): Promise<void> {
      for (let i = 0; i < limit; i++) {
        await page.keyboard.press("Tab");
        if ((await focused()) === text) return;
      }
      throw new Error(`Tab never reached ${text}`);
    }
    await tabTo(action.actionType);
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { level: 1, name: new RegExp(action.actionType) }).waitFor();
    await tabTo("Approve");
    await page.keyboard.press("Enter");
    await page.keyboard.type("checked with the on-call; fine");
    await page.keyboard.press("Tab");
    await page.keyboard.type(action.actionType);
    await page.keyboard.press("Tab");
    await page.keyboard.type(action.targetRef);
    await page.keyboard.press("Tab");
    expect(await focused()).toBe("Confirm approval");
    await page.keyboard.press("Enter");
    await page.getByRole("status").filter({ hasText: "1 of 2 approvals" }).waitFor();
    const after = (await getAction(action.id)) as WireAction & { approvers: string[] };
    expect(after.approvers).toEqual(["human:carol"]);
  });

  it("an id that is not a number, or names no action, says so", async () => {
    const { page } = await kit.signedIn("bob", "/actions/abc");
    await page.getByRole("heading", { level: 1, name: "No such action" }).waitFor();
    await page.goto(`${kit.url}/actions/999999`);
    await page.getByRole("heading", { level: 1, name: "No action #999999" }).waitFor();
    expect(await page.getByRole("alert").textContent()).toContain("The server has no action #999999");
  });
  it("an approval window that closed is marked in the inbox, and the server's refusal is shown in its words", async () => {
    const action = await enqueue("producer", {
      actionType: uniqueType("renew_certificate"),
      targetRef: "cert/api.example.com",
      riskLevel: "RISK_LEVEL_GUARDED",
    });
    await kit.server.db.query("UPDATE actions SET approval_expires_at = now() - interval '2 minutes' WHERE id = $1", [action.id]);
    const { page } = await kit.signedIn("bob", "/inbox");
    await inboxLoaded(page);
    expect(await page.getByRole("row", { name: new RegExp(action.actionType) }).textContent()).toContain("expired 2m ago");
    await page.getByRole("link", { name: action.actionType, exact: true }).click();
    await page.getByText("The approval window closed").waitFor();
    await approveOnPage(page, action, "late, sorry");
    const alert = page.getByRole("alert").filter({ hasText: "The server refused" });
    await alert.waitFor();
    expect(await alert.textContent()).toMatch(new RegExp(`the approval window of action ${action.id} closed at .*; it will be rejected`));
    expect(await alert.textContent()).toContain("APPROVAL_EXPIRED");
  });

  it("an operator cancels with a reason and sends a failed action back for another attempt", async () => {
    const pending = await enqueue("producer", { actionType: uniqueType("resize_disk"), targetRef: "vol/logs", riskLevel: "RISK_LEVEL_GUARDED" });
    const failing = await enqueue("producer", { actionType: uniqueType("warm_cache"), targetRef: "cache/search" });
    const claimed = await claim(failing.actionType);
    await kit.server.grpc.unary("FailAction", { id: failing.id, claimToken: claimed!.claimToken, reason: "redis refused the connection" }, kit.as("worker"));

    const { page } = await kit.signedIn("operator", `/actions/${pending.id}`);
    // An operator is not an approver: no review buttons.
    await page.getByRole("button", { name: "Cancel action" }).waitFor();
    expect(await page.getByRole("button", { name: /approve|reject/i }).count()).toBe(0);
    await page.getByRole("button", { name: "Cancel action" }).click();
    await page.getByLabel("Reason").fill("superseded by the log rotation fix");
    await page.getByRole("button", { name: "Confirm cancellation" }).click();
    await page.getByRole("status").filter({ hasText: "You cancelled" }).waitFor();
    await page.locator(".action-eyebrow .badge", { hasText: "cancelled" }).waitFor();
    expect((await getAction(pending.id)).failureReason).toBe("superseded by the log rotation fix");

    await page.goto(`${kit.url}/actions/${failing.id}`);
    expect(await page.getByRole("region", { name: "Outcome" }).textContent()).toContain("redis refused the connection");
    expect(await page.getByRole("region", { name: "Claims and attempts" }).textContent()).toContain("failed: redis refused the connection");
    await page.getByRole("button", { name: "Retry" }).click();
    await page.getByLabel("Reason").fill("redis is back");
    await page.getByRole("button", { name: "Confirm retry" }).click();
    await page.getByRole("status").filter({ hasText: "back in the queue" }).waitFor();
    expect((await getAction(failing.id)).status).toBe(STATUS.approved);
    await page.locator("ol.action-timeline li", { hasText: "Sent back for another attempt" }).waitFor();
  });
});
