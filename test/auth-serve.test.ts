// `actionq serve` as a real process with authentication (issue 6): the auth
// file reloaded on SIGHUP (a revoked token stops working, a new one starts,
// an invalid file leaves the old one in force), an invalid file refused at
// start with exit 2 naming the key, and secure by default: no listening
// beyond loopback without ACTIONQ_AUTH_FILE unless --insecure says so.
// These tests run the compiled code: `npm test` builds first; run
// `npm run build` before running this file on its own.
import * as grpc from "@grpc/grpc-js";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Outcome, bearer, healthCheck, newToken, outcomeOf, principal, removeAuthDirs, rewriteAuthFile, writeAuthFile } from "./support/auth.js";
import { ActionqProcess, freePort, killRunning, requireBuiltCli, runToEnd } from "./support/processes.js";
import { GrpcClient } from "./support/harness.js";
import { eventually } from "./support/wait.js";
import { databaseUrl, freshSchema } from "./support/database.js";

const schemas: string[] = [];
const clients: GrpcClient[] = [];

beforeAll(() => {
  requireBuiltCli();
});

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await killRunning();
});

afterAll(async () => {
  await removeAuthDirs();
  const db = new pg.Client({ connectionString: databaseUrl() });
  await db.connect();
  try {
    for (const schema of schemas) await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await db.end();
  }
});

function serveEnv(listen: string, extra: Record<string, string> = {}): Record<string, string> {
  const schema = freshSchema();
  schemas.push(schema);
  return {
    ACTIONQ_URL: databaseUrl(),
    ACTIONQ_SCHEMA: schema,
    ACTIONQ_LISTEN: listen,
    ACTIONQ_LOG_LEVEL: "info",
    ACTIONQ_SHUTDOWN_GRACE_SECONDS: "1",
    ...extra,
  };
}

async function serve(args: string[], env: Record<string, string>): Promise<ActionqProcess> {
  const proc = new ActionqProcess(["serve", ...args], env);
  await proc.waitForLog("actionq is serving", 60_000);
  return proc;
}

function clientOn(port: number): GrpcClient {
  const client = new GrpcClient(`127.0.0.1:${port}`);
  clients.push(client);
  return client;
}

const stats = (client: GrpcClient, token?: string): Promise<Outcome> => outcomeOf(client.unary("GetQueueStats", {}, bearer(token)));

describe("the auth file on SIGHUP", () => {
  it("a revoked token becomes UNAUTHENTICATED and a new one works; an invalid file leaves the one in force", { timeout: 90_000 }, async () => {
    const viewer = principal("human:viewer", ["viewer"]);
    const revoked = viewer.tokens[0]!;
    const file = await writeAuthFile([viewer]);
    const port = await freePort();
    const proc = await serve([], serveEnv(`127.0.0.1:${port}`, { ACTIONQ_AUTH_FILE: file }));
    const client = clientOn(port);
    expect(await stats(client, revoked)).toMatchObject({ code: "OK" });

    const replacement = newToken();
    const newcomer = principal("human:newcomer", ["viewer"]);
    await rewriteAuthFile(file, [{ ...viewer, tokens: [replacement] }, newcomer], "yaml");
    proc.child.kill("SIGHUP");
    await eventually(async () => (await stats(client, revoked)).code === "UNAUTHENTICATED", "the revoked token to be refused after SIGHUP", 10_000, 50);
    expect(await stats(client, revoked)).toMatchObject({ code: "UNAUTHENTICATED", reason: "UNAUTHENTICATED" });
    expect(await stats(client, replacement)).toMatchObject({ code: "OK" });
    expect(await stats(client, newcomer.tokens[0])).toMatchObject({ code: "OK" });

    // An invalid file: the server keeps running with the file it had.
    await rewriteAuthFile(file, "principals:\n  - name: human:viewer\n    roles: [viewer, overlord]\n    tokens: []\n");
    proc.child.kill("SIGHUP");
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(proc.alive).toBe(true);
    expect(await stats(client, replacement)).toMatchObject({ code: "OK" });
    expect(await stats(client, newcomer.tokens[0])).toMatchObject({ code: "OK" });
    expect(await stats(client, revoked)).toMatchObject({ code: "UNAUTHENTICATED" });

    expect(await proc.stop()).toEqual({ code: 0, signal: null });
  });
});

