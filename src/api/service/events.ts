// The event log: read a page, watch it live from a cursor, or append a
// worker's progress or a coordinator's own event.
import { timestampNow } from "@bufbuild/protobuf/wkt";
import type { HandlerContext } from "@connectrpc/connect";
import type { Access } from "../../auth/access.js";
import { COORDINATOR_EVENT_TYPES, EVENT_TYPES } from "../../domain/vocabulary.js";
import { ActionqError, invalidField } from "../../errors.js";
import { eventToWire, sharedWatchBatchResponse, sharedWatchResponse, watchBatchResponse } from "../convert.js";
import * as check from "../validate.js";
import type { Handlers, Kit } from "./kit.js";

function eventTypes(field: string, values: string[]): string[] {
  const known = new Set<string>(EVENT_TYPES);
  values.forEach((value, index) => {
    if (!known.has(value))
      throw invalidField(`${field}[${index}]`, `unknown event type ${JSON.stringify(value.slice(0, 64))}; known: ${EVENT_TYPES.join(", ")}`);
  });
  return [...new Set(values)];
}

/** A scoped principal reads the events of one action it may see at a
 * time: the log as a whole spans every project. */
async function scopedEvents(access: Access, actionId: string | null): Promise<void> {
  if (!access.principal?.scope) return;
  if (actionId === null) access.requireUnscoped("read events without naming an action_id");
  else await access.allowExisting([actionId]);
}

function linkedSignal(ctx: HandlerContext, shutdown: AbortSignal): AbortSignal {
  return AbortSignal.any([ctx.signal, shutdown]);
}

export function events(kit: Kit): Handlers<"listEvents" | "watchEvents" | "emitEvent"> {
  const { deps, bound, accessOf } = kit;
  const { config, actions, events, hub } = deps;
  return {
    async listEvents(req, ctx) {
      const filter = { actionId: check.optionalId("action_id", req.actionId), eventTypes: eventTypes("event_types", req.eventTypes) };
      await scopedEvents(accessOf(ctx), filter.actionId);
      const limit = bound.pageSize("page_size", req.pageSize, 100);
      const afterId = check.cursor("after_id", req.afterId);
      const page = await events.list(afterId, filter, limit);
      return { events: page.events.map(eventToWire), nextAfterId: page.next };
    },
    async *watchEvents(req, ctx) {
      const access = accessOf(ctx);
      const filter = { actionId: check.optionalId("action_id", req.actionId), eventTypes: eventTypes("event_types", req.eventTypes) };
      if (req.fromNow && req.afterId !== 0n) throw invalidField("after_id", "must be 0 with from_now, which starts at the end of the log");
      // 0: one event per message, as before batches existed.
      const maxBatch = check.count("max_batch", req.maxBatch, 0, config.limits.pageSize, "ACTIONQ_MAX_PAGE_SIZE");
      await scopedEvents(access, filter.actionId);
      // From now: every event up to the horizon is settled, so starting
      // there replays nothing old and misses nothing that commits later.
      const afterId = req.fromNow ? await events.horizon() : check.cursor("after_id", req.afterId);
      const release = deps.openStreams.take("watch", access.caller.limitKey, config.limits.watchersPerPrincipal, "ACTIONQ_MAX_WATCHERS_PER_PRINCIPAL");
      ctx.signal.addEventListener("abort", release, { once: true });
      try {
        yield { kind: { case: "heartbeat", value: { serverTime: timestampNow() } }, cursor: afterId };
        for await (const item of hub.watch(afterId, filter, linkedSignal(ctx, deps.shutdown), Math.max(maxBatch, 1))) {
          if (item.kind === "heartbeat") {
            yield { kind: { case: "heartbeat", value: { serverTime: timestampNow() } }, cursor: item.cursor };
          } else if (maxBatch === 0) {
            for (const event of item.events) yield sharedWatchResponse(event);
          } else {
            yield item.live ? sharedWatchBatchResponse(item.events) : watchBatchResponse(item.events);
          }
        }
      } finally {
        ctx.signal.removeEventListener("abort", release);
        release();
      }
    },
    async emitEvent(req, ctx) {
      const access = accessOf(ctx);
      const actor = access.identity("actor", req.actor);
      const payload = bound.payload("payload", req.payload);
      if (req.eventType === "action_progress") {
        if (req.actionId === 0n) throw invalidField("action_id", "is required for action_progress");
        const id = check.id("action_id", req.actionId);
        const token = check.claimToken("claim_token", req.claimToken);
        await access.requireHolder(id, token);
        const result = await actions.progress(id, token, actor, payload);
        if (result instanceof ActionqError) throw result;
        return { event: eventToWire(result) };
      }
      if (!COORDINATOR_EVENT_TYPES.includes(req.eventType as never)) {
        throw invalidField(
          "event_type",
          `must be one of ${[...COORDINATOR_EVENT_TYPES, "action_progress"].join(", ")}; got ${JSON.stringify(req.eventType.slice(0, 64))}`,
        );
      }
      if (req.claimToken !== "") throw invalidField("claim_token", "is only for action_progress");
      const actionId = check.optionalId("action_id", req.actionId);
      if (actionId === null) access.requireUnscoped("emit events that concern no action");
      else await access.allowExisting([actionId]);
      const event = await events.append({ actionId, eventType: req.eventType, actor, payload });
      return { event: eventToWire(event) };
    },
  };
}
