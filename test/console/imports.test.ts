// An action brought over from the filesystem queue reads as one in the
// console: its timeline starts with the import, its fields name the id it
// had there, and an approver reviews it like any other.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { STATUS, type WireAction } from "../support/wire.js";
import { type ConsoleKit, axeViolations, noChromium, startConsole } from "./harness.js";

type ImportAnswer = { results: { ok?: { action: WireAction; outcome: string } }[] };

describe.skipIf(noChromium)("console: an imported action", () => {
  let kit: ConsoleKit;

  beforeAll(async () => {
    kit = await startConsole();
  });
  afterAll(async () => {
    await kit?.close();
  });

  it("shows the import on its timeline and the old id in its fields, and is approved like any other", async () => {
    const oldId = crypto.randomUUID();
    const { results } = await kit.server.grpc.unary<ImportAnswer>("ImportActions", {
      actor: "human:ops",
      actions: [
        {
          externalId: oldId,
          status: STATUS.approved,
          createTime: { seconds: "1620000000", nanos: 0 },
          createdBy: "supervisor",
          actionType: "redeploy_service",
          riskLevel: "RISK_LEVEL_GUARDED",
          service: "nginx",
          payload: { service: "nginx" },
          original: { action_id: oldId, status: "approved" },
          history: [`2021-05-03T00:00:00Z ${oldId} pending -> approved`],
          source: `approved/${oldId}.json`,
        },
      ],
    });
    const action = results[0]!.ok!.action;
    // Not trusted: it waits for an approver here.
    expect(action.status).toBe(STATUS.pending);

    const erin = await kit.signedIn("human:erin", `/actions/${action.id}`);
    const timeline = erin.page.locator("ol.action-timeline");
    await timeline.locator("li", { hasText: "Imported from another system" }).waitFor();
    const fields = erin.page.locator("dl.all-fields");
    expect(await fields.locator(".field-row", { hasText: "External id" }).locator("dd").textContent()).toBe(oldId);
    expect(await axeViolations(erin.page)).toEqual([]);

    await erin.page.getByRole("button", { name: "Approve", exact: true }).click();
    await erin.page.getByRole("button", { name: "Confirm approval" }).click();
    await erin.page.getByRole("status").filter({ hasText: "The quorum is met" }).waitFor();
    const { action: after } = await kit.server.grpc.unary<{ action: WireAction }>("GetAction", { id: action.id });
    expect(after).toMatchObject({ status: STATUS.approved, approvedBy: "human:erin" });
  });
});
