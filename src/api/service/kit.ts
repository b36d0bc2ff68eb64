// What every handler of ActionQueueService is given: the server's parts,
// the request checks bound to the configured limits, and the access checks
// of a call bound to its caller. The handlers live beside this file, one
// file per kind of user (producers, reviewers, workers, operators...).
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { ActionQueueService } from "../../../gen/actionq/v1/action_queue_service_pb.js";
import { Access } from "../../auth/access.js";
import type { Config } from "../../config.js";
import type { ClaimDispatcher } from "../../dispatch/claims.js";
import type { EventHub } from "../../dispatch/event-hub.js";
import type { WebhookBacklog } from "../../notify/notifier.js";
import type { PolicyHolder } from "../../policy/policy.js";
import type { ActionStore } from "../../store/actions.js";
import type { EventStore } from "../../store/events.js";
import type { PauseStore } from "../../store/pauses.js";
import type { ScheduleStore } from "../../store/schedules.js";
import type { TemplateActions } from "../../schedule/template.js";
import type { Ticks } from "../../schedule/ticks.js";
import type { WindowStore } from "../../store/windows.js";
import type { StreamCounter } from "../stream-counter.js";
import * as check from "../validate.js";

export interface ServiceDeps {
  config: Config;
  actions: ActionStore;
  events: EventStore;
  dispatcher: ClaimDispatcher;
  hub: EventHub;
  pauses: PauseStore;
  /** The change windows' closed intervals and what they hold. */
  windows: WindowStore;
  policy: PolicyHolder;
  schedules: ScheduleStore;
  /** Checks schedule templates and builds their actions. */
  templates: TemplateActions;
  /** Acts on schedule ticks (BackfillSchedule). */
  ticks: Ticks;
  /** Reloads the policy file; the event is written by the caller. */
  reloadPolicy: (actor: string) => Promise<{ version: string; changed: boolean }>;
  /** Where each webhook endpoint of this server's file stands. */
  webhookBacklog: () => Promise<WebhookBacklog[]>;
  /** Aborts when the server begins shutting down. */
  shutdown: AbortSignal;
  /** Open streams per principal, for the per-principal caps. */
  openStreams: StreamCounter;
}

export interface Kit {
  deps: ServiceDeps;
  /** The request checks with the configured caps. */
  bound: ReturnType<typeof check.bounded>;
  /** The access checks of one call, bound to its caller. */
  accessOf: (ctx: HandlerContext) => Access;
}

/** Some of the service's methods. */
export type Handlers<K extends keyof ServiceImpl<typeof ActionQueueService>> = Pick<ServiceImpl<typeof ActionQueueService>, K>;

export function kit(deps: ServiceDeps): Kit {
  return {
    deps,
    bound: check.bounded(deps.config.limits),
    accessOf: (ctx) => Access.of(ctx, deps.actions, check.principal),
  };
}
