// Schedules in real browsers with authentication on: the list shows a
// schedule created over the API with its clock in words; its page shows
// ticks linking to the actions they enqueued, and an action made by a tick
// links back; an operator pauses (with a reason) and resumes, an admin
// backfills and an operator deletes from the page, each checked over the
// API; a viewer sees no controls; every page passes axe.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ConsoleKit, axeViolations, noChromium, screenshot, startConsole } from "./harness.js";

const HOUR_MS = 3_600_000;

interface WireTick {
  tickTime: { seconds: string };
  outcome: string;
  actionId: string;
  backfill: boolean;
}
interface WireSchedule {
  id: string;
  paused: boolean;
  pauseReason: string;
  owner: string;
}

/** The page's globals, in code evaluated in the page (the tests have no DOM types). */
interface InPage {
  document: { activeElement: { textContent: string | null } | null };
}

const seconds = (ms: number) => ({ seconds: String(Math.floor(ms / 1000)), nanos: 0 });

describe.skipIf(noChromium)("console: schedules", () => {
  let kit: ConsoleKit;

  beforeAll(async () => {
    // Every schedule here enqueues in agent:triage's name, and the
    // every-second ones quickly pass the default 20 an hour, after which
    // their ticks fail instead of showing what the tests look for.
    kit = await startConsole({ auth: true, env: { ACTIONQ_RATE_LIMIT_PER_HOUR: "100000" } });
  });
  afterAll(async () => {
    await kit?.close();
  });

  /** An hourly schedule owned by the producer, made over the API. */
  const create = (id: string, extra: Record<string, unknown> = {}) =>
    kit.server.grpc.unary<{ schedule: WireSchedule }>(
      "CreateSchedule",
      { schedule: { id, template: { actionType: "collect_diagnostics", targetRef: `node/${id}` }, cron: "0 * * * *", ...extra }, owner: "" },
      kit.as("producer"),
    );
  const get = (id: string) => kit.server.grpc.unary<{ schedule: WireSchedule; recentTicks: WireTick[] }>("GetSchedule", { id }, kit.as("viewer"));
  /** Ends half an hour before the last full hour, so that an hourly clock
   * has exactly `hours` ticks in it whatever the minute the test runs. */
  const pastHours = (hours: number) => {
    const end = Math.floor(Date.now() / HOUR_MS) * HOUR_MS - HOUR_MS / 2;
    return { start: end - hours * HOUR_MS, end };
  };
  const backfill = (id: string, hours: number) => {
    const { start, end } = pastHours(hours);
    return kit.server.grpc.unary<{ ticks: WireTick[] }>(
      "BackfillSchedule",
      { id, startTime: seconds(start), endTime: seconds(end), actor: "" },
      kit.as("producer"),
    );
  };

  it("the list shows a schedule created over the API: clock in words and time zone, next tick, state and owner", async () => {
    await create("nightly-berlin", { cron: "0 3 * * *", timeZone: "Europe/Berlin", description: "diagnostics before the morning" });
    const { page } = await kit.signedIn("viewer", "/overview");
    await page.getByRole("navigation", { name: "Console" }).getByRole("link", { name: "Schedules" }).click();
    await page.waitForURL(/\/schedules$/);
    const row = page.getByRole("table", { name: "Schedules, by id" }).getByRole("row", { name: /nightly-berlin/ });
    await row.waitFor();
    const text = (await row.textContent()) ?? "";
    expect(text).toContain("every day at 03:00");
    expect(text).toContain("(Europe/Berlin)");
    expect(text).toContain("agent:triage");
    expect(text).toContain("active");
    expect(text).toContain("no tick yet");
    expect(text).toMatch(/in \d+/);
    expect(await page.title()).toBe("Schedules · actionq");
    expect(await axeViolations(page)).toEqual([]);
    await screenshot(page, "console-schedules");

    await row.getByRole("link", { name: "nightly-berlin" }).click();
    await page.waitForURL(/\/schedules\/nightly-berlin$/);
    await page.getByRole("heading", { level: 1, name: "nightly-berlin" }).waitFor();
    expect(await page.title()).toBe("Schedule nightly-berlin · actionq");
    // A viewer reads, and is offered nothing to change.
    expect(await page.getByRole("button", { name: /Pause|Resume|Delete|Backfill/ }).count()).toBe(0);
    await page.getByText("need its owner or the operator role").waitFor();
    expect(await axeViolations(page)).toEqual([]);
  });

  it("a schedule's page shows its recent ticks linking to their actions, and each action links back to the schedule", async () => {
    await create("hourly-ticks", { overlapPolicy: "SCHEDULE_POLICY_OVERLAP_ALLOW_ALL" });
    const { ticks } = await backfill("hourly-ticks", 2);
    expect(ticks.map((tick) => tick.outcome)).toEqual(["SCHEDULE_TICK_OUTCOME_ENQUEUED", "SCHEDULE_TICK_OUTCOME_ENQUEUED"]);
    const { page } = await kit.signedIn("viewer", "/schedules/hourly-ticks");
    const table = page.getByRole("table", { name: /Recent ticks/ });
    for (const tick of ticks) await table.getByRole("link", { name: `#${tick.actionId}` }).waitFor();
    expect(await table.getByRole("row").count()).toBe(3);
    expect(await table.textContent()).toContain("backfill");
    expect(await page.getByRole("heading", { name: "Next ticks" }).count()).toBe(1);
    expect(await page.getByText("allow all").count()).toBeGreaterThan(0);
    await page.getByRole("heading", { name: "Events" }).waitFor();
    await page.getByText("Schedule created").first().waitFor();
    expect(await axeViolations(page)).toEqual([]);
    await screenshot(page, "console-schedule");

    const newest = ticks[ticks.length - 1]!;
    await table.getByRole("link", { name: `#${newest.actionId}` }).click();
    await page.waitForURL(new RegExp(`/actions/${newest.actionId}$`));
    const note = page.locator(".scheduled-by");
    await note.waitFor();
    expect(await note.textContent()).toBe(
      `Scheduled by hourly-ticks at tick ${new Date(Number(newest.tickTime.seconds) * 1000).toISOString().replace(/\.000Z$/, "Z")}`,
    );
    expect(await axeViolations(page)).toEqual([]);
    await screenshot(page, "console-action-scheduled");
    await note.getByRole("link", { name: "hourly-ticks" }).click();
    await page.waitForURL(/\/schedules\/hourly-ticks$/);
    await page.getByRole("heading", { level: 1, name: "hourly-ticks" }).waitFor();
  });

  it("an operator pauses with a required reason and resumes from the page; the server's schedule follows", async () => {
    await create("pause-from-ui");
    const { page } = await kit.signedIn("operator", "/schedules/pause-from-ui");
    await page.getByRole("button", { name: "Pause schedule" }).click();
    await page.getByRole("alert").filter({ hasText: "Give a reason" }).waitFor();
    expect(await page.getByLabel("Why pause? (required)").getAttribute("aria-invalid")).toBe("true");
    expect((await get("pause-from-ui")).schedule.paused).toBe(false);

    await page.getByLabel("Why pause? (required)").fill("INC-77: node rebuilt");
    await page.getByRole("button", { name: "Pause schedule" }).click();
    // Who paused, from the schedule's event; why, from the schedule.
    await page
      .getByRole("status")
      .filter({ hasText: /^Paused by human:olga .+ ago: INC-77: node rebuilt\./ })
      .waitFor();
    expect((await get("pause-from-ui")).schedule).toMatchObject({ paused: true, pauseReason: "INC-77: node rebuilt" });
    // The focus followed the swap to the resume form.
    expect(await page.evaluate(() => (globalThis as unknown as InPage).document.activeElement?.textContent)).toBe("Resume");
    expect(await axeViolations(page)).toEqual([]);
    await screenshot(page, "console-schedule-paused");

    await page.getByLabel("Why resume? (optional)").fill("node is back");
    await page.getByRole("button", { name: "Resume schedule" }).click();
    await page.getByRole("button", { name: "Pause schedule" }).waitFor();
    expect((await get("pause-from-ui")).schedule.paused).toBe(false);
    // The list says so too.
    await page.goto(`${kit.url}/schedules`);
    const row = page.getByRole("row", { name: /pause-from-ui/ });
    await row.waitFor();
    expect(await row.textContent()).toContain("active");
  });

  it("an admin backfills an interval from the page: each past tick gets one action, shown on the page", async () => {
    await create("backfill-from-ui");
    const { page } = await kit.signedIn("admin", "/schedules/backfill-from-ui");
    await page.getByText("No tick acted on yet.").waitFor();
    await page.getByLabel("From (included)").fill("yesterday");
    await page.getByRole("button", { name: "Backfill interval" }).click();
    await page.getByRole("alert").filter({ hasText: "RFC 3339" }).waitFor();

    const window = pastHours(3);
    const rfc3339 = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
    await page.getByLabel("From (included)").fill(rfc3339(window.start));
    await page.getByLabel("To (excluded; empty: now)").fill(rfc3339(window.end));
    await page.getByRole("button", { name: "Backfill interval" }).click();
    await page.getByRole("status").filter({ hasText: "Backfilled 3 ticks: 3 with an action, 0 without." }).waitFor();

    const { recentTicks } = await get("backfill-from-ui");
    expect(recentTicks).toHaveLength(3);
    expect(recentTicks.every((tick) => tick.backfill && tick.outcome === "SCHEDULE_TICK_OUTCOME_ENQUEUED" && tick.actionId !== "0")).toBe(true);
    const table = page.getByRole("table", { name: /Recent ticks/ });
    for (const tick of recentTicks) await table.getByRole("link", { name: `#${tick.actionId}` }).waitFor();
    const actions = await kit.server.grpc.unary<{ actions: { id: string; scheduleId: string; createdBy: string }[] }>(
      "ListActions",
      { createdBy: "agent:triage", actionTypes: ["collect_diagnostics"], pageSize: 100 },
      kit.as("viewer"),
    );
    const made = actions.actions.filter((action) => action.scheduleId === "backfill-from-ui");
    expect(made.map((action) => action.id).sort()).toEqual(recentTicks.map((tick) => tick.actionId).sort());
    expect(await axeViolations(page)).toEqual([]);
  });

  it("an operator deletes a schedule after a second step; it is gone from the server and the list", async () => {
    await create("delete-from-ui");
    const { page } = await kit.signedIn("operator", "/schedules/delete-from-ui");
    await page.getByRole("button", { name: "Delete schedule…" }).click();
    await page.getByRole("button", { name: "Keep it" }).click();
    expect((await get("delete-from-ui")).schedule.id).toBe("delete-from-ui");

    await page.getByRole("button", { name: "Delete schedule…" }).click();
    expect(await axeViolations(page)).toEqual([]);
    await page.getByLabel("Why delete? (optional)").fill("replaced by nightly-berlin");
    await page.getByRole("button", { name: "Delete delete-from-ui" }).click();
    await page.waitForURL(/\/schedules$/);
    await page.getByRole("heading", { level: 1, name: "Schedules" }).waitFor();
    await page.getByRole("table", { name: "Schedules, by id" }).or(page.getByText("No schedules yet.")).waitFor();
    expect(await page.getByRole("row", { name: /delete-from-ui/ }).count()).toBe(0);
    const error = await kit.server.grpc.unary("GetSchedule", { id: "delete-from-ui" }, kit.as("viewer")).then(
      () => undefined,
      (e: { code: number }) => e,
    );
    expect(error?.code).toBe(5); // NOT_FOUND

    // The id is free again; the new schedule's events start at its own creation.
    await create("delete-from-ui");
    await page.goto(`${kit.url}/schedules/delete-from-ui`);
    const events = page.getByRole("region", { name: "Events" });
    await events.getByText("Schedule created").waitFor();
    expect(await events.getByText("Schedule created").count()).toBe(1);
    expect(await events.getByText("Schedule deleted").count()).toBe(0);
  });

  it("a producer creates a schedule from the list page; a bad id is caught before sending, a bad cron is the server's refusal", async () => {
    const { page } = await kit.signedIn("producer", "/schedules");
    await page.getByRole("button", { name: "New schedule…" }).click();
    const form = page.getByRole("form", { name: "New schedule" });
    expect(await form.getByLabel("Id").evaluate((input) => input === (globalThis as unknown as InPage).document.activeElement)).toBe(true);
    await form.getByLabel("Id").fill("bad id with spaces");
    await form.getByLabel("Action type").fill("collect_diagnostics");
    await form.getByRole("button", { name: "Create schedule" }).click();
    await form.getByRole("alert").filter({ hasText: "An id is letters" }).waitFor();
    expect(await form.getByLabel("Id").getAttribute("aria-invalid")).toBe("true");

    await form.getByLabel("Id").fill("made-in-the-console");
    await form.getByLabel("Target (optional)").fill("node/9");
    await form.getByLabel(/^Cron/).fill("61 * * * *");
    await form.getByRole("button", { name: "Create schedule" }).click();
    await form.getByRole("alert").filter({ hasText: "Not created" }).waitFor();

    await form.getByLabel(/^Cron/).fill("15 4 * * MON-FRI");
    await form.getByText("at 04:15 on Monday to Friday").waitFor();
    await form.getByLabel("Time zone").fill("Europe/Paris");
    await form.getByLabel("Payload (a JSON object, optional)").fill('{"depth": 3}');
    await form.getByLabel("While the previous action is unfinished").selectOption({ label: "buffer one" });
    expect(await axeViolations(page)).toEqual([]);
    await form.getByRole("button", { name: "Create schedule" }).click();
    await page.waitForURL(/\/schedules\/made-in-the-console$/);
    await page.getByRole("heading", { level: 1, name: "made-in-the-console" }).waitFor();

    const made = await kit.server.grpc.unary<{
      schedule: WireSchedule & { cron: string; timeZone: string; overlapPolicy: string; template: { targetRef: string; payload: { fields: object } } };
    }>("GetSchedule", { id: "made-in-the-console" }, kit.as("viewer"));
    expect(made.schedule).toMatchObject({
      owner: "agent:triage",
      cron: "15 4 * * MON-FRI",
      timeZone: "Europe/Paris",
      overlapPolicy: "SCHEDULE_POLICY_OVERLAP_BUFFER_ONE",
      template: { targetRef: "node/9" },
    });
    // A viewer is not offered the form.
    const { page: vera } = await kit.signedIn("viewer", "/schedules");
    await vera.getByText("Creating one needs the producer role").waitFor();
    expect(await vera.getByRole("button", { name: "New schedule…" }).count()).toBe(0);
  });

  it("the list follows the clock live: a new schedule appears and its ticks show without a reload", async () => {
    const { page } = await kit.signedIn("viewer", "/schedules");
    await page.getByRole("heading", { level: 1, name: "Schedules" }).waitFor();
    await kit.server.grpc.unary(
      "CreateSchedule",
      {
        schedule: {
          id: "every-second",
          template: { actionType: "ping" },
          interval: { seconds: "1", nanos: 0 },
          overlapPolicy: "SCHEDULE_POLICY_OVERLAP_ALLOW_ALL",
        },
        owner: "",
      },
      kit.as("producer"),
    );
    try {
      const row = page.getByRole("row", { name: /every-second/ });
      await row.waitFor({ timeout: 15_000 });
      expect(await row.textContent()).toContain("every 1s");
      await row.getByText("enqueued").waitFor({ timeout: 10_000 });
      await row.getByRole("link", { name: /^#\d+$/ }).waitFor();
    } finally {
      await kit.server.grpc.unary("DeleteSchedule", { id: "every-second", actor: "" }, kit.as("producer"));
    }
  });

  it("a tick that made no action says why in the list: skipped while the previous action is unfinished", async () => {
    // SKIP (the default) and an action nobody claims: the next tick is skipped.
    await kit.server.grpc.unary(
      "CreateSchedule",
      { schedule: { id: "every-second-skip", template: { actionType: "ping" }, interval: { seconds: "1", nanos: 0 } }, owner: "" },
      kit.as("producer"),
    );
    try {
      const { page } = await kit.signedIn("viewer", "/schedules");
      const row = page.getByRole("row", { name: /every-second-skip/ });
      await row.getByText("skipped: overlap").waitFor({ timeout: 10_000 });
      await row.getByText(/^action \d+ is still [A-Z]+$/).waitFor();
      expect(await axeViolations(page)).toEqual([]);
    } finally {
      await kit.server.grpc.unary("DeleteSchedule", { id: "every-second-skip", actor: "" }, kit.as("producer"));
    }
  });
});
