// `actionctl events`: the event log as JSON Lines, paged (ListEvents) or
// live (WatchEvents).
import { type CallOptions, type Client, Code, ConnectError } from "@connectrpc/connect";
import { EventSchema } from "../../gen/actionq/v1/action_pb.js";
import type { ActionQueueService } from "../../gen/actionq/v1/action_queue_service_pb.js";
import { messageJson, printLine } from "./output.js";

export interface EventsOptions {
  after?: bigint;
  action?: bigint;
  type?: string[];
  limit?: number;
  pageSize: number;
  follow?: boolean;
}

type ActionQueueClient = Client<typeof ActionQueueService>;

/** Follows next_after_id from page to page until a page comes back empty
 * or --limit events were printed. */
export async function listEvents(actionq: ActionQueueClient, o: EventsOptions, callOptions: CallOptions): Promise<void> {
  let afterId = o.after ?? 0n;
  let printed = 0;
  while (o.limit === undefined || printed < o.limit) {
    const pageSize = o.limit === undefined ? o.pageSize : Math.min(o.pageSize, o.limit - printed);
    const page = await actionq.listEvents({ afterId, actionId: o.action, eventTypes: o.type, pageSize }, callOptions);
    if (page.events.length === 0) return;
    for (const event of page.events) await printLine(messageJson(EventSchema, event));
    printed += page.events.length;
    // A cursor that does not move would page forever.
    if (page.nextAfterId <= afterId) throw new ConnectError(`next_after_id did not advance past ${afterId}`, Code.Internal);
    afterId = page.nextAfterId;
  }
}

/** Prints events as WatchEvents delivers them (the backlog after --after
 * first), until SIGINT or SIGTERM, which end it successfully, or until
 * --limit events were printed. */
export async function followEvents(actionq: ActionQueueClient, o: EventsOptions): Promise<void> {
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let printed = 0;
  try {
    const stream = actionq.watchEvents({ afterId: o.after, actionId: o.action, eventTypes: o.type }, { signal: stop.signal });
    for await (const message of stream) {
      if (message.kind.case !== "event") continue;
      await printLine(messageJson(EventSchema, message.kind.value));
      if (o.limit !== undefined && ++printed >= o.limit) return;
    }
  } catch (error) {
    if (stop.signal.aborted) return;
    throw error;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  if (stop.signal.aborted) return;
  throw new ConnectError("the server ended the event stream", Code.Unavailable);
}
