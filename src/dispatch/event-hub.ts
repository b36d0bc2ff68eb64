// The live tail of the event log for every WatchEvents stream of this
// process: one reader follows the log and fans events out, so a thousand
// watchers cost one query per wakeup, not a thousand.
//
// The reader never skips an event that commits late. It delivers a run of
// consecutive ids at once; at a gap it asks the database for the horizon
// (the id up to which every event is settled, see event_horizon()) and
// re-reads, so a gap is either filled or known to be permanent before the
// cursor moves past it.
import type { Logger } from "pino";
import type { EventFilter, EventStore } from "../store/events.js";
import type { EventRow } from "../store/rows.js";
import { RepeatedWarning } from "./repeated-warning.js";

const READ_BATCH = 1000;
/** Events a watcher may have queued before it must catch up from the
 * database instead. */
const MAX_QUEUED = 10_000;
const REPLAY_PAGE = 500;

/** `events` are consecutive matching events, at most the watcher's batch
 * size. `live` ones are the very rows every watcher of the tail is handed;
 * replayed ones were read for this watcher alone. */
export type WatchItem = { kind: "events"; events: EventRow[]; live: boolean } | { kind: "heartbeat"; cursor: bigint };

class Subscriber {
  readonly queue: EventRow[] = [];
  /** Every event up to here has been offered to this subscriber. */
  position: bigint;
  overflowed = false;
  closed = false;
  private wake: (() => void) | undefined;

  constructor(
    readonly filter: EventFilter,
    readonly startPosition: bigint,
  ) {
    this.position = startPosition;
  }

  matches(event: EventRow): boolean {
    if (this.filter.actionId !== null && event.action_id !== this.filter.actionId) return false;
    if (this.filter.eventTypes.length > 0 && !this.filter.eventTypes.includes(event.event_type)) return false;
    return true;
  }

  offer(events: EventRow[], position: bigint): void {
    if (this.overflowed || this.closed) return;
    for (const event of events) if (this.matches(event)) this.queue.push(event);
    this.position = position;
    if (this.queue.length > MAX_QUEUED) this.overflowed = true;
    this.signal();
  }

  signal(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** Waits until something is queued, the timeout passes, or the
   * subscriber is closed. */
  async wait(timeoutMs: number, abort: AbortSignal): Promise<void> {
    if (this.queue.length > 0 || this.overflowed || this.closed || abort.aborted) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      const onAbort = () => done();
      abort.addEventListener("abort", onAbort, { once: true });
      function done() {
        clearTimeout(timer);
        abort.removeEventListener("abort", onAbort);
        resolve();
      }
      this.wake = done;
    });
  }
}

export class EventHub {
  /** The reader's cursor; undefined while nobody watches. */
  private position: bigint | undefined;
  private starting: Promise<bigint> | undefined;
  /** Every id up to here is settled (committed or never to be). */
  private settled = 0n;
  private readonly subscribers = new Set<Subscriber>();
  private running = false;
  private dirty = false;
  private stopped = false;
  private pollTimer: NodeJS.Timeout | undefined;
  private readonly readFailed: RepeatedWarning;

  constructor(
    private readonly events: EventStore,
    private readonly settings: { heartbeatMs: number; pollIntervalMs: number },
    private readonly log: Logger,
  ) {
    this.readFailed = new RepeatedWarning(log, "reading the event log failed; will retry on the next wakeup");
  }

  /** The backstop poll, for a NOTIFY that never came. */
  start(): void {
    this.pollTimer = setInterval(() => this.poke(), this.settings.pollIntervalMs);
    this.pollTimer.unref();
  }

  get watchers(): number {
    return this.subscribers.size;
  }

  /** New events were committed (or may have been). */
  poke(): void {
    if (this.position === undefined || this.stopped) return;
    if (this.running) {
      this.dirty = true;
      return;
    }
    this.running = true;
    this.read()
      .catch((error: Error) => this.readFailed.warn({ err: error.message }))
      .finally(() => {
        this.running = false;
        if (this.dirty) {
          this.dirty = false;
          this.poke();
        }
      });
  }

  private async subscribe(filter: EventFilter): Promise<Subscriber> {
    if (this.position === undefined) {
      this.starting ??= this.events.horizon().finally(() => (this.starting = undefined));
      const horizon = await this.starting;
      if (this.position === undefined) {
        this.position = horizon;
        if (horizon > this.settled) this.settled = horizon;
        // Events may have been notified while nobody was following.
        this.poke();
      }
    }
    const subscriber = new Subscriber(filter, this.position);
    this.subscribers.add(subscriber);
    return subscriber;
  }

