// `actionctl events`: the event log, paged (ListEvents) or followed live
// (WatchEvents) like `tail -f`: from now unless --after says where, through
// server restarts and network drops, until a signal.
import { type CallOptions, type Client, Code, ConnectError } from "@connectrpc/connect";
import { type Event, EventSchema } from "../../gen/actionq/v1/action_pb.js";
import type { ActionQueueService } from "../../gen/actionq/v1/action_queue_service_pb.js";
import { stopOnSignals } from "./signals.js";
import { EXIT } from "./errors.js";
import { type Reconnecting, followWatch } from "./watch-follow.js";
import { type OutputMode, messageJson, printLine, printText } from "./output.js";
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

/** Prints events as WatchEvents delivers them, from now (or after --after),
 * and resumes from the last cursor whenever the stream breaks, waiting
 * 0.5 s, 1 s, 2 s... up to 10 s between attempts. Ends with exit code 0 on
 * SIGTERM or after --limit events, 130 on SIGINT; throws on an error that
 * reconnecting cannot cure (errors.ts `lasting`). */
export async function followEvents(actionq: ActionQueueClient, o: EventsOptions, mode: OutputMode, settings: Reconnecting): Promise<number> {
  const stop = stopOnSignals();
  const print = eventPrinter(mode);
  // undefined until the server says where the stream starts (from_now).
  let cursor: bigint | undefined = o.after;
  let printed = 0;
  try {
    const limited = await followWatch(actionq, {
      ...settings,
      signal: stop.signal,
      // Batches: a follower that is behind (--after 0) catches up in fewer
      // messages; it still prints one line per event.
      request: () => ({ ...(cursor === undefined ? { fromNow: true } : { afterId: cursor }), actionId: o.action, eventTypes: o.type, maxBatch: o.pageSize }),
      position: () => (cursor === undefined ? "from now" : `after event ${cursor}`),
      async onMessage(events, messageCursor) {
        for (const event of events) {
          await print(event);
          if (o.limit !== undefined && ++printed >= o.limit) return true;
        }
        // A heartbeat's cursor may be past the last event the filters let through.
        if (messageCursor > (cursor ?? 0n)) cursor = messageCursor;
        return false;
      },
    });
    return limited ? EXIT.ok : stop.exitCode();
  } finally {
    stop.dispose();
  }
}
