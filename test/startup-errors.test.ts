// `actionq serve` and `actionq migrate` when they cannot start for a reason
// a person can fix: one line on stderr that says what happened and what to
// do, no stack trace, and the documented exit code. These run the compiled
// command: `npm test` builds first.
import { readFileSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { freePort, killRunning, requireBuiltCli, runToEnd } from "./support/processes.js";
import { databaseUrl, dropSchema, freshSchema } from "./support/database.js";

const dirs: string[] = [];
beforeAll(() => requireBuiltCli());
afterEach(() => killRunning());
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

/** One line, no stack frames. */
function expectOneLine(stderr: string): void {
  const lines = stderr.trim().split("\n");
  expect(lines, stderr).toHaveLength(1);
  expect(stderr).not.toMatch(/\n\s+at /);
  expect(lines[0]).toMatch(/^actionq: /);
}

/** The test database's URL with another port or database name. */
function otherUrl(change: (url: URL) => void): string {
  const url = new URL(databaseUrl());
  change(url);
  return url.toString();
}

describe("a setting is bad", () => {
  it("serve with a bad value: exit 2, one line naming the variable, its value and what it must be, before touching the database", async () => {
    const run = await runToEnd(["serve"], { ACTIONQ_POOL_SIZE: "lots", ACTIONQ_URL: "postgres://postgres@127.0.0.1:1/none" });
    expect(run.code).toBe(2);
    expectOneLine(run.stderr);
    expect(run.stderr).toBe('actionq: ACTIONQ_POOL_SIZE="lots": must be a whole number from 2 to 1000\n');
  });

  it("migrate with two bad values: one line for each", async () => {
    const run = await runToEnd(["migrate"], { ACTIONQ_SCHEMA: "a-b", ACTIONQ_LOG_LEVEL: "loud" });
    expect(run.code).toBe(2);
    const lines = run.stderr.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^actionq: ACTIONQ_SCHEMA="a-b": must be letters/);
    expect(lines[1]).toBe('actionq: ACTIONQ_LOG_LEVEL="loud": must be one of fatal, error, warn, info, debug, trace, silent');
  });
});

describe("the database cannot be reached", () => {
  it("migrate against a port where nothing listens: exit 3, naming the address and ACTIONQ_URL", async () => {
    const port = await freePort();
    const run = await runToEnd(["migrate"], { ACTIONQ_URL: `postgres://postgres@127.0.0.1:${port}/test`, ACTIONQ_SCHEMA: freshSchema() });
    expect(run.code).toBe(3);
    expectOneLine(run.stderr);
    expect(run.stderr).toContain(`cannot reach PostgreSQL at 127.0.0.1:${port}: connection refused`);
    expect(run.stderr).toContain("ACTIONQ_URL");
  });

  it("migrate against a database that does not exist: exit 3, saying how to create it", async () => {
    const url = otherUrl((u) => {
      u.pathname = "/no_such_database_here";
    });
    const run = await runToEnd(["migrate"], { ACTIONQ_URL: url, ACTIONQ_SCHEMA: freshSchema() });
    expect(run.code).toBe(3);
    expectOneLine(run.stderr);
    expect(run.stderr).toContain('has no database "no_such_database_here": create it (createdb no_such_database_here)');
  });

  it("serve against a port where nothing listens: exit 3, one line", async () => {
    const port = await freePort();
    const run = await runToEnd(["serve"], {
      ACTIONQ_URL: `postgres://postgres@127.0.0.1:${port}/test`,
      ACTIONQ_LISTEN: `127.0.0.1:${await freePort()}`,
      ACTIONQ_LOG_LEVEL: "silent",
    });
    expect(run.code).toBe(3);
    expectOneLine(run.stderr);
    expect(run.stderr).toContain("connection refused");
  });

  it("serve with an ACTIONQ_LISTEN_URL where nothing listens: exit 3, naming that address and that variable", async () => {
    const port = await freePort();
    const schema = freshSchema("listenurl");
    const run = await runToEnd(["serve"], {
      ACTIONQ_URL: databaseUrl(),
      ACTIONQ_SCHEMA: schema,
      // Over TCP whatever the run's database is (the embedded one is
      // reached through a Unix socket).
      ACTIONQ_LISTEN_URL: `postgres://postgres@127.0.0.1:${port}/postgres`,
      ACTIONQ_LISTEN: `127.0.0.1:${await freePort()}`,
      ACTIONQ_LOG_LEVEL: "silent",
    });
    await dropSchema(databaseUrl(), schema);
    expect(run.code).toBe(3);
    expectOneLine(run.stderr);
    expect(run.stderr).toContain(`cannot reach PostgreSQL at 127.0.0.1:${port}: connection refused`);
    expect(run.stderr).toContain("Check ACTIONQ_LISTEN_URL.");
  });
});

describe("the listen address is taken", () => {
  let blocker: net.Server;
  let port: number;
  beforeAll(async () => {
    blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    port = (blocker.address() as net.AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => blocker.close(() => resolve()));
  });

  it("serve with a port in use: exit 4 with one line, before any embedded PostgreSQL is created", async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), "actionq-inuse-"));
    dirs.push(dataDir);
    const run = await runToEnd(["serve"], { ACTIONQ_LISTEN: `127.0.0.1:${port}`, ACTIONQ_DATA_DIR: dataDir, ACTIONQ_LOG_LEVEL: "info" });
    expect(run.code).toBe(4);
    expectOneLine(run.stderr);
    expect(run.stderr).toContain(`127.0.0.1:${port} is already in use`);
    expect(run.stderr).toContain("ACTIONQ_LISTEN");
    // Nothing was started for nothing.
    expect(await readdir(dataDir)).toEqual([]);
    expect(run.stdout).not.toContain("embedded PostgreSQL");
  });

  it("--version prints the package's version", async () => {
    const run = await runToEnd(["--version"], {});
    expect({ code: run.code, signal: run.signal, stderr: run.stderr }).toEqual({ code: 0, signal: null, stderr: "" });
    expect(run.stdout.trim()).toBe(JSON.parse(readFileSync(path.resolve(import.meta.dirname, "..", "package.json"), "utf8")).version);
  });

  it("serve --help documents the exit codes", async () => {
    const run = await runToEnd(["serve", "--help"], {});
    expect({ code: run.code, signal: run.signal, stderr: run.stderr }).toEqual({ code: 0, signal: null, stderr: "" });
    expect(run.stdout).toContain("Exit codes:");
    expect(run.stdout).toMatch(/4 {2}the listen address is in use/);
  });
});