  private unsubscribe(subscriber: Subscriber): void {
    subscriber.closed = true;
    subscriber.signal();
    this.subscribers.delete(subscriber);
    // Nobody listens: stop following the log; the next watcher starts anew
    // from the horizon.
    if (this.subscribers.size === 0) this.position = undefined;
  }

  private async read(): Promise<void> {
    while (!this.stopped && this.position !== undefined) {
      const from = this.position;
      const rows = await this.events.readAfter(from, READ_BATCH);
      if (this.position !== from) return; // restarted meanwhile
      const deliver: EventRow[] = [];
      let cursor = from;
      for (const row of rows) {
        const id = BigInt(row.id);
        if (id !== cursor + 1n && id > this.settled) break;
        deliver.push(row);
        cursor = id;
      }
      const gap = deliver.length < rows.length;
      // Read to the end with no gap: ids up to the horizon that are still
      // missing will never appear.
      if (!gap && rows.length < READ_BATCH && this.settled > cursor) cursor = this.settled;
      if (cursor > from) this.publish(deliver, cursor);
      if (gap) {
        const horizon = await this.events.horizon();
        if (horizon > this.settled) this.settled = horizon;
        continue;
      }
      if (rows.length === READ_BATCH) continue;
      return;
    }
  }

  private publish(events: EventRow[], position: bigint): void {
    this.position = position;
    for (const subscriber of this.subscribers) {
      subscriber.offer(events, position);
      if (subscriber.overflowed) this.subscribers.delete(subscriber);
    }
  }

  /** Events after `afterId` that match the filter: first those already in
   * the log, then live ones, without a gap or a repeat at the seam. Yields
   * heartbeats when quiet. Ends when `abort` fires or the hub stops.
   *
   * Each item carries up to `maxBatch` events, but only events already
   * waiting (a replayed page, or what queued while the watcher was
   * writing): a caught-up watcher gets each new event alone, at once. */
  async *watch(afterId: bigint, filter: EventFilter, abort: AbortSignal, maxBatch = 1): AsyncGenerator<WatchItem> {
    const replayPage = Math.max(REPLAY_PAGE, maxBatch);
    let cursor = afterId;
    let current: Subscriber | undefined;
    // A client gone while the server waits to write to it may never resume
    // this generator: drop its subscription from the abort itself.
    const onAbort = () => current && this.unsubscribe(current);
    abort.addEventListener("abort", onAbort, { once: true });
    try {
      while (!abort.aborted && !this.stopped) {
        const subscriber = await this.subscribe(filter);
        current = subscriber;
        try {
          // Replay what the hub had passed before we joined. Everything up to
          // its position is settled, so the database answers it exactly.
          while (cursor < subscriber.startPosition && !abort.aborted) {
            const page = await this.events.list(cursor, filter, replayPage, subscriber.startPosition);
            for (let start = 0; start < page.events.length; start += maxBatch) {
              yield { kind: "events", events: page.events.slice(start, start + maxBatch), live: false };
            }
            cursor = page.next;
          }
          let quietSince = Date.now();
          while (!abort.aborted && !this.stopped) {
            if (subscriber.queue.length > 0) {
              // A cursor beyond the hub's start (a client ahead of us) skips
              // what it has seen.
              const taken = subscriber.queue.splice(0, maxBatch);
              const events = BigInt(taken[0]!.id) > cursor ? taken : taken.filter((event) => BigInt(event.id) > cursor);
              if (events.length > 0) {
                cursor = BigInt(events[events.length - 1]!.id);
                yield { kind: "events", events, live: true };
                quietSince = Date.now();
              }
              continue;
            }
            if (subscriber.overflowed || subscriber.closed) break;
            const idle = Date.now() - quietSince;
            if (idle >= this.settings.heartbeatMs) {
              if (subscriber.position > cursor) cursor = subscriber.position;
              yield { kind: "heartbeat", cursor };
              quietSince = Date.now();
              continue;
            }
            await subscriber.wait(this.settings.heartbeatMs - idle, abort);
          }
          // Fell too far behind: catch up from the database, then rejoin.
          if (subscriber.overflowed) this.log.debug({ cursor: cursor.toString() }, "watcher fell behind; replaying from the log");
        } finally {
          this.unsubscribe(subscriber);
          current = undefined;
        }
      }
    } finally {
      abort.removeEventListener("abort", onAbort);
    }
  }

  shutdown(): void {
    this.stopped = true;
    clearInterval(this.pollTimer);
    for (const subscriber of this.subscribers) {
      subscriber.closed = true;
      subscriber.signal();
    }
  }
}
