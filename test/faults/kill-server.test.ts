// Scenario 1: kill -9 the server under load (producers and streaming
// workers running), restart it, and all the work finishes: nothing lost,
// nothing run twice. Then the same with the embedded database: a server
// killed with -9 leaves its PostgreSQL running on the data directory, and
// the next `actionq serve` on that directory takes it over (stops it
// cleanly, starts its own), never failing to start and never corrupting it
// (amcheck on every index, verify_heapam on the tables), also when the
// server before it was killed while it was starting.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { pool, verify, waitForAll } from "./lib/check.js";
import { Watcher } from "./lib/load.js";
import { ServerProcess, postgresRunning, registerCluster, tempDir } from "./lib/processes.js";
import { FAULT_ENV, beginScenario, endScenario, serverEnv, unlessCrashed, until } from "./lib/scenario.js";
import { sleep } from "../support/wait.js";

afterEach(endScenario);

describe("scenario 1: kill -9 the server under load", () => {
  it("restarts twice under load; every action completes exactly once and the watcher misses nothing", async () => {
    const scenario = beginScenario("1 kill -9 server");
    const { crew } = scenario;
    const { url, schema, db } = scenario.database("kill");

    let server = await scenario.server("server", serverEnv(url, schema));
    // Restarts come back on the same port, as a supervisor would bring them.
    const sameAddress = serverEnv(url, schema, { ACTIONQ_LISTEN: server.address });
    const address = server.address;

    const watcher = new Watcher([address]);
    for (let i = 0; i < 3; i++)
      crew.add({ name: `worker-${i}`, addresses: [address], actionTypes: ["kill_job"], maxInFlight: 4, leaseSeconds: 30, workMs: 30 });
    const count = 300;
    const producer = scenario.produce({ addresses: [address], prefix: "kill", count, actionType: "kill_job", spreadMs: 7000, flakyEvery: 10 });

    const kills: number[] = [];
    for (const threshold of [40, 150]) {
      await until(`${threshold} executions done`, () => crew.finished >= threshold, 60_000);
      server.kill9();
      kills.push(crew.finished);
      expect((await server.exitWithin(5000)).signal).toBe("SIGKILL");
      await sleep(800);
      server = await scenario.server("server-restarted", sameAddress);
    }

    await unlessCrashed(producer.done, "the producer");
    await waitForAll(db, count, 90_000);
    await crew.stop();
    const { rows } = await db.query<{ id: string }>("SELECT max(id)::text AS id FROM events");
    await watcher.finish(rows[0]!.id);

    const report = await verify(db, { keys: producer.keys, records: crew.records, watched: watcher.events });
    scenario.summarize(report, `kills_at_done=${kills.join(",")} producer_retries=${producer.stats.retries} watcher_reconnects=${watcher.reconnects}`);
    expect(report.problems).toEqual([]);
    expect(report.completed).toBe(count);
    expect(producer.stats.retries, "the kills happened while producers were enqueuing").toBeGreaterThan(0);
    expect(watcher.reconnects).toBeGreaterThanOrEqual(2);
    server.sigterm();
    expect(await server.exitWithin(20_000)).toEqual({ code: 0, signal: null });
  });
});

describe("scenario 1b: kill -9 a server that runs its own embedded PostgreSQL", () => {
  it("the next serve on the data directory takes over the PostgreSQL left running, serves the same data, and leaves it uncorrupted", async () => {
    const scenario = beginScenario("1b kill -9 embedded");
    const { crew } = scenario;
    const dir = await tempDir("embedded");
    const pgdata = path.join(dir, "pg");
    registerCluster(pgdata);
    let db: ReturnType<typeof pool> | undefined;
    scenario.atEnd(async () => db?.end());

    const env = { ...FAULT_ENV, ACTIONQ_DATA_DIR: dir, ACTIONQ_LISTEN: "127.0.0.1:0" };
    let server = await scenario.server("embedded", env, 150_000);
    const address = server.address;
    const sameAddress = { ...env, ACTIONQ_LISTEN: address };

    for (let i = 0; i < 2; i++)
      crew.add({ name: `worker-${i}`, addresses: [address], actionTypes: ["embedded_job"], maxInFlight: 4, leaseSeconds: 60, workMs: 20 });
    const count = 200;
    const producer = scenario.produce({ addresses: [address], prefix: "embedded", count, actionType: "embedded_job", spreadMs: 8000, flakyEvery: 10 });

    for (const threshold of [30, 110]) {
      await until(`${threshold} executions done`, () => crew.finished >= threshold, 90_000);
      server.kill9();
      await server.exitWithin(5000);
      // The server is gone; its PostgreSQL is not.
      expect(await postgresRunning(pgdata)).toBe(true);
      server = await scenario.server("embedded-restarted", sameAddress, 150_000);
      expect(server.logged("an embedded PostgreSQL from an earlier run is still up; stopping it")).toHaveLength(1);
    }

    // Killed again, and the next one killed while it is starting, just
    // after it took the database over: the start after that must cope too.
    server.kill9();
    await server.exitWithin(5000);
    const starting = ServerProcess.spawn("embedded-killed-while-starting", sameAddress);
    scenario.servers.push(starting);
    await starting.waitFor("embedded PostgreSQL is up", 60_000);
    starting.kill9();
    await starting.exitWithin(5000);
    expect(await postgresRunning(pgdata)).toBe(true);
    server = await scenario.server("embedded-restarted-again", sameAddress, 150_000);
    expect(server.logged("an embedded PostgreSQL from an earlier run is still up; stopping it")).toHaveLength(1);

    // The last server's PostgreSQL, to check what was written.
    const up = server.notable.filter((line) => line.msg === "embedded PostgreSQL is up").at(-1)!;
    const password = (await readFile(path.join(dir, "password"), "utf8")).trim();
    const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${String(up.port)}/postgres`;
    db = pool(url, "actionq");

    await unlessCrashed(producer.done, "the producer");
    await waitForAll(db, count, 90_000);
    await crew.stop();

    const report = await verify(db, { keys: producer.keys, records: crew.records });
    // No corruption: every btree index agrees with its table, and the heap
    // pages are sound.
    await db.query("CREATE EXTENSION IF NOT EXISTS amcheck WITH SCHEMA public");
    const { rows: indexes } = await db.query<{ relname: string }>(
      `SELECT c.relname, public.bt_index_check(c.oid, true) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
       JOIN pg_am am ON am.oid = c.relam WHERE am.amname = 'btree' AND c.relnamespace = 'actionq'::regnamespace`,
    );
    expect(indexes.length).toBeGreaterThan(5);
    for (const table of ["actions", "events"]) {
      const { rows: corrupt } = await db.query(`SELECT * FROM public.verify_heapam('actionq.${table}'::regclass)`);
      if (corrupt.length > 0) report.problems.push(`${table}: ${JSON.stringify(corrupt.slice(0, 3))}`);
    }
    await db.end();
    db = undefined;

    const takeovers = scenario.servers.reduce((n, s) => n + s.logged("an embedded PostgreSQL from an earlier run is still up; stopping it").length, 0);
    scenario.summarize(report, `server_kills=4 takeovers=${takeovers} amcheck_indexes=${indexes.length}`);
    expect(report.problems).toEqual([]);
    expect(report.completed).toBe(count);
    expect(takeovers).toBe(4);

    // A clean stop stops its PostgreSQL too.
    server.sigterm();
    expect(await server.exitWithin(30_000)).toEqual({ code: 0, signal: null });
    expect(await postgresRunning(pgdata)).toBe(false);
  });
});