describe("an invalid auth file at start", () => {
  const hash = `sha256:${"ab".repeat(32)}`;
  it.each([
    ["an unknown role", `principals:\n  - name: app:one\n    roles: [producer, overlord]\n    tokens: ["${hash}"]\n`, /principals\[0\]\.roles\[1\]/],
    [
      "a token that is not a sha256 hash",
      `principals:\n  - name: app:one\n    roles: [producer]\n    tokens: ["sha256:1234"]\n`,
      /principals\[0\]\.tokens\[0\]/,
    ],
    [
      "a name with a space",
      `principals:\n  - name: app:one\n    roles: [viewer]\n    tokens: ["${hash}"]\n  - name: app two\n    roles: [viewer]\n    tokens: ["${hash.replace("ab", "cd")}"]\n`,
      /principals\[1\]\.name/,
    ],
  ])("%s: exit 2 naming the key", async (_name, content, key) => {
    const file = await writeAuthFile(content);
    const run = await runToEnd(["serve"], serveEnv("127.0.0.1:0", { ACTIONQ_AUTH_FILE: file }), 20_000);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(2);
    expect(run.stderr).toMatch(key);
  });
});

describe("secure by default", () => {
  it("listening on 0.0.0.0 without ACTIONQ_AUTH_FILE: exit 2, saying to set ACTIONQ_AUTH_FILE or pass --insecure", async () => {
    const run = await runToEnd(["serve"], serveEnv("0.0.0.0:0"), 20_000);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(2);
    const said = `${run.stdout}\n${run.stderr}`;
    expect(said).toContain("ACTIONQ_AUTH_FILE");
    expect(said).toContain("--insecure");
  });

  it("with --insecure it serves without credentials and logs a warning", { timeout: 90_000 }, async () => {
    const port = await freePort();
    const proc = await serve(["--insecure"], serveEnv(`0.0.0.0:${port}`));
    const warnings = proc.logs().filter((line) => typeof line.level === "number" && line.level >= 40 && /insecure/i.test(String(line.msg)));
    expect(warnings.length, proc.output()).toBeGreaterThan(0);
    expect(await stats(clientOn(port))).toMatchObject({ code: "OK" });
    expect(await proc.stop()).toEqual({ code: 0, signal: null });
  });

  it("with ACTIONQ_AUTH_FILE it serves on 0.0.0.0 and wants a credential", { timeout: 90_000 }, async () => {
    const viewer = principal("human:viewer", ["viewer"]);
    const port = await freePort();
    const proc = await serve([], serveEnv(`0.0.0.0:${port}`, { ACTIONQ_AUTH_FILE: await writeAuthFile([viewer], "json") }));
    const serving = proc.logs().find((line) => line.msg === "actionq is serving");
    expect(String(serving?.authentication)).toMatch(/^on \(1 principal from .*auth\.json\)$/);
    expect(String(serving?.database)).toMatch(/^postgres at /);
    expect(String(serving?.database)).not.toContain("@");
    const client = clientOn(port);
    expect(await stats(client)).toMatchObject({ code: "UNAUTHENTICATED" });
    expect(await stats(client, viewer.tokens[0])).toMatchObject({ code: "OK" });
    expect(await healthCheck(`127.0.0.1:${port}`, grpc.credentials.createInsecure())).toMatchObject({ code: "OK", status: "SERVING" });
    expect(await proc.stop()).toEqual({ code: 0, signal: null });
  });
});
