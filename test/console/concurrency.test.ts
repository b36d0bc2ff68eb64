// The console says why an approved action waits for its concurrency key,
// on the action's page and on the overview, with links to the actions
// holding the key; both pages pass axe.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { claimNext, enqueue } from "../support/wire.js";
import { type ConsoleKit, axeViolations, noChromium, startConsole } from "./harness.js";

describe.skipIf(noChromium)("console: concurrency keys", () => {
  let kit: ConsoleKit;
  beforeAll(async () => {
    kit = await startConsole();
  });
  afterAll(async () => {
    await kit?.close();
  });

  it("shows the key that holds an action back and the action holding it", async () => {
    const key = `node-${process.pid}`;
    const running = (await enqueue(kit.server, { actionType: "drain_node", concurrencyKey: key })).action;
    const waiting = (await enqueue(kit.server, { actionType: "drain_node", concurrencyKey: key })).action;
    expect((await claimNext(kit.server, { actionTypes: ["drain_node"] }))?.action.id).toBe(running.id);

    const { page } = await kit.signedIn("human:olga", `/actions/${waiting.id}`);
    const notice = page.getByRole("status").filter({ hasText: "Waits for its concurrency key" });
    await notice.waitFor();
    expect(await notice.textContent()).toContain(key);
    expect(await notice.getByRole("link", { name: `#${running.id}` }).getAttribute("href")).toBe(`/actions/${running.id}`);
    expect(await axeViolations(page)).toEqual([]);

    await page.goto(`${kit.url}/overview`);
    const table = page.getByRole("table", { name: "Concurrency keys with approved actions waiting for a free slot" });
    await table.waitFor();
    const row = table.getByRole("row").filter({ hasText: key });
    expect(await row.textContent()).toContain(`#${running.id}`);
    expect(await axeViolations(page)).toEqual([]);
  });
});
