// Approver groups in the console, in a real browser against a real server
// with authentication on: the inbox and the action page say which group an
// action still waits for, an approval from outside the group says so in
// its answer, and the approval of a member shows what it satisfied.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removePolicyDirs, writePolicy } from "../support/safety.js";
import { type EnqueueResponse, STATUS, type WireAction } from "../support/wire.js";
import { type ConsoleKit, noChromium, startConsole } from "./harness.js";

const POLICY = "name: groups\nquorum: { guarded: 1 }\napprovers:\n  guarded: [{ group: sre-leads, count: 1 }]\n";

describe.skipIf(noChromium)("console: approver groups", () => {
  let kit: ConsoleKit;

  beforeAll(async () => {
    kit = await startConsole({ auth: true, env: { ACTIONQ_POLICY: await writePolicy(POLICY, "policy.yaml") } });
  });
  afterAll(async () => {
    await kit?.close();
    await removePolicyDirs();
  });

  it("an approval from outside sre-leads leaves the action waiting and the pages say for whom; a member's approval completes it", async () => {
    const { action } = await kit.server.grpc.unary<EnqueueResponse>(
      "EnqueueAction",
      { actionType: "rotate_certs_groups", targetRef: "lb/edge", riskLevel: "RISK_LEVEL_GUARDED" },
      kit.as("producer"),
    );
    const bob = await kit.signedIn("bob", "/inbox");
    await bob.page.getByRole("heading", { level: 1, name: /Approval inbox/ }).waitFor();
    const row = bob.page.getByRole("row").filter({ hasText: "rotate_certs_groups" });
    await row.getByText("needs 1 approver from group sre-leads").waitFor();

    await row.getByRole("link", { name: "rotate_certs_groups", exact: true }).click();
    await bob.page.getByRole("heading", { level: 1, name: /rotate_certs_groups/ }).waitFor();
    await bob.page.getByText("Still open: needs 1 approver from group sre-leads").waitFor();
    await bob.page.getByRole("button", { name: "Approve", exact: true }).click();
    await bob.page.getByLabel("Note").fill("fine by me");
    await bob.page.getByRole("button", { name: "Confirm approval" }).click();
    await bob.page.getByRole("status").filter({ hasText: "it needs 1 approver from group sre-leads" }).waitFor();
    const { action: waiting } = await kit.server.grpc.unary<{ action: WireAction }>("GetAction", { id: action.id }, kit.as("admin"));
    expect(waiting.status).toBe(STATUS.pending);

    const carol = await kit.signedIn("carol", `/actions/${action.id}`);
    await carol.page.getByRole("heading", { level: 1, name: /rotate_certs_groups/ }).waitFor();
    await carol.page.getByRole("button", { name: "Approve", exact: true }).click();
    await carol.page.getByLabel("Note").fill("lead on call");
    await carol.page.getByRole("button", { name: "Confirm approval" }).click();
    await carol.page.getByRole("status").filter({ hasText: "The quorum is met" }).waitFor();
    await carol.page.reload();
    // The approvals so far: the requirement met, and by whom.
    const approvals = carol.page.locator(".decision-approvals");
    await approvals.getByText("satisfies group sre-leads (1 of 1)").waitFor();
    expect(await approvals.textContent()).toContain("1 from group sre-leads: met (human:carol)");
  });

  it("the policy page lists the approver groups each risk level requires", async () => {
    const { page } = await kit.signedIn("bob", "/policy");
    const row = page.getByRole("row").filter({ has: page.getByRole("rowheader", { name: /guarded/i }) });
    await row.getByText("1 from sre-leads").waitFor();
    expect(
      await page
        .getByRole("row")
        .filter({ has: page.getByRole("rowheader", { name: /dangerous/i }) })
        .textContent(),
    ).toContain("any");
  });
});
