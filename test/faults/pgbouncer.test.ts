// Scenario 11: three replicas behind a real PgBouncer in transaction mode
// (ACTIONQ_DATABASE_POOLER=transaction), each with a direct LISTEN
// connection (ACTIONQ_LISTEN_URL) through a TCP proxy of its own, under
// producers, workers and a watcher. First PgBouncer is killed with -9 and
// started again on the same port: every pool connection of every replica
// drops at once. Then the LISTEN connections are cut and refused for a
// while: the replicas poll every ACTIONQ_FALLBACK_POLL_SECONDS until they
// listen again, and probes enqueued through one replica for a worker of
// another can only cross by that poll. Nothing may be lost or completed
// twice, and every replica's streams must deliver again within seconds of
// each fault.
import { afterEach, describe, expect, it } from "vitest";
import { databaseUrl } from "../support/database.js";
import { PGBOUNCER_MISSING, type PgBouncer, startPgBouncer } from "../support/pgbouncer.js";
import { TcpProxy } from "../support/tcp-proxy.js";
import { sleep } from "../support/wait.js";
import { verify, waitForAll } from "./lib/check.js";
import { Watcher } from "./lib/load.js";
import type { ServerProcess } from "./lib/processes.js";
import { beginScenario, endScenario, serverEnv, unlessCrashed, until } from "./lib/scenario.js";

afterEach(endScenario);

