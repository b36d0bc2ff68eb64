// The overview shows the webhook endpoints of the server's file: one that
// is failing says so, with its last error and what waits for it, and shows
// as delivering once it takes its notifications again.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Receiver, newSecret } from "../support/webhook-receiver.js";
import { type ConsoleKit, axeViolations, noChromium, startConsole } from "./harness.js";

describe.skipIf(noChromium)("console: webhooks on the overview", () => {
  const secret = newSecret();
  let kit: ConsoleKit;
  let receiver: Receiver;
  let dir: string;

  beforeAll(async () => {
    receiver = await Receiver.start(secret);
    receiver.answer("/pager", () => 500);
    dir = await mkdtemp(path.join(tmpdir(), "actionq-console-webhooks-"));
    const file = path.join(dir, "webhooks.yaml");
    await writeFile(
      file,
      `retry: { initial: 50ms, max: 200ms }\nendpoints:\n  - { name: pager, url: "${receiver.url("/pager")}", secret: "${secret}", events: [approval_requested] }\n`,
    );
    kit = await startConsole({ env: { ACTIONQ_WEBHOOKS_FILE: file } });
  });
  afterAll(async () => {
    await kit?.close();
    await receiver?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("a failing endpoint shows as failing with its last error, then as delivering", async () => {
    await kit.server.grpc.unary("EnqueueAction", { actionType: "redeploy_service", targetRef: "svc-a", createdBy: "agent:planner" });
    const { page } = await kit.signedIn("human:dora", "/overview");
    const table = page.getByRole("table", { name: "Webhook endpoints and what they have not been sent yet" });
    // Failures are not events: the page shows them as of its last load.
    for (let attempt = 0; ; attempt++) {
      await table.waitFor();
      if ((await table.textContent())?.includes("HTTP 500")) break;
      if (attempt > 50) throw new Error(`the failure never showed: ${await table.textContent()}`);
      await page.reload();
    }
    const row = table.getByRole("row", { name: /pager/ });
    expect(await row.textContent()).toMatch(/pager\s*1.*failing: \d+ attempts in a row, last HTTP 500/);
    expect(await axeViolations(page)).toEqual([]);

    receiver.answer("/pager", () => 204);
    for (let attempt = 0; ; attempt++) {
      await page.reload();
      await table.waitFor();
      if ((await row.textContent())?.includes("delivering")) break;
      if (attempt > 50) throw new Error(`the recovery never showed: ${await row.textContent()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(await row.textContent()).toMatch(/pager\s*0.*delivering/);
    expect(receiver.delivered("/pager")).toHaveLength(1);
  });
});
