// Scenario 9: kill -9 between a handoff's commit and its push. A worker
// waits on a claim stream that goes through a proxy; the proxy goes silent
// (nothing forwarded either way), an action is enqueued and handed off to
// that stream in the enqueue's own statement (the answer says CLAIMED), and
// the server is killed before the push can reach the worker. The claim was
// committed and never delivered: the restarted server's sweeper releases it
// once its acknowledgement deadline passes, the worker (reconnected after
// its keepalive found the silent connection dead) gets it again, and runs
// it once. Three rounds, then a check of every history.
import { afterEach, describe, expect, it } from "vitest";
import { GrpcClient } from "../support/harness.js";
import { TcpProxy } from "../support/tcp-proxy.js";
import { verify, waitForAll } from "./lib/check.js";
import { beginScenario, endScenario, serverEnv, until } from "./lib/scenario.js";
import { sleep } from "../support/wait.js";

afterEach(endScenario);

interface Enqueued {
  action: { id: string; status: string; claimedBy: string };
}

describe("scenario 9: kill -9 between a handoff's commit and its push", () => {
  it("the handed-off claim is released after its deadline and runs once", async () => {
    const scenario = beginScenario("9 handoff kill -9");
    const { crew } = scenario;
    const { url, schema, db } = scenario.database("handoff");
    let server = await scenario.server("server", serverEnv(url, schema, { ACTIONQ_ACK_TIMEOUT_SECONDS: "2" }));
    const sameAddress = serverEnv(url, schema, { ACTIONQ_LISTEN: server.address, ACTIONQ_ACK_TIMEOUT_SECONDS: "2" });
    const proxy = await TcpProxy.start(server.port);
    scenario.atEnd(() => proxy.close());
    const producer = new GrpcClient(server.address);
    scenario.atEnd(async () => producer.close());

    const worker = crew.add({
      name: "behind-proxy",
      addresses: [proxy.address],
      actionTypes: ["handoff_kill"],
      maxInFlight: 1,
      leaseSeconds: 60,
      workMs: 20,
      keepaliveMs: 500,
      silenceMs: 2000,
    });
    const keys: string[] = [];
    const rounds = 3;
    await until("the worker's stream", () => proxy.openConnections > 0 && worker.stats.streams >= 1, 20_000);
    for (let round = 1; round <= rounds; round++) {
      // The worker's stream is open (it delivered the last round's action)
      // and, its slot free again, waiting for work.
      await sleep(700);
      proxy.blackhole();
      const key = `handoff-kill-${round}`;
      keys.push(key);
      const { action } = await producer.unary<Enqueued>("EnqueueAction", {
        actionType: "handoff_kill",
        createdBy: "human:faults",
        idempotencyKey: key,
      });
      // Committed already claimed for the silent stream: the push is lost.
      expect(action).toMatchObject({ status: "ACTION_STATUS_CLAIMED", claimedBy: "behind-proxy" });
      server.kill9();
      expect((await server.exitWithin(5000)).signal).toBe("SIGKILL");
      server = await scenario.server(`server-${round}`, sameAddress);
      await waitForAll(db, round, 30_000);
    }

    const report = await verify(db, { keys, records: crew.records });
    const { rows } = await db.query<{ id: string; events: string }>(`
      SELECT a.id::text, string_agg(e.event_type
          || CASE WHEN e.payload->>'handed_off' = 'true' THEN ':handed_off' ELSE '' END
          || CASE WHEN e.event_type = 'claim_released' THEN ':' || (e.payload->>'reason') ELSE '' END, ',' ORDER BY e.id) AS events
      FROM actions a JOIN events e ON e.action_id = a.id GROUP BY a.id ORDER BY a.id`);
    scenario.summarize(report, `rounds=${rounds} histories=${JSON.stringify(rows.map((row) => row.events))}`);
    expect(report.problems).toEqual([]);
    expect(report.completed).toBe(rounds);
    for (const row of rows) {
      expect(row.events).toBe("action_enqueued,action_approved,action_claimed:handed_off,claim_released:ack_timeout,action_claimed,action_completed");
    }
    // The worker ran each action once, under its second claim.
    const starts = crew.records.filter((record) => record.ev === "start");
    expect(starts.map((record) => record.attempt)).toEqual(Array(rounds).fill(2));
  });
});
