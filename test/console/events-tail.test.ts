// The live tail of the event log in a real browser, with authentication
// on: a new event is pushed to the page soon after its commit; the tail goes on
// across a restart of the server it follows, with every event exactly
// once and in order while another server keeps writing; filters narrow
// it; pausing the display loses nothing.
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/log.js";
import { ActionqServer } from "../../src/server.js";
import { GrpcClient, testConfig } from "../support/harness.js";
import { type ConsoleKit, axeViolations, noChromium, restartServer, screenshot, startConsole } from "./harness.js";
import { sleep } from "../support/wait.js";

const tail = (page: Page) => page.getByRole("table", { name: "Events, newest first" });
/** The tail's own stream state (the header has the console's). */
const tailLive = (page: Page) =>
  page
    .locator(".ops-tail-bar")
    .getByRole("status")
    .filter({ hasText: /^Live$/ })
    .waitFor();

/** The event ids on screen, top (newest) to bottom. */
async function shownIds(page: Page): Promise<number[]> {
  const cells = await tail(page).locator("tbody tr td:first-child").allTextContents();
  return cells.filter((text) => /^\d+$/.test(text)).map(Number);
}

describe.skipIf(noChromium)("console: live events", () => {
  let kit: ConsoleKit;
  let page: Page;

  beforeAll(async () => {
    kit = await startConsole({ auth: true });
    ({ page } = await kit.signedIn("viewer", "/events"));
  });
  afterAll(async () => {
    await kit?.close();
  });

  type Enqueued = { action: { id: string } };
  const enqueue = (client: GrpcClient, actionType = "collect_diagnostics") =>
    client.unary<Enqueued>("EnqueueAction", { actionType, targetRef: "node/web-1", createdBy: "" }, kit.as("alice"));
  const maxEventId = async () => Number((await kit.server.db.query<{ id: string | null }>("SELECT max(id) AS id FROM events")).rows[0]!.id ?? 0);
  const idsAfter = async (after: number, upTo: number) =>
    (await kit.server.db.query<{ id: string }>("SELECT id FROM events WHERE id > $1 AND id <= $2 ORDER BY id DESC", [after, upTo])).rows.map((r) =>
      Number(r.id),
    );

  it("shows a new event soon after its commit, pushed by the live stream", async () => {
    await tailLive(page);
    const measured: number[] = [];
    for (let n = 0; n < 3; n++) {
      const { action } = await enqueue(kit.server.grpc);
      const committed = Date.now();
      await tail(page)
        .getByRole("link", { name: `#${action.id}` })
        .first()
        .waitFor({ timeout: 15_000 });
      measured.push(Date.now() - committed);
    }
    // About 100 ms on an idle machine, printed for the record. What the test
    // holds to is that the row came from the live stream: the page refetches
    // only every 30 s, so anything well under that was pushed. A loaded CI
    // machine is no place for a one-second bound.
    console.info(`live tail: commit to row ${measured.join("/")} ms`);
    expect(Math.max(...measured)).toBeLessThan(15_000);
    const row = tail(page).getByRole("row").filter({ hasText: "action_enqueued" }).first();
    expect(await row.textContent()).toContain("human:alice");
    // The payload as compact JSON, clipped in the cell, whole on hover.
    const payload = row.getByRole("cell").nth(5);
    expect((await payload.getAttribute("title")) ?? (await payload.textContent())).toContain('"risk_level":"safe"');
  });

  it("continues across a server restart with every event exactly once, in order, while another server writes", async () => {
    // A second server on the same schema writes the whole time, so events
    // also commit while the followed server is down.
    const writerConfig = testConfig(kit.server.schema, kit.env);
    const writer = await ActionqServer.start(writerConfig, createLogger(writerConfig.logLevel));
    const writerClient = new GrpcClient(`127.0.0.1:${writer.port}`);
    try {
      const startId = await maxEventId();
      await page.getByLabel("After event id", { exact: true }).check();
      await page.getByLabel("Start after event id").fill(String(startId));
      await page.getByRole("button", { name: "Follow" }).click();
      await page.getByText(`cursor after event ${startId}`).waitFor();

      let writing = true;
      let written = 0;
      const writes = (async () => {
        while (writing) {
          await enqueue(writerClient);
          written++;
          await sleep(30);
        }
      })();
      // Counted in actions, not time, so a slow machine writes as much.
      const writtenAtLeast = (n: number) => expect.poll(() => written, { timeout: 20_000 }).toBeGreaterThanOrEqual(n);
      await writtenAtLeast(10);
      let sawReconnecting = false;
      let writtenWhileDown = 0;
      await restartServer(kit, async () => {
        // While nothing listens on the port the page says so, keeps its
        // cursor, and the other server goes on committing events.
        await page.getByText(/^Reconnecting in \d+s$/).waitFor({ timeout: 5_000 });
        sawReconnecting = true;
        const before = written;
        await writtenAtLeast(before + 3);
        writtenWhileDown = written - before;
      });
      await writtenAtLeast(written + 10);
      writing = false;
      await writes;
      const endId = await maxEventId();
      const expected = await idsAfter(startId, endId);
      expect(expected.length).toBeGreaterThanOrEqual(2 * 23);
      expect(sawReconnecting).toBe(true);
      expect(writtenWhileDown).toBeGreaterThanOrEqual(3);

      await expect.poll(async () => (await shownIds(page))[0], { timeout: 15_000, interval: 100 }).toBe(endId);
      const shown = await shownIds(page);
      // Exactly the log's ids in that range: none missing, none twice, newest first.
      expect(new Set(shown).size).toBe(shown.length);
      expect(shown).toEqual(expected);
      await tailLive(page);
      console.info(`live tail across a restart: ${written} actions written, ${shown.length} events shown, ids ${startId + 1}..${endId}`);
      await screenshot(page, "console-events");
    } finally {
      writerClient.close();
      await writer.close();
    }
  });

  it("a filter by event type and by action narrows the tail; pausing the display holds events and loses none", async () => {
    await page.getByLabel("From now").check();
    await page.getByLabel("Event types").selectOption(["action_enqueued"]);
    await page.getByRole("button", { name: "Follow" }).click();
    await page.getByText("Waiting for events…").waitFor();

    await page
      .getByRole("status")
      .filter({ hasText: /^Live$/ })
      .first()
      .waitFor();
    const first = await enqueue(kit.server.grpc);
    const second = await enqueue(kit.server.grpc, "rerun_healthcheck");
    await tail(page)
      .getByRole("link", { name: `#${second.action.id}` })
      .waitFor();
    const types = await tail(page).locator("tbody tr td:nth-child(3)").allTextContents();
    expect(types).toEqual(["action_enqueued", "action_enqueued"]);
    expect(await tail(page).getByRole("link").allTextContents()).toEqual([`#${second.action.id}`, `#${first.action.id}`]);

    // Paused: new events are held, not shown; resumed: they all come.
    await page.getByRole("button", { name: "Pause display" }).click();
    const held = [await enqueue(kit.server.grpc), await enqueue(kit.server.grpc)];
    await page.getByRole("button", { name: "Resume display (2 new)" }).waitFor({ timeout: 10_000 });
    expect(await tail(page).getByRole("link").count()).toBe(2);
    await page.getByRole("button", { name: "Resume display (2 new)" }).click();
    expect(await tail(page).getByRole("link").allTextContents()).toEqual([...held.reverse(), second, first].map((e) => `#${e.action.id}`));

    // One action's events, from the start of the log.
    await page.getByLabel("Event types").selectOption([]);
    await page.getByLabel("Action id").fill(first.action.id);
    await page.getByLabel("After event id", { exact: true }).check();
    await page.getByLabel("Start after event id").fill("0");
    await page.getByRole("button", { name: "Follow" }).click();
    const own = (await kit.server.db.query<{ id: string }>("SELECT id FROM events WHERE action_id = $1 ORDER BY id DESC", [first.action.id])).rows.map((r) =>
      Number(r.id),
    );
    await expect.poll(() => shownIds(page)).toEqual(own);
    expect(new Set(await tail(page).locator("tbody tr td:nth-child(3)").allTextContents())).toEqual(new Set(["action_enqueued", "action_approved"]));

    // A cursor that is not a number is refused before anything is followed.
    await page.getByLabel("Start after event id").fill("soon");
    await page.getByRole("button", { name: "Follow" }).click();
    expect(await page.getByRole("alert").textContent()).toContain("The cursor is an event id");
    expect(await axeViolations(page)).toEqual([]);
  });
});
