// `actionctl events --follow` as a tail: from now by default, the whole log
// with --after 0, and through network drops and a server restart on the
// same port and schema with no gap and no repeat (the printed event ids are
// exactly the log's), until a signal.
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ActionQueueService } from "../gen/actionq/v1/action_queue_service_pb.js";
import { actionctlAt, killChildren, startActionctl } from "./support/actionctl.js";
import { type TestServer, restartServer, startTestServer } from "./support/harness.js";
import { TcpProxy } from "./support/tcp-proxy.js";
import { eventually } from "./support/wait.js";

type ActionQueueClient = Client<typeof ActionQueueService>;

/** The ids of the events after `after`, as the database has them. */
async function logIds(db: TestServer["db"], after: string): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>("SELECT e.id::text AS id FROM events e WHERE e.id > $1 ORDER BY e.id", [after]);
  return rows.map((row) => row.id);
}

async function latestId(db: TestServer["db"]): Promise<string> {
  const { rows } = await db.query<{ id: string }>("SELECT coalesce(max(id), 0)::text AS id FROM events");
  return rows[0]!.id;
}

function emit(client: ActionQueueClient, n: number) {
  return client.emitEvent({ eventType: "coordinator_cycle", actor: "test:writer", payload: { n } }, { timeoutMs: 5_000 });
}

/** Writes an event every `everyMs` to `address`, shrugging off the
 * failures of a server that is down (with a new connection after each),
 * until stopped. */
function keepWriting(address: string, everyMs: number): { stop(): Promise<number> } {
  const connect = () => createClient(ActionQueueService, createGrpcTransport({ baseUrl: `http://${address}` }));
  let client = connect();
  let written = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      await emit(client, written).then(
        () => written++,
        () => {
          client = connect();
        },
      );
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return written;
    },
  };
}

describe("actionctl events --follow", () => {
  let t: TestServer;
  const { ok, followed } = actionctlAt(() => t.address);

  beforeAll(async () => {
    t = await startTestServer();
  });
  afterEach(killChildren);
  afterAll(async () => {
    await t?.close();
  });

  it("starts from now by default: nothing already in the log is printed, what is committed next is", async () => {
    await ok(["add", "--type", "follow_now", "--created-by", "human:t"]);
    const before = await latestId(t.db);
    const follow = startActionctl(["events", "--follow"], { ACTIONQ_ADDR: t.address });
    // Write until the follower prints: the events written before its
    // stream opened are, rightly, not printed.
    let n = 0;
    await eventually(
      async () => {
        await emit(t.client, n++);
        return follow.lines().length > 0;
      },
      "a followed event",
      15_000,
      200,
    );
    const printed = follow.lines().map((event) => event.id as string);
    expect(BigInt(printed[0]!)).toBeGreaterThan(BigInt(before));
    // From its first event on, every later event and nothing else.
    const log = await logIds(t.db, before);
    expect(printed).toEqual(log.slice(log.indexOf(printed[0]!), log.indexOf(printed[0]!) + printed.length));

    follow.child.kill("SIGINT");
    expect(await follow.exited).toEqual({ code: 130, signal: null });
    expect(follow.stderr()).toBe("");
  });

  it("--after 0 prints the whole log, then follows it; SIGTERM ends it with 0", async () => {
    await ok(["add", "--type", "follow_all", "--created-by", "human:t"]);
    const log = await logIds(t.db, "0");
    const follow = startActionctl(["events", "--follow", "--after", "0"], { ACTIONQ_ADDR: t.address });
    await followed(follow, log.length, "the whole log");
    const live = await emit(t.client, 1);
    const lines = await followed(follow, log.length + 1, "the live event");
    expect(lines.map((event) => event.id)).toEqual([...log, `${live.event!.id}`]);
    follow.child.kill("SIGTERM");
    expect(await follow.exited).toEqual({ code: 0, signal: null });
  });

  it("resumes from its cursor when the network drops the stream, with no gap and no repeat", async () => {
    // The proxy closes any connection quiet for 300 ms: between writes, so
    // the follower loses its stream again and again.
    const proxy = await TcpProxy.start(t.server.port, { idleTimeoutMs: 300, idleAction: "close" });
    try {
      const before = await latestId(t.db);
      const follow = startActionctl(["events", "--follow", "--after", before], { ACTIONQ_ADDR: proxy.address });
      // Connected before the writes, so that the drops fall between them.
      await eventually(() => proxy.stats.accepted > 0, "the follower's connection", 15_000);
      for (let i = 0; i < 6; i++) {
        await emit(t.client, i);
        await emit(t.client, i);
        await new Promise((resolve) => setTimeout(resolve, 700));
      }
      const log = await logIds(t.db, before);
      const lines = await followed(follow, log.length, "every event written");
      expect(
        lines.map((event) => event.id),
        follow.stderr(),
      ).toEqual(log);
      expect(proxy.stats.idleClosed, JSON.stringify(proxy.stats)).toBeGreaterThanOrEqual(2);
      expect(follow.stderr()).toMatch(
        new RegExp(`^actionctl: event stream from ${proxy.address} broke \\(.+\\); reconnecting in [\\d.]+ s, after event \\d+$`, "m"),
      );
      follow.child.kill("SIGTERM");
      expect((await follow.exited).code).toBe(0);
    } finally {
      await proxy.close();
    }
  });

  it("resumes across a server restart on the same port and schema while events are written, with no gap and no repeat", async () => {
    const first = await startTestServer();
    const port = first.server.port;
    const address = first.address;
    let second: TestServer | undefined;
    try {
      const before = await latestId(first.db);
      const follow = startActionctl(["events", "--follow", "--after", before], { ACTIONQ_ADDR: address });
      const writer = keepWriting(address, 40);
      await eventually(() => follow.lines().length >= 5, "events before the restart", 20_000);

      // Down, then up again on the same port and schema, the writer going on.
      second = await restartServer(first, {}, 500);
      expect(second.server.port).toBe(port);
      const atRestart = (await logIds(second.db, before)).length;
      await eventually(async () => (await logIds(second!.db, before)).length >= atRestart + 10, "events after the restart", 30_000);
      const written = await writer.stop();
      expect(written).toBeGreaterThan(10);

      const log = await logIds(second.db, before);
      const lines = await followed(follow, log.length, "every event written, across the restart", 30_000);
      const ids = lines.map((event) => event.id as string);
      expect(new Set(ids).size, "no repeat").toBe(ids.length);
      expect(ids, "no gap").toEqual(log);
      expect(follow.stderr()).toMatch(/reconnecting in [\d.]+ s, after event \d+/);

      follow.child.kill("SIGINT");
      expect((await follow.exited).code).toBe(130);
    } finally {
      await (second ?? first).close();
    }
  }, 120_000);
});
