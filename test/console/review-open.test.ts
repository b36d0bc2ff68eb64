// The inbox and the review without authentication (a loopback server): the
// console writes the name the person gave into `approver`, so the inbox
// leaves out what that name proposed or approved, and the server records
// the approval under it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EnqueueResponse, STATUS, type WireAction } from "../support/wire.js";
import { type ConsoleKit, noChromium, startConsole } from "./harness.js";

describe.skipIf(noChromium)("console without authentication: inbox and review by the given name", () => {
  let kit: ConsoleKit;

  beforeAll(async () => {
    kit = await startConsole();
  });
  afterAll(async () => {
    await kit?.close();
  });

  it("the inbox leaves out what the named person proposed, and an approval is recorded under the name given", async () => {
    const { action } = await kit.server.grpc.unary<EnqueueResponse>("EnqueueAction", {
      actionType: "resize_pool",
      targetRef: "pool/workers",
      createdBy: "human:dora",
      riskLevel: "RISK_LEVEL_GUARDED",
    });

    const dora = await kit.signedIn("human:dora", "/inbox");
    await dora.page.getByRole("heading", { level: 1, name: /Approval inbox/ }).waitFor();
    await dora.page.getByText("Nothing waits for your approval").waitFor();
    // Her own attempt is refused by the server, which compares the names.
    await dora.page.goto(`${kit.url}/actions/${action.id}`);
    await dora.page.getByText("You proposed this action").waitFor();
    await dora.page.getByRole("button", { name: "Approve", exact: true }).click();
    await dora.page.getByRole("button", { name: "Confirm approval" }).click();
    expect(await dora.page.getByRole("alert").filter({ hasText: "The server refused" }).textContent()).toContain("SELF_APPROVAL");

    const erin = await kit.signedIn("human:erin", "/inbox");
    await erin.page.getByRole("link", { name: "resize_pool", exact: true }).click();
    await erin.page.getByRole("button", { name: "Approve", exact: true }).click();
    await erin.page.getByLabel("Note").fill("pool is at 95%");
    await erin.page.getByRole("button", { name: "Confirm approval" }).click();
    await erin.page.getByRole("status").filter({ hasText: "The quorum is met" }).waitFor();

    const { action: after } = await kit.server.grpc.unary<{ action: WireAction & { approvers: string[] } }>("GetAction", { id: action.id });
    expect(after.status).toBe(STATUS.approved);
    expect(after.approvers).toEqual(["human:erin"]);
    expect(after.approvedBy).toBe("human:erin");
  });
});
