// Small helpers for tests of the streaming RPCs: an inbox that records what a
// server stream delivered and waits (always with a bound) for what should
// come next, and wrappers for grpc-js and Connect streams. The messages'
// types are wire.ts's.
import type * as grpc from "@grpc/grpc-js";
import type pg from "pg";
import { afterEach } from "vitest";
import type { TestServer } from "./harness.js";
import { eventually } from "./wait.js";
import { type WireClaim, type WireEvent, type WireTimestamp, enqueue } from "./wire.js";

/** How long a wait for a message lasts unless the test says otherwise. */
const DEFAULT_WAIT_MS = 15_000;

/** StreamClaimsResponse with `oneofs: true`: `kind` names the field set. */
export type ClaimStreamMessage =
  | { kind: "claim"; claim: WireClaim }
  | { kind: "heartbeat"; heartbeat: { serverTime: WireTimestamp } }
  | { kind: "drain"; drain: { reason: string } };

export type WatchStreamMessage =
  | { kind: "event"; event: WireEvent; cursor: string }
  | { kind: "heartbeat"; heartbeat: { serverTime: WireTimestamp }; cursor: string };

/** What one server stream delivered, in order, and how it ended. */
export class Inbox<T> {
  readonly received: T[] = [];
  /** Set once the stream is over; `error` is why, when it failed. */
  done = false;
  error: unknown;
  private readonly waiters = new Set<() => void>();

  push(message: T): void {
    this.received.push(message);
    this.notify();
  }

  finish(error?: unknown): void {
    if (this.done) return;
    this.done = true;
    this.error = error;
    this.notify();
  }

