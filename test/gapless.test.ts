// The event tail is gapless: while eight writers race (through the API,
// and straight into the log with transactions held open so that ids commit
// out of order, or roll back and leave a permanent hole), a slow WatchEvents
// consumer that keeps dropping its connection and resuming from its cursor,
// and a ListEvents reader following next_after_id, each see every event
// exactly once and in order: the full log as read afterwards.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, closeWithin, startTestServer } from "./support/harness.js";
import { sleep } from "./support/wait.js";

interface Seen {
  id: bigint;
  type: string;
  actionId: bigint;
}

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ ACTIONQ_HEARTBEAT_SECONDS: "0.2", ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600" });
});
afterAll(async () => {
  await closeWithin(t);
});

/** A small deterministic PRNG, so a failure can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

const WRITERS = 8;
const ROUNDS = 14;

/** One writer. Even writers go through the API (enqueue, claim, complete,
 * fail with a retry, cancel, emit); odd writers also write the log directly
 * in transactions held open for a while, some of which roll back. */
async function writer(w: number): Promise<void> {
  const rand = random(1000 + w);
  const actionType = `gapless_${w}`;
  for (let round = 0; round < ROUNDS; round++) {
    const { action } = await t.client.enqueueAction({ actionType, createdBy: `human:writer-${w}`, maxAttempts: 2, idempotencyKey: `w${w}-r${round}` });
    // A producer's retry: no new event.
    if (rand() < 0.3) await t.client.enqueueAction({ actionType, createdBy: `human:writer-${w}`, maxAttempts: 2, idempotencyKey: `w${w}-r${round}` });
    const roll = rand();
    if (roll < 0.15) {
      await t.client.cancelAction({ id: action!.id, actor: `human:writer-${w}`, reason: "changed my mind" });
    } else {
      const { claim } = await t.client.claimAction({ worker: `writer-${w}`, actionTypes: [actionType] });
      if (!claim?.action) throw new Error(`writer ${w} found nothing to claim`);
      if (roll < 0.4) {
        await t.client.failAction({
          id: claim.action.id,
          claimToken: claim.claimToken,
          reason: "flaky",
          retryable: true,
          retryDelay: { seconds: 0n, nanos: 0 },
        });
        // Claim the retry once it is promoted, and finish it.
        for (let tries = 0; ; tries++) {
          const { claim: again } = await t.client.claimAction({ worker: `writer-${w}`, actionTypes: [actionType] });
          if (again?.action) {
            await t.client.completeAction({ id: again.action.id, claimToken: again.claimToken, resultRef: `r-${w}-${round}-2` });
            break;
          }
          if (tries > 200) throw new Error(`writer ${w}: the retry never came back`);
          await sleep(10);
        }
      } else {
        await t.client.extendClaim({ id: claim.action.id, claimToken: claim.claimToken });
        await t.client.completeAction({ id: claim.action.id, claimToken: claim.claimToken, resultRef: `r-${w}-${round}` });
      }
    }
    await t.client.emitEvent({ eventType: "coordinator_cycle", actor: `dispatcher:${w}`, payload: { writer: w, round } });
    if (w % 2 === 1) {
      // An id drawn now and committed late, after larger ids committed.
      const client = await t.db.connect();
      try {
        await client.query("BEGIN");
        const events = 1 + Math.floor(rand() * 3);
        for (let i = 0; i < events; i++) {
          await client.query("INSERT INTO events (action_id, event_type, actor, payload) VALUES (NULL, 'coordinator_cycle', $1, $2)", [
            `slow:${w}`,
            JSON.stringify({ round, i }),
          ]);
        }
        await sleep(20 + Math.floor(rand() * 150));
        await client.query(rand() < 0.2 ? "ROLLBACK" : "COMMIT");
      } finally {
        client.release();
      }
    }
  }
}

describe("the event tail under eight concurrent writers", () => {
  it("a slow WatchEvents consumer that reconnects, and a ListEvents reader, each see every event exactly once, in order", { timeout: 90_000 }, async () => {
    let target: bigint | undefined;
    const rand = random(7);

    // The watcher: slow, drops its stream every few events, resumes from the
    // cursor of the last message it got (an event's or a heartbeat's).
    const watched: Seen[] = [];
    const cursors: bigint[] = [];
    let watchCursor = 0n;
    let reconnects = 0;
    const watcher = (async () => {
      while (target === undefined || watchCursor < target) {
        const abort = new AbortController();
        const dropAfter = 5 + Math.floor(rand() * 60);
        let count = 0;
        try {
          for await (const message of t.client.watchEvents({ afterId: watchCursor }, { signal: abort.signal })) {
            if (message.kind.case === "event") {
              const event = message.kind.value;
              watched.push({ id: event.id, type: event.eventType, actionId: event.actionId });
              count++;
              if (rand() < 0.3) await sleep(1 + Math.floor(rand() * 8));
            }
            cursors.push(message.cursor);
            watchCursor = message.cursor;
            if (target !== undefined && watchCursor >= target) break;
            if (count >= dropAfter) {
              reconnects++;
              abort.abort();
              break;
            }
          }
        } catch (error) {
          if (!abort.signal.aborted) throw error;
        }
        if (target === undefined && count === 0) await sleep(20);
      }
    })();

    // The reader: pages of random size, at its own pace.
    const listed: Seen[] = [];
    let listCursor = 0n;
    let pages = 0;
    const reader = (async () => {
      while (target === undefined || listCursor < target) {
        const res = await t.client.listEvents({ afterId: listCursor, pageSize: 1 + Math.floor(rand() * 40) });
        pages++;
        for (const event of res.events) listed.push({ id: event.id, type: event.eventType, actionId: event.actionId });
        expect(res.nextAfterId).toBeGreaterThanOrEqual(listCursor);
        listCursor = res.nextAfterId;
        await sleep(res.events.length === 0 ? 20 : Math.floor(rand() * 10));
      }
    })();

    const started = Date.now();
    await Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));
    const { rows } = await t.db.query<{ id: string; event_type: string; action_id: string | null }>(
      "SELECT e.id::text AS id, e.event_type, e.action_id::text AS action_id FROM events e ORDER BY e.id",
    );
    const log: Seen[] = rows.map((row) => ({ id: BigInt(row.id), type: row.event_type, actionId: BigInt(row.action_id ?? 0) }));
    target = log.at(-1)!.id;
    const bound = (work: Promise<void>, what: string, cursor: () => bigint) =>
      Promise.race([
        work,
        sleep(45_000).then(() => {
          throw new Error(`${what} did not reach event ${target} in 45 s; it is at ${cursor()}`);
        }),
      ]);
    await Promise.all([bound(watcher, "the watcher", () => watchCursor), bound(reader, "the reader", () => listCursor)]);

    // Permanent holes from rolled-back writers exist; the readers must not
    // wait on them for ever, nor invent events to fill them.
    const holes = Number(target) - log.length;
    expect(holes).toBeGreaterThan(0);
    expect(reconnects).toBeGreaterThanOrEqual(3);
    expect(watched).toEqual(log);
    expect(listed).toEqual(log);
    for (let i = 1; i < cursors.length; i++)
      if (cursors[i]! < cursors[i - 1]!) expect.fail(`the watch cursor went back from ${cursors[i - 1]} to ${cursors[i]}`);
    console.log(
      `gapless: ${log.length} events from ${WRITERS} writers in ${Date.now() - started} ms, ${holes} permanent holes; ` +
        `watcher reconnected ${reconnects} times, reader read ${pages} pages; both saw every event once, in order`,
    );
  });
});
