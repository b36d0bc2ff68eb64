// actionq.v1.ActionQueueService: the handlers, gathered from the files of
// src/api/service/ (one per kind of user). Handlers check the request, call
// the store, the dispatcher or a domain module, and turn rows into
// messages. No SQL, no lifecycle rules, and no after-commit effects live
// there: the store reports every commit to the dispatcher, scheduler,
// metrics and log (src/store/commits.ts).
import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import { ActionQueueService } from "../../gen/actionq/v1/action_queue_service_pb.js";
import { events } from "./service/events.js";
import { importing } from "./service/importing.js";
import { type ServiceDeps, kit } from "./service/kit.js";
import { operating } from "./service/operating.js";
import { producing } from "./service/producing.js";
import { reading } from "./service/reading.js";
import { reviewing } from "./service/reviewing.js";
import { scheduling } from "./service/scheduling.js";
import { working } from "./service/working.js";

export type { ServiceDeps } from "./service/kit.js";

export function actionQueueService(deps: ServiceDeps): ServiceImpl<typeof ActionQueueService> {
  const handlers = kit(deps);
  return {
    ...producing(handlers),
    ...importing(handlers),
    ...reading(handlers),
    ...reviewing(handlers),
    ...working(handlers),
    ...events(handlers),
    ...operating(handlers),
    ...scheduling(handlers),
  };
}

export function registerActionQueueService(router: ConnectRouter, deps: ServiceDeps): void {
  router.service(ActionQueueService, actionQueueService(deps));
}