  /** Waits until `condition` holds; fails after `timeoutMs`, or at once if the
   * stream ends first. The default is generous: waiting longer costs nothing
   * when the message comes, and a loaded CI machine may be slow to send it. */
  async until(what: string | (() => string), condition: () => boolean, timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    if (condition()) return;
    const describeWait = () => (typeof what === "string" ? what : what());
    await new Promise<void>((resolve, reject) => {
      const check = () => {
        if (condition()) settle(resolve);
        else if (this.done) settle(() => reject(new Error(`the stream ended (${describe(this.error)}) before ${describeWait()}`)));
      };
      const timer = setTimeout(() => settle(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${describeWait()}`))), timeoutMs);
      const settle = (then: () => void) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        then();
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Waits until at least `count` received messages match. */
  async atLeast(count: number, match: (message: T) => boolean, what: string, timeoutMs = DEFAULT_WAIT_MS): Promise<T[]> {
    const matching = () => this.received.filter(match).length;
    await this.until(
      () => `${what} (${count} wanted, ${matching()} received)`,
      () => matching() >= count,
      timeoutMs,
    );
    return this.received.filter(match);
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}

function describe(error: unknown): string {
  if (error === undefined) return "cleanly";
  return error instanceof Error ? error.message : String(error);
}

export interface GrpcStatus {
  code: number;
  details: string;
}

/** A grpc-js server stream being recorded. */
export class GrpcStream<T> extends Inbox<T> {
  /** The final status, whichever way the call ended. */
  readonly status: Promise<GrpcStatus>;

  constructor(readonly call: grpc.ClientReadableStream<Record<string, unknown>>) {
    super();
    call.on("data", (message: Record<string, unknown>) => this.push(message as T));
    // A non-OK status also arrives as 'status'; without a listener an
    // 'error' would be thrown.
    call.on("error", () => {});
    this.status = new Promise((resolve) => {
      call.on("status", (status: grpc.StatusObject) => {
        this.finish(status.code === 0 ? undefined : new Error(`${status.code} ${status.details}`));
        resolve({ code: status.code, details: status.details });
      });
    });
  }

  /** Cancels the call (if still open) and waits for its end. */
  async cancel(): Promise<GrpcStatus> {
    this.call.cancel();
    return this.status;
  }
}

export function openClaimStream(t: TestServer, request: Record<string, unknown>): GrpcStream<ClaimStreamMessage> {
  return new GrpcStream<ClaimStreamMessage>(t.grpc.stream("StreamClaims", request));
}

export function openWatch(t: TestServer, request: Record<string, unknown>): GrpcStream<WatchStreamMessage> {
  return new GrpcStream<WatchStreamMessage>(t.grpc.stream("WatchEvents", request));
}

export function claimsOf(stream: Inbox<ClaimStreamMessage>): WireClaim[] {
  return stream.received.flatMap((message) => (message.kind === "claim" ? [message.claim] : []));
}

/** Until each of these workers has a claim stream on the server waiting for
 * work: room left, and nothing found when it last looked. Only such a stream
 * is handed an action at enqueue, and on a loaded machine its first look
 * takes a while. */
export const waitingFor = (t: TestServer, ...workers: string[]) =>
  eventually(() => workers.every((worker) => t.server.stats.waitingWorkers.includes(worker)), `claim streams of ${workers.join(", ")} waiting for work`);

export const isClaim = (message: ClaimStreamMessage) => message.kind === "claim";
export const isHeartbeat = (message: { kind: string }) => message.kind === "heartbeat";

/** Waits for the stream's `count`-th claim (counting from 1) and returns it. */
export async function nthClaim(stream: Inbox<ClaimStreamMessage>, count: number, timeoutMs = DEFAULT_WAIT_MS): Promise<WireClaim> {
  await stream.atLeast(count, isClaim, "claims", timeoutMs);
  return claimsOf(stream)[count - 1]!;
}

/** A Connect server stream consumed in the background until it ends or is
 * cancelled. `consume` may be slow: the stream is read one message at a
 * time, so a slow consumer pushes back on the server. */
export class ConnectStream<T> extends Inbox<T> {
  private readonly abort = new AbortController();
  readonly ended: Promise<void>;

  constructor(open: (signal: AbortSignal) => AsyncIterable<T>, consume?: (message: T) => Promise<void> | void) {
    super();
    this.ended = (async () => {
      try {
        for await (const message of open(this.abort.signal)) {
          this.push(message);
          await consume?.(message);
        }
        this.finish();
      } catch (error) {
        this.finish(error ?? new Error("stream failed"));
      }
    })();
  }

  async cancel(): Promise<void> {
    this.abort.abort();
    await this.ended;
  }
}

/** Runs `task` over `items` with at most `concurrency` at a time. */
export async function inParallel<T, R>(items: T[], concurrency: number, task: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const runners = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await task(items[index]!, index);
    }
  });
  await Promise.all(runners);
  return results;
}

/** Enqueues `count` SAFE actions (claimable at once) of one type and
 * returns their ids, in the order given unless `concurrency` is set. */
export async function enqueueMany(
  t: TestServer,
  actionType: string,
  count = 1,
  extra: { project?: string; createdBy?: string; concurrency?: number } = {},
): Promise<string[]> {
  const { concurrency = 1, ...fields } = extra;
  return inParallel(
    Array.from({ length: count }, (_, i) => i),
    concurrency,
    async () => (await enqueue(t, { actionType, ...fields })).action.id,
  );
}

/** An action's status and claim columns, straight from the database. */
export async function actionRow(
  db: pg.Pool,
  id: string,
): Promise<{ status: string; claimed_by: string | null; attempt: number; acked: boolean; claim_token: string | null }> {
  const { rows } = await db.query(
    "SELECT status, claimed_by, attempt, acked_at IS NOT NULL AS acked, claim_token::text AS claim_token FROM actions WHERE id = $1",
    [id],
  );
  if (!rows[0]) throw new Error(`action ${id} is not in the database`);
  return rows[0];
}

/** An action's events, oldest first, straight from the database. */
export async function eventsOf(db: pg.Pool, id: string): Promise<{ id: string; event_type: string; actor: string; payload: Record<string, unknown> }[]> {
  const { rows } = await db.query("SELECT e.id::text AS id, e.event_type, e.actor, e.payload FROM events e WHERE e.action_id = $1 ORDER BY e.id", [id]);
  return rows;
}

/** Every event id in the log, in order. */
export async function allEventIds(db: pg.Pool): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>("SELECT e.id::text AS id FROM events e ORDER BY e.id");
  return rows.map((row) => row.id);
}

/** How many claim streams and event watchers the server is still serving
 * (ActionqServer.stats), so that a test can prove a closed stream left
 * nothing behind. */
export function openOnServer(t: TestServer): { claimStreams: number; watchers: number } {
  const { claimStreams, watchers } = t.server.stats;
  return { claimStreams, watchers };
}

/** For a file whose tests open streams: returns `track`, and cancels every
 * stream passed to it after each test, so that a failing test leaves none
 * open on the server. */
export function cancelAfterEach(): <S extends { cancel(): Promise<unknown> }>(stream: S) => S {
  const open = new Set<{ cancel(): Promise<unknown> }>();
  afterEach(async () => {
    await Promise.all([...open].map((opened) => opened.cancel()));
    open.clear();
  });
  return (stream) => {
    open.add(stream);
    return stream;
  };
}
