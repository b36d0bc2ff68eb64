// Scenario 4: a TCP proxy between workers and the server misbehaves.
//
// a) It silently drops connections (stops forwarding, no FIN, no RST). The
//    server's keepalive PING (ACTIONQ_KEEPALIVE_SECONDS) goes unanswered, so
//    it closes the connection and releases what was not acknowledged; the
//    worker's own keepalive notices too and it reconnects through the proxy,
//    finishing its acknowledged claims with their tokens.
// b) It has an idle timeout shorter than the heartbeat interval (and than
//    either side's keepalive): a quiet connection is cut, by closing it for
//    one worker and by going silent for another.
//
// Either way no claim is lost and none runs twice, and a watcher behind
// such a proxy still sees every event once.
import { afterEach, describe, expect, it } from "vitest";
import { TcpProxy } from "../support/tcp-proxy.js";
import { verify, waitForAll } from "./lib/check.js";
import { Watcher } from "./lib/load.js";
import { beginScenario, endScenario, serverEnv, unlessCrashed, until } from "./lib/scenario.js";
import { sleep } from "../support/wait.js";

afterEach(endScenario);

describe("scenario 4: a proxy that drops connections", () => {
  it("a) silent drops (no FIN): the server's PING closes the dead connection, workers reconnect, nothing lost or run twice", async () => {
    const scenario = beginScenario("4a silent drop");
    const { crew } = scenario;
    const { url, schema, db } = scenario.database("blackhole");

    const server = await scenario.server("server", serverEnv(url, schema, { ACTIONQ_KEEPALIVE_SECONDS: "0.5", ACTIONQ_ACK_TIMEOUT_SECONDS: "10" }));
    const [toW1, toW2, toWatcher] = await Promise.all([0, 1, 2].map(() => TcpProxy.start(server.port)));
    scenario.atEnd(...[toW1!, toW2!, toWatcher!].map((proxy) => () => proxy.close()));

    const watcher = new Watcher([toWatcher!.address]);
    const common = { actionTypes: ["net_job"], maxInFlight: 4, leaseSeconds: 60, workMs: 60, keepaliveMs: 1000, silenceMs: 3000 };
    crew.add({ name: "behind-proxy-1", addresses: [toW1!.address], ...common });
    crew.add({ name: "behind-proxy-2", addresses: [toW2!.address], ...common });
    crew.add({ name: "direct", addresses: [server.address], ...common });
    const count = 300;
    const producer = scenario.produce({ addresses: [server.address], prefix: "bh", count, actionType: "net_job", spreadMs: 8000, flakyEvery: 15 });

    let silenced = 0;
    await until("50 executions", () => crew.finished >= 50, 60_000);
    silenced += toW1!.blackhole() + toWatcher!.blackhole();
    await until("150 executions", () => crew.finished >= 150, 60_000);
    silenced += toW2!.blackhole();
    await until("220 executions", () => crew.finished >= 220, 60_000);
    silenced += toW1!.blackhole();

    await unlessCrashed(producer.done, "the producer");
    await waitForAll(db, count, 60_000);
    await crew.stop();
    const { rows } = await db.query<{ id: string }>("SELECT max(id)::text AS id FROM events");
    await watcher.finish(rows[0]!.id);

    const report = await verify(db, { keys: producer.keys, records: crew.records, watched: watcher.events });
    const pingClosed = server.logged("connection did not answer a keepalive PING; closing it").length;
    scenario.summarize(report, `silenced_connections=${silenced} closed_by_server_ping=${pingClosed} watcher_reconnects=${watcher.reconnects}`);
    expect(report.problems).toEqual([]);
    expect(report.completed).toBe(count);
    expect(silenced).toBeGreaterThanOrEqual(4);
    // The server noticed every silenced connection by itself.
    expect(pingClosed).toBeGreaterThanOrEqual(silenced);
    // Each proxied worker came back through a new connection.
    expect(toW1!.stats.accepted).toBeGreaterThanOrEqual(3);
    expect(toW2!.stats.accepted).toBeGreaterThanOrEqual(2);
  });

  it("b) an idle timeout shorter than the heartbeat: quiet connections are cut (closed or silenced), nothing lost or run twice", async () => {
    const scenario = beginScenario("4b idle timeout");
    const { crew, producers } = scenario;
    const { url, schema, db } = scenario.database("idle");

    // Heartbeats every 2 s, PINGs every 1 s from either side: the proxies cut
    // after 0.3 s of quiet, which every quiet connection has between PINGs.
    const server = await scenario.server(
      "server",
      serverEnv(url, schema, { ACTIONQ_HEARTBEAT_SECONDS: "2", ACTIONQ_KEEPALIVE_SECONDS: "1", ACTIONQ_ACK_TIMEOUT_SECONDS: "10" }),
    );
    const closing = await TcpProxy.start(server.port, { idleTimeoutMs: 300, idleAction: "close" });
    const silencing = await TcpProxy.start(server.port, { idleTimeoutMs: 300, idleAction: "blackhole" });
    const watcherProxy = await TcpProxy.start(server.port, { idleTimeoutMs: 300, idleAction: "blackhole" });
    scenario.atEnd(...[closing, silencing, watcherProxy].map((proxy) => () => proxy.close()));

    const watcher = new Watcher([watcherProxy.address], 5000);
    const common = { actionTypes: ["idle_job"], maxInFlight: 3, leaseSeconds: 60, workMs: 80, keepaliveMs: 1000, silenceMs: 5000 };
    crew.add({ name: "idle-closed", addresses: [closing.address], ...common });
    crew.add({ name: "idle-silenced", addresses: [silencing.address], ...common });
    crew.add({ name: "direct", addresses: [server.address], ...common });

    // Two bursts with a quiet spell between them, when the cuts happen.
    const perBurst = 130;
    scenario.produce({ addresses: [server.address], prefix: "idle-a", count: perBurst, actionType: "idle_job", spreadMs: 3000, flakyEvery: 13 });
    await unlessCrashed(producers[0]!.done, "the first burst");
    await waitForAll(db, perBurst, 60_000);
    await sleep(3000);
    scenario.produce({ addresses: [server.address], prefix: "idle-b", count: perBurst, actionType: "idle_job", spreadMs: 3000, flakyEvery: 13 });
    await unlessCrashed(producers[1]!.done, "the second burst");
    await waitForAll(db, 2 * perBurst, 60_000);
    await crew.stop();
    const { rows } = await db.query<{ id: string }>("SELECT max(id)::text AS id FROM events");
    await watcher.finish(rows[0]!.id);

    const report = await verify(db, { keys: producers.flatMap((p) => p.keys), records: crew.records, watched: watcher.events });
    const executedBy = (name: string) => crew.records.filter((r) => r.ev === "done" && r.worker === name).length;
    scenario.summarize(
      report,
      `idle_closed=${closing.stats.idleClosed} idle_silenced=${silencing.stats.idleSilenced + watcherProxy.stats.idleSilenced} ` +
        `reconnects_through_proxies=${closing.stats.accepted + silencing.stats.accepted + watcherProxy.stats.accepted - 3} ` +
        `done_by=idle-closed:${executedBy("idle-closed")},idle-silenced:${executedBy("idle-silenced")},direct:${executedBy("direct")}`,
    );
    expect(report.problems).toEqual([]);
    expect(report.completed).toBe(2 * perBurst);
    expect(closing.stats.idleClosed).toBeGreaterThan(0);
    expect(silencing.stats.idleSilenced).toBeGreaterThan(0);
    // The workers behind the proxies kept working, through new connections.
    expect(executedBy("idle-closed")).toBeGreaterThan(0);
    expect(executedBy("idle-silenced")).toBeGreaterThan(0);
  });
});