describe.skipIf(PGBOUNCER_MISSING !== undefined)("scenario 11: PgBouncer restarted and LISTEN cut under load", () => {
  it("three replicas behind PgBouncer: its kill -9 and restart, then the LISTEN connections cut; nothing lost or run twice, streams back within seconds", async () => {
    const scenario = beginScenario("11 pgbouncer");
    const { crew } = scenario;
    const { url, schema, db } = scenario.database("pgbouncer");
    let bouncer: PgBouncer | undefined = await startPgBouncer(url);
    scenario.atEnd(async () => bouncer?.stop());
    const port = bouncer.port;
    const pgPort = Number(new URL(databaseUrl()).port || 5432);

    const proxies = await Promise.all([0, 1, 2].map(() => TcpProxy.start(pgPort)));
    scenario.atEnd(...proxies.map((proxy) => () => proxy.close()));
    const replicas: ServerProcess[] = [];
    for (let r = 0; r < 3; r++) {
      const direct = new URL(url);
      direct.hostname = "127.0.0.1";
      direct.port = String(proxies[r]!.port);
      // Handoff off and the backstop at 30 s: claims on another replica
      // come from the wakeup (NOTIFY, or the fallback poll while cut).
      const env = serverEnv(bouncer.url, schema, {
        ACTIONQ_DATABASE_POOLER: "transaction",
        ACTIONQ_LISTEN_URL: direct.toString(),
        ACTIONQ_FALLBACK_POLL_SECONDS: "0.25",
        ACTIONQ_POLL_INTERVAL_SECONDS: "30",
        ACTIONQ_HANDOFF: "off",
        ACTIONQ_POOL_SIZE: "4",
      });
      replicas.push(await scenario.server(`replica-${r}`, env));
    }
    const addresses = replicas.map((replica) => replica.address);
    const homeOf = new Map<string, number>();
    for (let r = 0; r < 3; r++) {
      for (let k = 0; k < 2; k++) {
        const name = `worker-r${r}-${k}`;
        homeOf.set(name, r);
        crew.add({
          name,
          addresses: [addresses[r]!, addresses[(r + 1) % 3]!, addresses[(r + 2) % 3]!],
          actionTypes: ["bouncer_job"],
          maxInFlight: 3,
          leaseSeconds: 60,
          workMs: 40,
        });
      }
    }
    // Only the third replica's probe worker takes probe_job, enqueued through
    // the first while LISTEN is cut: it can only arrive by the fallback poll.
    homeOf.set("probe-r2", 2);
    crew.add({ name: "probe-r2", addresses: [addresses[2]!], actionTypes: ["probe_job"], maxInFlight: 2, leaseSeconds: 60, workMs: 10 });
    const watcher = new Watcher([addresses[2]!, addresses[0]!, addresses[1]!]);
    const count = 420;
    // Enqueued through the first two; the third's workers only get work
    // that a wakeup brought across.
    const producer = scenario.produce({
      addresses: [addresses[0]!, addresses[1]!],
      prefix: "pgb",
      count,
      actionType: "bouncer_job",
      spreadMs: 14_000,
      flakyEvery: 10,
    });

    /** ms from `since` until each replica's workers started an execution. */
    const recovery = async (since: number, what: string): Promise<number[]> => {
      const first = [0, 1, 2].map(() => Number.NaN);
      await until(
        `every replica's workers to execute after ${what}`,
        () => {
          for (const record of crew.records) {
            const home = homeOf.get(record.worker);
            if (record.ev === "start" && home !== undefined && record.t > since && Number.isNaN(first[home]!)) first[home] = record.t - since;
          }
          return first.every((ms) => !Number.isNaN(ms));
        },
        30_000,
      );
      return first;
    };

    // Fault 1: PgBouncer dies; every pooled connection of every replica
    // drops. It comes back on the same port after a second.
    await until("100 executions", () => crew.finished >= 100, 60_000);
    const killedAt = Date.now();
    await bouncer.kill();
    bouncer = undefined;
    await sleep(1000);
    bouncer = await startPgBouncer(url, { port });
    const restartedAt = Date.now();
    const afterRestart = await recovery(restartedAt, "the PgBouncer restart");

    // Fault 2: every LISTEN connection is cut and refused for 3 s; the
    // replicas poll meanwhile, and listen again once they can.
    await until("260 executions", () => crew.finished >= 260, 60_000);
    for (const proxy of proxies) proxy.refuse(true);
    const cutAt = Date.now();
    const cut = proxies.reduce((n, proxy) => n + proxy.cut(), 0);
    const probes = scenario.produce({ addresses: [addresses[0]!], prefix: "probe", count: 10, actionType: "probe_job", spreadMs: 2000 });
    const duringCut = await recovery(cutAt, "the LISTEN cut");
    await sleep(Math.max(0, cutAt + 3000 - Date.now()));
    for (const proxy of proxies) proxy.refuse(false);
    const allowedAt = Date.now();
    await until("every replica listens again", () => replicas.every((replica) => replica.logged("LISTEN connection restored").length >= 1), 20_000);
    const relisten = Date.now() - allowedAt;

    await unlessCrashed(producer.done, "the producer");
    await unlessCrashed(probes.done, "the probes");
    await waitForAll(db, count + probes.options.count, 90_000);
    await crew.stop();
    const { rows } = await db.query<{ id: string }>("SELECT max(id)::text AS id FROM events");
    await watcher.finish(rows[0]!.id);

    // Enqueue -> first claim, from the log, in the three phases.
    const { rows: phases } = await db.query<{ phase: string; p50: number; p99: number; n: number }>(
      `SELECT phase, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99, count(*)::int AS n FROM (
         SELECT CASE WHEN e.created_at >= to_timestamp($2 / 1000.0) AND e.created_at < to_timestamp($3 / 1000.0) THEN 'polling'
                     WHEN e.created_at >= to_timestamp($1 / 1000.0) AND e.created_at < to_timestamp($4 / 1000.0) THEN 'bouncer_down'
                     ELSE 'listen' END AS phase,
                (extract(epoch FROM c.created_at - e.created_at) * 1000)::float8 AS ms
         FROM events c JOIN events e ON e.action_id = c.action_id AND e.event_type = 'action_enqueued'
         WHERE c.event_type = 'action_claimed' AND (c.payload->>'attempt')::int = 1) x GROUP BY phase ORDER BY phase`,
      [killedAt, cutAt, allowedAt, restartedAt],
    );
    // The probes crossed replicas while polling: enqueue -> claim.
    const { rows: probed } = await db.query<{ p50: number; max: number }>(
      `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, max(ms) AS max FROM (
         SELECT (extract(epoch FROM c.created_at - e.created_at) * 1000)::float8 AS ms
         FROM events c JOIN events e ON e.action_id = c.action_id AND e.event_type = 'action_enqueued'
         JOIN actions a ON a.id = c.action_id AND a.action_type = 'probe_job'
         WHERE c.event_type = 'action_claimed' AND (c.payload->>'attempt')::int = 1) x`,
    );
    const report = await verify(db, { keys: [...producer.keys, ...probes.keys], records: crew.records, watched: watcher.events });
    const polled = replicas.map((replica) => replica.logged("lost the LISTEN connection; reconnecting").length);
    const ms = (values: number[]) => values.map((value) => `${Math.round(value)}ms`).join("/");
    scenario.summarize(
      report,
      `pgbouncer_down=${((restartedAt - killedAt) / 1000).toFixed(1)}s streams_back_after_restart=${ms(afterRestart)} ` +
        `listen_cut=${cut} streams_during_cut=${ms(duringCut)} relisten=${relisten}ms listen_losses=${polled.join("/")} ` +
        `probes_across_while_polling=p50:${Math.round(probed[0]!.p50)}ms,max:${Math.round(probed[0]!.max)}ms ` +
        `claim_latency=${phases.map((p) => `${p.phase}:p50=${Math.round(p.p50)}ms,p99=${Math.round(p.p99)}ms,n=${p.n}`).join(" ")} ` +
        `producer_retries=${producer.stats.retries} watcher_reconnects=${watcher.reconnects}`,
    );
    expect(report.problems).toEqual([]);
    expect(report.completed).toBe(count + probes.options.count);
    // Polling at 0.25 s: a claim across replicas within about one interval.
    expect(probed[0]!.max).toBeLessThan(2000);
    expect(report.duplicates).toBe(0);
    // Within seconds: every replica's streams delivered again.
    for (const value of [...afterRestart, ...duringCut]) expect(value).toBeLessThan(10_000);
    expect(cut).toBe(3);
    for (const replica of replicas) replica.sigterm();
    for (const replica of replicas) expect(await replica.exitWithin(20_000)).toEqual({ code: 0, signal: null });
  });
});
