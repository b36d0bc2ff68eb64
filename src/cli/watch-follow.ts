// Following WatchEvents for as long as the user wants, as `events --follow`
// and `export --follow` do: the stream is opened again from where the
// follower stands whenever it breaks, after 0.5 s, 1 s, 2 s... up to 10 s,
// with a line on stderr each time; errors that retrying cannot cure end it.
import { ConnectError } from "@connectrpc/connect";
import type { Event } from "../../gen/actionq/v1/action_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { WatchEventsRequestSchema } from "../../gen/actionq/v1/action_queue_service_pb.js";
import type { ActionQueueClient } from "./context.js";
import { type Target, lasting } from "./errors.js";
import { note } from "./output.js";

/** Waits `ms`, or less when `signal` aborts (a follower told to stop). */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/** The waits between attempts: doubling from `minMs` up to `maxMs`, and
 * back to `minMs` once an attempt gets through. */
export class Backoff {
  delayMs: number;

  constructor(
    readonly minMs = 500,
    readonly maxMs = 10_000,
  ) {
    this.delayMs = minMs;
  }

  reset(): void {
    this.delayMs = this.minMs;
  }

  async wait(signal: AbortSignal): Promise<void> {
    await sleep(this.delayMs, signal);
    this.delayMs = Math.min(this.delayMs * 2, this.maxMs);
  }
}

/** An error in one line, for the reconnect notes. */
export function problemOf(error: unknown): string {
  return ConnectError.from(error).rawMessage.replace(/\s+/g, " ").trim();
}

/** Whom a follower follows, and how it waits between attempts. */
export interface Reconnecting {
  /** Named in the reconnect lines, and asked whether an error lasts. */
  target: Target;
  /** First wait before reconnecting; it doubles up to maxDelayMs. */
  minDelayMs?: number;
  maxDelayMs?: number;
}

export interface WatchFollower extends Reconnecting {
  /** Ends the following (the user's signal). */
  signal: AbortSignal;
  /** Whether retrying cannot help; errors.ts `lasting` unless given. */
  lasting?: (error: unknown) => Promise<boolean>;
  /** The request from where the follower stands now. */
  request(): MessageInitShape<typeof WatchEventsRequestSchema>;
  /** Where that is, in words, for the reconnect line ("after event 12"). */
  position(): string;
  /** Each message's events (a batch, a bare event from a server older than
   * max_batch, or none for a heartbeat) and its cursor. true: done. */
  onMessage(events: Event[], cursor: bigint): Promise<boolean>;
}

/** Follows until `onMessage` says done (true) or the signal aborts (false);
 * throws what retrying cannot cure. */
export async function followWatch(actionq: ActionQueueClient, follower: WatchFollower): Promise<boolean> {
  const { signal } = follower;
  const isLasting = follower.lasting ?? ((error: unknown) => lasting(error, follower.target));
  const backoff = new Backoff(follower.minDelayMs, follower.maxDelayMs);
  while (!signal.aborted) {
    let problem: string;
    try {
      for await (const message of actionq.watchEvents(follower.request(), { signal })) {
        backoff.reset();
        const events = message.kind.case === "events" ? message.kind.value.events : message.kind.case === "event" ? [message.kind.value] : [];
        if (await follower.onMessage(events, message.cursor)) return true;
      }
      problem = "the server ended the stream";
    } catch (error) {
      if (signal.aborted) break;
      // A wrong request, credential or TLS setting does not heal.
      if (await isLasting(error)) throw error;
      problem = problemOf(error);
    }
    if (signal.aborted) break;
    await note(`event stream from ${follower.target.address} broke (${problem}); reconnecting in ${backoff.delayMs / 1000} s, ${follower.position()}`);
    await backoff.wait(signal);
  }
  return false;
}
