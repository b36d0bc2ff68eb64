// The kill switch and the overview, in real browsers with authentication
// on: an operator's pause is pushed to every open console and
// stops a worker's claims until it is lifted from another console; a
// pause needs a reason; a viewer sees the pauses but no controls; the
// policy page shows the version in force.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { WireClaim } from "../support/wire.js";
import { type ClaimStreamMessage, GrpcStream, claimsOf } from "../support/streams.js";
import { type ConsoleKit, axeViolations, noChromium, screenshot, startConsole } from "./harness.js";
import { sleep } from "../support/wait.js";

interface Stats {
  claimable: string;
  pauses: { scope: { kind: string; value: string }; pausedBy: string; reason: string }[];
  policyVersion: string;
}

describe.skipIf(noChromium)("console: queue overview and kill switch", () => {
  let kit: ConsoleKit;

  beforeAll(async () => {
    kit = await startConsole({ auth: true });
  });
  afterAll(async () => {
    await kit?.close();
  });
  // A test that fails half-way must not leave the queue paused for the next.
  afterEach(async () => {
    for (const pause of (await stats()).pauses) {
      await kit.server.grpc.unary("ResumeClaims", { scope: pause.scope, actor: "" }, kit.as("operator"));
    }
  });

  const stats = () => kit.server.grpc.unary<Stats>("GetQueueStats", {}, kit.as("viewer"));
  const claimOnce = () => kit.server.grpc.unary<{ claim: WireClaim | null }>("ClaimAction", { worker: "" }, kit.as("worker"));

  it("a pause of all claims made in one browser is pushed to another and holds a worker's claims until resumed there", async () => {
    const { page: olga } = await kit.signedIn("operator", "/overview");
    const { page: root } = await kit.signedIn("admin", "/overview");
    const { page: vera } = await kit.signedIn("viewer", "/overview");
    await olga.getByRole("heading", { name: "Kill switch" }).waitFor();
    await root.getByText("Nothing is paused").waitFor();

    await olga.getByLabel("Reason (required)").fill("INC-4711: database failover in progress");
    const answered = olga.waitForResponse((response) => response.url().endsWith("/PauseClaims"));
    await olga.getByRole("button", { name: "Pause all claims" }).click();
    expect((await answered).status()).toBe(200);
    const committed = Date.now();
    // Another open console shows it, the banner and the pauses list with who
    // paused and why, from the live event stream: the console refetches
    // pauses only once a minute, so anything well under that came live. (It
    // is about 100 ms on an idle machine; the bound leaves room for a busy
    // one.)
    await root.getByText("All claims are paused").waitFor({ timeout: 15_000 });
    const shownAfterMs = Date.now() - committed;
    console.info(`pause shown on another console ${shownAfterMs} ms after PauseClaims answered`);
    expect(shownAfterMs).toBeLessThan(15_000);
    const pauses = root.getByRole("table", { name: "Pauses in force" });
    await pauses.getByRole("row", { name: /all claims/ }).waitFor({ timeout: 10_000 });
    expect(await pauses.textContent()).toContain("human:olga");
    expect(await pauses.textContent()).toContain("INC-4711: database failover in progress");
    await vera.getByText("All claims are paused").waitFor({ timeout: 10_000 });
    expect(await vera.locator(".pause-banner").textContent()).toContain("INC-4711");
    expect((await stats()).pauses.map((p) => [p.scope.kind, p.pausedBy])).toEqual([["PAUSE_KIND_ALL", "human:olga"]]);

    // An approved SAFE action waits: a claim gets nothing, and an open claim
    // stream receives nothing while the pause holds.
    const { action } = await kit.server.grpc.unary<{ action: { id: string; status: string } }>(
      "EnqueueAction",
      { actionType: "collect_diagnostics", targetRef: "node/db-1", createdBy: "" },
      kit.as("producer"),
    );
    expect(action.status).toBe("ACTION_STATUS_APPROVED");
    expect((await claimOnce()).claim).toBeNull();
    const worker = new GrpcStream<ClaimStreamMessage>(kit.server.grpc.stream("StreamClaims", { worker: "", maxInFlight: 1 }, kit.as("worker")));
    try {
      await sleep(700);
      expect(claimsOf(worker)).toEqual([]);
      await root.reload();
      await root.getByText("All claims are paused").waitFor();

      // Resumed from the second console (an admin), with a reason.
      await root.getByRole("button", { name: "Resume all claims…" }).click();
      await root.getByLabel("Why resume all claims? (optional)").fill("failover done");
      await root.getByRole("button", { name: "Resume all claims", exact: true }).click();
      await olga.getByText("Nothing is paused").waitFor({ timeout: 10_000 });
      expect(await olga.locator(".pause-banner").count()).toBe(0);
      const [claim] = await worker.atLeast(1, (m) => m.kind === "claim", "the claim after the resume");
      expect(claim?.kind === "claim" && claim.claim.action.id).toBe(action.id);
      const resumed = await kit.server.db.query<{ actor: string; reason: string }>(
        "SELECT actor, payload->>'reason' AS reason FROM events WHERE event_type = 'coordinator_resumed' ORDER BY id DESC LIMIT 1",
      );
      expect(resumed.rows[0]).toEqual({ actor: "human:root", reason: "failover done" });
    } finally {
      await worker.cancel();
    }
  });

  it("a pause without a reason is refused before it is sent; with one, an action type is paused and resumed", async () => {
    const { page } = await kit.signedIn("operator", "/overview");
    await page.getByRole("radio", { name: /One action type/ }).check();
    await page.getByLabel("Action type", { exact: true }).fill("redeploy_service");
    const before = await kit.server.db.query("SELECT count(*)::int AS n FROM events WHERE event_type = 'coordinator_paused'");
    await page.getByRole("button", { name: "Pause action type redeploy_service" }).click();
    const alert = page.getByRole("alert");
    await alert.waitFor();
    expect(await alert.textContent()).toContain("Give a reason");
    expect(await page.getByLabel("Reason (required)").getAttribute("aria-invalid")).toBe("true");
    // Blank is no reason either.
    await page.getByLabel("Reason (required)").fill("   ");
    await page.getByRole("button", { name: "Pause action type redeploy_service" }).click();
    await sleep(300);
    const after = await kit.server.db.query("SELECT count(*)::int AS n FROM events WHERE event_type = 'coordinator_paused'");
    expect(after.rows[0].n).toBe(before.rows[0].n);
    expect((await stats()).pauses).toEqual([]);

    await page.getByLabel("Reason (required)").fill("bad image in the registry");
    await page.getByRole("button", { name: "Pause action type redeploy_service" }).click();
    await page.getByRole("status").filter({ hasText: "Paused action type redeploy_service." }).waitFor();
    await page
      .getByRole("table", { name: "Pauses in force" })
      .getByRole("row", { name: /action type redeploy_service/ })
      .waitFor();
    expect((await stats()).pauses.map((p) => [p.scope.kind, p.scope.value, p.reason])).toEqual([
      ["PAUSE_KIND_ACTION_TYPE", "redeploy_service", "bad image in the registry"],
    ]);
    await screenshot(page, "console-overview-paused");

    await page.getByRole("button", { name: "Resume action type redeploy_service…" }).click();
    await page.getByRole("button", { name: "Resume action type redeploy_service", exact: true }).click();
    await page.getByText("Nothing is paused").waitFor({ timeout: 10_000 });
    expect((await stats()).pauses).toEqual([]);
  });

  it("the overview counts actions by type and status and links each count to that list", async () => {
    const enqueue = (actionType: string, riskLevel: string) =>
      kit.server.grpc.unary("EnqueueAction", { actionType, riskLevel, targetRef: "svc/api", createdBy: "" }, kit.as("producer"));
    await enqueue("redeploy_service", "RISK_LEVEL_GUARDED");
    await enqueue("redeploy_service", "RISK_LEVEL_GUARDED");
    await enqueue("drop_table", "RISK_LEVEL_DANGEROUS");
    const { page } = await kit.signedIn("viewer", "/overview");
    const counts = page.getByRole("table", { name: "Number of actions of each type in each status" });
    const row = counts.getByRole("row", { name: /redeploy_service/ });
    await row.waitFor();
    // Columns: type, pending, approved, claimed, completed, failed, rejected, cancelled, total.
    expect((await row.getByRole("cell").allTextContents()).map((t) => t.trim())).toEqual(["2", "0", "0", "0", "0", "0", "0", "2"]);
    await row.getByRole("link", { name: "2" }).first().click();
    await page.waitForURL(/\/actions\?status=pending&type=redeploy_service$/);
  });

  it("a viewer sees the pauses but no kill switch; the overview and policy pages pass axe; the policy page shows the version", async () => {
    await kit.server.grpc.unary(
      "PauseClaims",
      { scope: { kind: "PAUSE_KIND_PROJECT", value: "shop" }, actor: "", reason: "shop freeze for the sale" },
      kit.as("operator"),
    );
    try {
      const { page } = await kit.signedIn("viewer", "/overview");
      await page
        .getByRole("table", { name: "Pauses in force" })
        .getByRole("row", { name: /project shop/ })
        .waitFor();
      await page.getByRole("heading", { name: "Kill switch" }).waitFor();
      expect(await page.getByRole("button", { name: /^Pause / }).count()).toBe(0);
      expect(await page.getByRole("button", { name: /^Resume/ }).count()).toBe(0);
      expect(await page.getByRole("radio").count()).toBe(0);
      expect(await page.getByText("Pausing and resuming need the operator role").count()).toBe(1);
      expect(await axeViolations(page)).toEqual([]);

      const { page: olga } = await kit.signedIn("operator", "/overview");
      await olga.getByRole("button", { name: "Pause all claims" }).waitFor();
      await olga.getByRole("radio", { name: /One project/ }).check();
      expect(await axeViolations(olga)).toEqual([]);
      await screenshot(olga, "console-overview");

      const policy = await kit.server.grpc.unary<{ policyVersion: string }>("GetPolicy", {}, kit.as("viewer"));
      await page.getByRole("link", { name: "Policy" }).click();
      await page.getByText(policy.policyVersion).first().waitFor();
      await page.getByRole("heading", { name: "Approvals by risk level" }).waitFor();
      expect(await page.getByRole("button", { name: "Reload policy" }).count()).toBe(0);
      expect(await axeViolations(page)).toEqual([]);

      await olga.getByRole("link", { name: "Policy" }).click();
      await olga.getByRole("button", { name: "Reload policy" }).click();
      await olga
        .getByRole("status")
        .filter({ hasText: `${policy.policyVersion} stays in force` })
        .waitFor();
      expect(await axeViolations(olga)).toEqual([]);
      await screenshot(olga, "console-policy");
    } finally {
      await kit.server.grpc.unary("ResumeClaims", { scope: { kind: "PAUSE_KIND_PROJECT", value: "shop" }, actor: "" }, kit.as("operator"));
    }
  });
});
