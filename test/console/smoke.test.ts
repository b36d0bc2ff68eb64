// The console opens from the server's own port, signs a person in and
// shows the frame, with and without authentication; both sign-in pages
// pass axe.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ConsoleKit, axeViolations, noChromium, startConsole } from "./harness.js";

describe.skipIf(noChromium)("console: signing in", () => {
  let open: ConsoleKit;
  let authed: ConsoleKit;

  beforeAll(async () => {
    [open, authed] = await Promise.all([startConsole(), startConsole({ auth: true })]);
  });
  afterAll(async () => {
    await Promise.all([open?.close(), authed?.close()]);
  });

  it("without authentication, the console asks for a name and shows it", async () => {
    const context = await open.browser.newContext();
    const page = await context.newPage();
    await page.goto(open.url);
    await page.getByLabel("Your name").waitFor();
    expect(await axeViolations(page)).toEqual([]);
    await context.close();
    const signed = await open.signedIn("human:dora");
    expect(await signed.page.getByText("human:dora").first().textContent()).toContain("human:dora");
  });

  it("with authentication, a bad token is refused with the server's words and a good one signs in", async () => {
    const context = await authed.browser.newContext();
    const page = await context.newPage();
    await page.goto(authed.url);
    await page.getByLabel("Bearer token").waitFor();
    expect(await axeViolations(page)).toEqual([]);
    await page.getByLabel("Bearer token").fill("not-a-token");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").waitFor();
    expect(await page.getByRole("alert").textContent()).toContain("bearer token is not known");
    await page.getByLabel("Bearer token").fill(authed.principals!.bob.tokens[0]!);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("button", { name: "Sign out" }).waitFor();
    expect(await page.locator(".whoami").textContent()).toContain("human:bob");
    // The token is kept for the browser session only: not in a cookie, not in the URL.
    expect(await context.cookies()).toEqual([]);
    expect(page.url()).not.toContain(authed.principals!.bob.tokens[0]!);
    await context.close();
  });
});
