// `actionctl events`: the event log, paged (ListEvents) or followed live
// (WatchEvents) like `tail -f`: from now unless --after says where, through
// server restarts and network drops, until a signal.
import { type CallOptions, type Client, Code, ConnectError } from "@connectrpc/connect";
import { type Event, EventSchema } from "../../gen/actionq/v1/action_pb.js";
import type { ActionQueueService } from "../../gen/actionq/v1/action_queue_service_pb.js";
import { stopOnSignals } from "./signals.js";
import { EXIT, type Target, lasting } from "./errors.js";
import { type OutputMode, messageJson, note, printLine, printText } from "./output.js";
import { EVENT_HEADER, eventLine } from "./views.js";

export interface EventsOptions {
  after?: bigint;
  action?: bigint;
  type?: string[];
  limit?: number;
  pageSize: number;
  follow?: boolean;
}

type ActionQueueClient = Client<typeof ActionQueueService>;

/** Prints events as the mode wants: JSON Lines in both JSON modes (the log
 * is a stream), fixed columns under one header in table mode. */
function eventPrinter(mode: OutputMode): (event: Event) => Promise<void> {
  let headed = false;
  return async (event) => {
    if (mode !== "table") return printLine(messageJson(EventSchema, event));
    const lines = [eventLine(event)];
    if (!headed) lines.unshift(EVENT_HEADER);
    headed = true;
    return printText(lines);
  };
}

/** Follows next_after_id from page to page until a page comes back empty
 * or --limit events were printed. */
export async function listEvents(actionq: ActionQueueClient, o: EventsOptions, mode: OutputMode, callOptions: CallOptions): Promise<void> {
  const print = eventPrinter(mode);
  let afterId = o.after ?? 0n;
  let printed = 0;
  while (o.limit === undefined || printed < o.limit) {
    const pageSize = o.limit === undefined ? o.pageSize : Math.min(o.pageSize, o.limit - printed);
    const page = await actionq.listEvents({ afterId, actionId: o.action, eventTypes: o.type, pageSize }, callOptions);
    if (page.events.length === 0) return;
    for (const event of page.events) await print(event);
    printed += page.events.length;
    // A cursor that does not move would page forever.
    if (page.nextAfterId <= afterId) throw new ConnectError(`next_after_id did not advance past ${afterId}`, Code.Internal);
    afterId = page.nextAfterId;
  }
}

export interface FollowSettings {
  /** Named in the reconnect lines, and asked whether an error lasts. */
  target: Target;
  /** First wait before reconnecting; it doubles up to maxDelayMs. */
  minDelayMs?: number;
  maxDelayMs?: number;
}

/** Prints events as WatchEvents delivers them, from now (or after --after),
 * and resumes from the last cursor whenever the stream breaks, waiting
 * 0.5 s, 1 s, 2 s... up to 10 s between attempts. Ends with exit code 0 on
 * SIGTERM or after --limit events, 130 on SIGINT; throws on an error that
 * reconnecting cannot cure (errors.ts `lasting`). */
export async function followEvents(actionq: ActionQueueClient, o: EventsOptions, mode: OutputMode, settings: FollowSettings): Promise<number> {
  const minDelayMs = settings.minDelayMs ?? 500;
  const maxDelayMs = settings.maxDelayMs ?? 10_000;
  const stop = stopOnSignals();
  const print = eventPrinter(mode);
  // undefined until the server says where the stream starts (from_now).
  let cursor: bigint | undefined = o.after;
  let printed = 0;
  let delayMs = minDelayMs;
  try {
    while (!stop.signal.aborted) {
      let problem: string;
      try {
        const request = cursor === undefined ? { fromNow: true } : { afterId: cursor };
        // Batches: a follower that is behind (--after 0) catches up in
        // fewer messages; it still prints one line per event.
        const stream = actionq.watchEvents({ ...request, actionId: o.action, eventTypes: o.type, maxBatch: o.pageSize }, { signal: stop.signal });
        for await (const message of stream) {
          delayMs = minDelayMs;
          // A server older than max_batch ignores it and sends bare events.
          const events = message.kind.case === "events" ? message.kind.value.events : message.kind.case === "event" ? [message.kind.value] : [];
          for (const event of events) {
            await print(event);
            if (o.limit !== undefined && ++printed >= o.limit) return EXIT.ok;
          }
          // A heartbeat's cursor may be past the last event the filters let through.
          if (message.cursor > (cursor ?? 0n)) cursor = message.cursor;
        }
        problem = "the server ended the stream";
      } catch (error) {
        if (stop.signal.aborted) break;
        // A wrong request, credential or TLS setting does not heal.
        if (await lasting(error, settings.target)) throw error;
        problem = ConnectError.from(error).rawMessage.replace(/\s+/g, " ").trim();
      }
      if (stop.signal.aborted) break;
      const from = cursor === undefined ? "from now" : `after event ${cursor}`;
      await note(`event stream from ${settings.target.address} broke (${problem}); reconnecting in ${delayMs / 1000} s, ${from}`);
      await sleep(delayMs, stop.signal);
      delayMs = Math.min(delayMs * 2, maxDelayMs);
    }
    return stop.exitCode();
  } finally {
    stop.dispose();
  }
}

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
