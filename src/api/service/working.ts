// Workers take and finish work: claim (one call, or a stream the
// dispatcher feeds), acknowledge, extend, complete, fail; and the sweep an
// operator can run by hand.
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { DrainCause } from "../../../gen/actionq/v1/action_queue_service_pb.js";
import { ActionqError, invalidField } from "../../errors.js";
import type { ClaimSession } from "../../dispatch/claims.js";
import { attempt, must, only, perItem, withItemField } from "../batch-results.js";
import { actionToWire, claimToWire } from "../convert.js";
import * as check from "../validate.js";
import type { Handlers, Kit } from "./kit.js";

export function working(
  kit: Kit,
): Handlers<"claimAction" | "streamClaims" | "ackClaim" | "extendClaim" | "completeAction" | "completeActions" | "failAction" | "sweepClaims"> {
  const { deps, bound, accessOf } = kit;
  const { config, actions, dispatcher } = deps;
  return {
    async claimAction(req, ctx) {
      const access = accessOf(ctx);
      const worker = access.identity("worker", req.worker);
      const filter = access.narrow({ actionTypes: check.nameList("action_types", req.actionTypes), projects: check.nameList("projects", req.projects) });
      const leaseMs = check.lease("lease_duration", req.leaseDuration, config.leaseMs, config.maxLeaseMs)!;
      const [row] = await actions.claim(filter, [{ session: null, worker, leaseMs }]);
      return row ? { claim: claimToWire(row) } : {};
    },
    async *streamClaims(req, ctx) {
      const access = accessOf(ctx);
      const worker = access.identity("worker", req.worker);
      const filter = access.narrow({ actionTypes: check.nameList("action_types", req.actionTypes), projects: check.nameList("projects", req.projects) });
      const holding = check.heldClaims("holding", req.holding, config.maxInFlight);
      const refused = (await access.holderErrors(holding)).find((error) => error !== undefined);
      if (refused) throw refused;
      const maxInFlight = check.count("max_in_flight", req.maxInFlight, 1, config.maxInFlight, "ACTIONQ_MAX_IN_FLIGHT");
      const leaseMs = check.lease("lease_duration", req.leaseDuration, config.leaseMs, config.maxLeaseMs)!;
      const maxBatch = check.count("max_batch", req.maxBatch, 0, config.maxInFlight, "ACTIONQ_MAX_IN_FLIGHT");
      const release = deps.openStreams.take("claim", access.caller.limitKey, config.limits.streamsPerPrincipal, "ACTIONQ_MAX_STREAMS_PER_PRINCIPAL");
      let session: ClaimSession;
      try {
        session = dispatcher.open({ worker, filter, maxInFlight, leaseMs, holding, maxBatch });
      } catch (error) {
        release();
        throw error;
      }
      const opened = session;
      // A client that resets the stream while the server waits to write to
      // it may never see the generator resumed: let go of the stream from
      // the abort itself, not only from `finally`.
      const onAbort = () => {
        release();
        void dispatcher.close(opened, "stream_closed");
      };
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      try {
        // Tell the worker at once that the stream is established.
        yield { kind: { case: "heartbeat", value: { serverTime: timestampNow() } } };
        for await (const message of session.messages(ctx.signal)) {
          switch (message.kind) {
            case "claim":
              yield { kind: { case: "claim", value: claimToWire(message.action) } };
              break;
            case "claims":
              yield { kind: { case: "claims", value: { claims: message.actions.map(claimToWire) } } };
              break;
            case "heartbeat":
              yield { kind: { case: "heartbeat", value: { serverTime: timestampNow() } } };
              break;
            case "drain":
              yield {
                kind: { case: "drain", value: { reason: message.reason, cause: message.cause === "shutdown" ? DrainCause.SHUTDOWN : DrainCause.MAX_AGE } },
              };
              break;
          }
        }
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
        release();
        await dispatcher.close(session, ctx.signal.aborted ? "stream_closed" : "stream_ended");
      }
    },
    async ackClaim(req, ctx) {
      const id = check.id("id", req.id);
      const token = check.claimToken("claim_token", req.claimToken);
      await accessOf(ctx).requireHolder(id, token);
      const outcome = must(await actions.one.ack({ id, token }));
      return { action: actionToWire(outcome.action) };
    },
    async extendClaim(req, ctx) {
      const id = check.id("id", req.id);
      const token = check.claimToken("claim_token", req.claimToken);
      const leaseMs = check.lease("lease_duration", req.leaseDuration, null, config.maxLeaseMs);
      await accessOf(ctx).requireHolder(id, token);
      const outcome = only(await actions.extendMany([{ id, token, leaseMs }]));
      const action = actionToWire(outcome.action);
      return { claimDeadline: action.claimDeadline, action };
    },
    async completeAction(req, ctx) {
      const id = check.id("id", req.id);
      const token = check.claimToken("claim_token", req.claimToken);
      const resultRef = bound.ref("result_ref", req.resultRef);
      await accessOf(ctx).requireHolder(id, token);
      const outcome = must(await actions.one.complete({ id, token, resultRef }));
      return { action: actionToWire(outcome.action) };
    },
    async completeActions(req, ctx) {
      const items = bound.batch("requests", req.requests).map((one, index) =>
        attempt(`requests[${index}]`, () => ({
          id: check.id("id", one.id),
          token: check.claimToken("claim_token", one.claimToken),
          resultRef: bound.ref("result_ref", one.resultRef),
        })),
      );
      const wellFormed = items.flatMap((item, index) => (item instanceof ActionqError ? [] : [{ index, item }]));
      const notHeld = await accessOf(ctx).holderErrors(wellFormed.map(({ item }) => item));
      wellFormed.forEach(({ index }, n) => {
        const error = notHeld[n];
        if (error) items[index] = withItemField(error, `requests[${index}]`);
      });
      return {
        results: await perItem(
          items,
          (valid) => actions.completeMany(valid),
          (_item, outcome) => ({
            result: { case: "action" as const, value: actionToWire(outcome.action) },
          }),
        ),
      };
    },
    async failAction(req, ctx) {
      const id = check.id("id", req.id);
      if (!req.retryable && req.retryDelay !== undefined) throw invalidField("retry_delay", "needs retryable");
      const token = check.claimToken("claim_token", req.claimToken);
      const reason = bound.text("reason", req.reason, true);
      const delayMs = check.delay("retry_delay", req.retryDelay, config.retryBackoffMaxMs);
      await accessOf(ctx).requireHolder(id, token);
      const outcome = must(await actions.one.fail({ id, token, reason, retryable: req.retryable, delayMs }));
      return { action: actionToWire(outcome.action) };
    },
    async sweepClaims(req, ctx) {
      const access = accessOf(ctx);
      const actor = access.principal || req.actor !== "" ? access.identity("actor", req.actor) : "server:sweeper";
      access.requireUnscoped("sweep every claim");
      const { expired, requeued } = await actions.sweep(actor);
      return { requeuedActions: requeued.map(actionToWire), expiredActions: expired.map(actionToWire) };
    },
  };
}
