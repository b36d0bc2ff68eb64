// The console's end-to-end harness: a real actionq server (the same harness
// as every other suite, on a fresh schema of the run's PostgreSQL) serving
// the built console, and headless Chromium from Debian's `chromium`
// package driven by playwright-core. The suites skip themselves, saying
// why, when no Chromium is installed (.ci/run installs it).
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { type Browser, type BrowserContext, type Page, chromium } from "playwright-core";
import { type Principal, bearer, principal, removeAuthDirs, writeAuthFile } from "../support/auth.js";
import { createLogger } from "../../src/log.js";
import { ActionqServer } from "../../src/server.js";
import { type ServerEnv, type TestServer, startTestServer, testConfig } from "../support/harness.js";

/** Where Chromium is: ACTIONQ_CHROMIUM, or Debian's package. */
export const chromiumPath = [process.env.ACTIONQ_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p): p is string => !!p && existsSync(p));
export const noChromium = chromiumPath === undefined;
if (noChromium) console.warn("console end-to-end tests skipped: no Chromium (apt-get install chromium, or set ACTIONQ_CHROMIUM)");

const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
  "--disable-dev-shm-usage",
];

/** The principals of a console suite with authentication on. */
export function consolePrincipals() {
  return {
    producer: principal("agent:triage", ["producer"]),
    // Approvers also hold viewer: reading an action (GetAction, ListActions)
    // is the viewer's, and nobody should approve what they cannot read.
    /** Both proposes and approves: its own proposals are refused to it. */
    alice: principal("human:alice", ["producer", "approver", "viewer"]),
    bob: principal("human:bob", ["approver", "viewer"]),
    /** The one member of an approver group (test/console/approver-groups.test.ts). */
    carol: principal("human:carol", ["approver", "viewer"], { groups: ["sre-leads"] }),
    operator: principal("human:olga", ["operator", "viewer"]),
    viewer: principal("human:vera", ["viewer"]),
    worker: principal("worker:one", ["worker"]),
    admin: principal("human:root", ["admin"]),
  } satisfies Record<string, Principal>;
}

export type ConsolePrincipals = ReturnType<typeof consolePrincipals>;

export interface ConsoleKit {
  server: TestServer;
  /** The settings the server was started with (the auth file, with authentication). */
  env: ServerEnv;
  /** The console's address, http://127.0.0.1:PORT */
  url: string;
  browser: Browser;
  /** With authentication: the principals and their tokens. */
  principals: ConsolePrincipals | undefined;
  /** grpc-js metadata for a principal's token (empty without authentication). */
  as(who: keyof ConsolePrincipals): ReturnType<typeof bearer>;
  /** A fresh browser context (its own sessionStorage) signed in as `who`:
   * a principal's token with authentication, a name without. */
  signedIn(who: keyof ConsolePrincipals | string, path?: string): Promise<{ context: BrowserContext; page: Page }>;
  close(): Promise<void>;
}

export async function launchBrowser(): Promise<Browser> {
  if (!chromiumPath) throw new Error("no Chromium");
  return chromium.launch({ executablePath: chromiumPath, headless: true, args: CHROMIUM_ARGS });
}

/** A server with the console and a browser; `auth` turns authentication on
 * with the principals of `consolePrincipals`. */
export async function startConsole(options: { auth?: boolean; env?: ServerEnv } = {}): Promise<ConsoleKit> {
  const principals = options.auth ? consolePrincipals() : undefined;
  const env: ServerEnv = { ...options.env };
  if (principals) env.ACTIONQ_AUTH_FILE = await writeAuthFile(Object.values(principals));
  const server = await startTestServer(env);
  const url = `http://${server.address}`;
  const browser = await launchBrowser();
  const contexts: BrowserContext[] = [];
  return {
    server,
    env,
    url,
    browser,
    principals,
    as(who) {
      return bearer(principals?.[who].tokens[0]);
    },
    async signedIn(who, at = "/") {
      const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
      contexts.push(context);
      const page = await context.newPage();
      await page.goto(url + at);
      const known = principals?.[who as keyof ConsolePrincipals];
      if (principals) {
        if (!known) throw new Error(`no principal ${who}`);
        await signInWithToken(page, known.tokens[0]!);
      } else {
        await signInWithName(page, who);
      }
      return { context, page };
    },
    async close() {
      for (const context of contexts) await context.close().catch(() => {});
      await browser.close().catch(() => {});
      await server.close();
      await removeAuthDirs();
    },
  };
}

/** Restarts the console's server as an operator would: closes it, runs
 * `whileDown` (if given) while nothing listens, and starts a new server on
 * the same port and schema with the same settings. Open browsers keep
 * their pages and reconnect; `kit.server` goes on working, and closing
 * the kit closes the new server. */
export async function restartServer(kit: ConsoleKit, whileDown?: () => Promise<void>): Promise<void> {
  const port = kit.server.address.slice(kit.server.address.lastIndexOf(":") + 1);
  await kit.server.server.close();
  await whileDown?.();
  const config = testConfig(kit.server.schema, { ...kit.env, ACTIONQ_LISTEN: `127.0.0.1:${port}` });
  const next = await ActionqServer.start(config, createLogger(config.logLevel));
  const closeRest = kit.server.close.bind(kit.server);
  kit.server.server = next;
  kit.server.close = async () => {
    await next.close();
    await closeRest();
  };
}

export async function signInWithToken(page: Page, token: string): Promise<void> {
  await page.getByLabel("Bearer token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: "Sign out" }).waitFor();
}

export async function signInWithName(page: Page, name: string): Promise<void> {
  await page.getByLabel("Your name").fill(name);
  await page.getByRole("button", { name: "Continue" }).click();
  await page.getByRole("button", { name: "Sign out" }).waitFor();
}

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: string[];
}

/** Runs axe-core on the page as it is and returns the serious and critical
 * violations. The script is evaluated through the DevTools protocol, which
 * the page's Content-Security-Policy does not govern. */
export async function axeViolations(page: Page): Promise<AxeViolation[]> {
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    // Runs in the page: `document` is the page's, not Node's.
    const page = globalThis as unknown as {
      document: unknown;
      axe: {
        run(context: unknown, options: object): Promise<{ violations: { id: string; impact: string | null; help: string; nodes: { target: unknown[] }[] }[] }>;
      };
    };
    const result = await page.axe.run(page.document, { resultTypes: ["violations"] });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => JSON.stringify(n.target)) }));
  });
  return violations.filter((v) => v.impact === "serious" || v.impact === "critical");
}

/** A screenshot of the real app. With ACTIONQ_UPDATE_SCREENSHOTS=1 it
 * replaces the README's copy in docs/images; otherwise it goes to a
 * temporary directory, so a test run leaves the work tree as it was. */
export async function screenshot(page: Page, name: string): Promise<string> {
  const dir =
    process.env.ACTIONQ_UPDATE_SCREENSHOTS === "1"
      ? path.resolve(import.meta.dirname, "..", "..", "docs", "images")
      : path.join(tmpdir(), "actionq-console-screenshots");
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: false });
  return file;
}

/** A scratch directory removed by the caller. */
export async function scratchDir(): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), "actionq-console-"));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}
