// Scenario 2: PostgreSQL goes away under load. First every connection of
// the servers is terminated (pg_terminate_backend, as an operator or a
// failover would); then the database stops cleanly (fast) and comes back on
// the same port; then it crashes (immediate stop, so it replays its WAL)
// and comes back. Two servers are connected to it. They must
// reconnect on their own (pool and LISTEN), their claim streams and the
// watcher must recover, and nothing may be lost or run twice.
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "../../src/store/embedded-postgres.js";
import { verify, waitForAll } from "./lib/check.js";
import { Watcher } from "./lib/load.js";
import { pgCtl, registerCluster, tempDir } from "./lib/processes.js";
import { beginScenario, endScenario, serverEnv, unlessCrashed, until } from "./lib/scenario.js";
import { sleep } from "../support/wait.js";
import { freePort } from "../support/processes.js";

afterEach(endScenario);

describe("scenario 2: restart PostgreSQL under load", () => {
  it("servers reconnect their pool and LISTEN, streams and the watcher recover, nothing is lost", async () => {
    const scenario = beginScenario("2 restart postgres");
    const { crew } = scenario;
    const dir = await tempDir("pgrestart");
    registerCluster(path.join(dir, "pg"));
    const port = await freePort();
    const start = () => startEmbeddedPostgres({ dataDir: dir, port, settings: ["fsync=off"] });
    let postgres: EmbeddedPostgres | undefined = await start();
    const { url, schema, db } = scenario.database("pgrestart", postgres.url);
    scenario.atEnd(async () => postgres?.stop());

    const env = serverEnv(url, schema);
    const a = await scenario.server("server-a", env);
    const b = await scenario.server("server-b", env);
    const watcher = new Watcher([a.address, b.address]);
    for (let i = 0; i < 4; i++) {
      const home = i % 2 === 0 ? a : b;
      crew.add({ name: `worker-${i}`, addresses: [home.address], actionTypes: ["pg_job"], maxInFlight: 4, leaseSeconds: 60, workMs: 30 });
    }
    const count = 300;
    const producer = scenario.produce({ addresses: [a.address, b.address], prefix: "pg", count, actionType: "pg_job", spreadMs: 9000, flakyEvery: 10 });

    const outages: { kind: string; ms: number }[] = [];
    for (const [threshold, kind] of [
      [30, "terminate"],
      [110, "fast"],
      [200, "immediate"],
    ] as const) {
      await until(`${threshold} executions done`, () => crew.finished >= threshold, 60_000);
      const down = Date.now();
      if (kind === "terminate") {
        // An operator (or a failover) kills every connection of the servers;
        // the database itself stays up.
        const { rows } = await db.query<{ n: number }>(
          "SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name IN ('actionq', 'actionq-listen') AND datname = current_database()",
        );
        expect(rows[0]!.n).toBeGreaterThanOrEqual(2);
        outages.push({ kind, ms: 0 });
        continue;
      }
      if (kind === "fast") {
        await postgres!.stop();
      } else {
        // A crash: no shutdown checkpoint, in-flight transactions die, the
        // restart replays the WAL.
        const crashed = await pgCtl(["stop", "-D", path.join(dir, "pg"), "-m", "immediate", "-w", "-t", "30"]);
        expect(crashed.ok, crashed.stderr).toBe(true);
      }
      postgres = undefined;
      await sleep(2000);
      postgres = await start();
      outages.push({ kind, ms: Date.now() - down });
      expect(postgres.url).toBe(url);
    }
    const afterLastRestart = Date.now();

    await unlessCrashed(producer.done, "the producer");
    await waitForAll(db, count, 90_000);
    // Streams on both servers delivered work after the database came back.
    for (const [server, names] of [
      [a, ["worker-0", "worker-2"]],
      [b, ["worker-1", "worker-3"]],
    ] as const) {
      const after = crew.records.filter(
        (record) => record.ev === "start" && (names as readonly string[]).includes(record.worker) && record.t > afterLastRestart,
      );
      expect(after.length, `${server.name}'s streams delivered after the restart`).toBeGreaterThan(0);
    }
    await crew.stop();
    const { rows } = await db.query<{ id: string }>("SELECT max(id)::text AS id FROM events");
    await watcher.finish(rows[0]!.id);

    const report = await verify(db, { keys: producer.keys, records: crew.records, watched: watcher.events });
    // Both outages were noticed and recovered from by the LISTEN connection.
    for (const server of scenario.servers)
      expect(server.logged("LISTEN connection restored").length, `${server.name} restored LISTEN`).toBeGreaterThanOrEqual(3);
    scenario.summarize(
      report,
      `outages=${outages.map((o) => `${o.kind}:${(o.ms / 1000).toFixed(1)}s`).join(",")} producer_retries=${producer.stats.retries} watcher_reconnects=${watcher.reconnects}`,
    );
    expect(report.problems).toEqual([]);
    expect(report.completed).toBe(count);
    expect(producer.stats.retries, "producers hit the outages").toBeGreaterThan(0);

    for (const server of [a, b]) server.sigterm();
    for (const server of [a, b]) expect(await server.exitWithin(20_000)).toEqual({ code: 0, signal: null });
  });
});
