// The handlers of actionq.v1.ActionQueueService: check the request, call the
// store or the dispatcher, turn rows into messages. No SQL and no lifecycle
// rules live here.
import { createHash } from "node:crypto";
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { durationFromMs, timestampNow } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter, HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { Access } from "../auth/access.js";
import { ActionQueueService, DrainCause, type EnqueueActionRequest } from "../../gen/actionq/v1/action_queue_service_pb.js";
import type { Config } from "../config.js";
import type { ClaimDispatcher } from "../dispatch/claims.js";
import type { EventHub } from "../dispatch/event-hub.js";
import type { Scheduler } from "../dispatch/scheduler.js";
import { ActionqError, actionNotFound, invalidField } from "../errors.js";
import { type ProposedAction, decideApproval, resolveRisk } from "../policy/approval.js";
import type { LoadedPolicy, PolicyHolder } from "../policy/policy.js";
import type { ActionStore, NewAction, Outcome } from "../store/actions.js";
import type { EventStore } from "../store/events.js";
import type { Metrics } from "../metrics/metrics.js";
import type { PauseStore } from "../store/pauses.js";
import { COORDINATOR_EVENT_TYPES, EVENT_TYPES, type RiskLevel, type Status } from "../store/rows.js";
import {
  actionToWire,
  claimToWire,
  eventToWire,
  pauseScopeFromWire,
  sharedWatchResponse,
  pauseToWire,
  riskFromWire,
  statusFromWire,
  statusToWire,
} from "./convert.js";
import { itemError } from "./interceptors.js";
import { decodePageToken, encodePageToken } from "./page-token.js";
import * as check from "./validate.js";

export interface ServiceDeps {
  config: Config;
  actions: ActionStore;
  events: EventStore;
  dispatcher: ClaimDispatcher;
  hub: EventHub;
  pauses: PauseStore;
  metrics: Metrics;
  scheduler: Scheduler;
  policy: PolicyHolder;
  /** Reloads the policy file; the event is written by the caller. */
  reloadPolicy: (actor: string) => Promise<{ version: string; changed: boolean }>;
  /** Aborts when the server begins shutting down. */
  shutdown: AbortSignal;
  /** Open streams per principal, for the per-principal caps. */
  openStreams: StreamCounter;
}

/** Counts open streams of one kind per principal (or client address) and
 * refuses one more than the cap. */
export class StreamCounter {
  private readonly open = new Map<string, number>();

  /** Takes a slot for `key`, or throws RESOURCE_EXHAUSTED naming the
   * setting; the returned function gives it back. */
  take(kind: string, key: string, max: number, setting: string): () => void {
    const slot = `${kind}\u0000${key}`;
    const n = this.open.get(slot) ?? 0;
    if (n >= max) {
      throw new ActionqError("resource_exhausted", "TOO_MANY_STREAMS", `${key} already has ${n} ${kind} streams open on this server; at most ${max} are allowed (${setting})`, {
        limit: setting,
        max: String(max),
      });
    }
    this.open.set(slot, n + 1);
    let given = false;
    return () => {
      if (given) return;
      given = true;
      const left = (this.open.get(slot) ?? 1) - 1;
      if (left <= 0) this.open.delete(slot);
      else this.open.set(slot, left);
    };
  }
}

/** An error about one item of a batch names the item: `requests[3].payload`. */
function withItemField(error: ActionqError, prefix: string): ActionqError {
  const field = error.metadata.field;
  return new ActionqError(error.kind, error.reason, `${prefix}: ${error.message}`, field === undefined ? { ...error.metadata, item: prefix } : { ...error.metadata, field: `${prefix}.${field}` });
}

/** Runs one item's checks; a domain error becomes that item's result. */
function attempt<T>(prefix: string, check: () => T): T | ActionqError {
  try {
    return check();
  } catch (error) {
    if (error instanceof ActionqError) return withItemField(error, prefix);
    throw error;
  }
}

type Success = Extract<Outcome, { ok: true }>;

/** A batch call's results, in request order: the store runs once on the
 * items that passed their checks; each item gets its own refusal, the
 * store's refusal of it, or `ok` of its success. */
async function perItem<I extends object, R>(
  items: (I | ActionqError)[],
  store: (valid: I[]) => Promise<Outcome[]>,
  ok: (item: I, outcome: Success) => R,
): Promise<({ result: { case: "error"; value: ReturnType<typeof itemError> } } | R)[]> {
  const valid = items.filter((item): item is I => !(item instanceof ActionqError));
  const outcomes = valid.length > 0 ? await store(valid) : [];
  let next = 0;
  return items.map((item, index) => {
    if (item instanceof ActionqError) return { result: { case: "error" as const, value: itemError(item) } };
    const outcome = outcomes[next++]!;
    if (!outcome.ok) return { result: { case: "error" as const, value: itemError(withItemField(outcome.error, `requests[${index}]`)) } };
    return ok(item, outcome);
  });
}

/** The result, or its error thrown. */
function must(outcome: Outcome) {
  if (!outcome.ok) throw outcome.error;
  return outcome;
}

/** The single result of a one-item batch, or its error. */
function only(outcomes: Outcome[]) {
  return must(outcomes[0]!);
}

function eventTypes(field: string, values: string[]): string[] {
  const known = new Set<string>(EVENT_TYPES);
  values.forEach((value, index) => {
    if (!known.has(value)) throw invalidField(`${field}[${index}]`, `unknown event type ${JSON.stringify(value.slice(0, 64))}; known: ${EVENT_TYPES.join(", ")}`);
  });
  return [...new Set(values)];
}

/** Canonical JSON (sorted keys) for digests. */
function canonical(value: JsonValue | undefined): string {
  if (value === undefined) return "null";
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonical(value[key])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value);
}

/** The policy's decision for an action, both as it stands and as it
 * stands while auto-approval is paused (the insert picks one). */
function decisions(loaded: LoadedPolicy, action: ProposedAction & { typeRisk: RiskLevel }) {
  const decision = decideApproval(loaded, action, false);
  const paused = decideApproval(loaded, action, true);
  return { decision, pausedDecision: paused, autonomousEligible: decision.autonomousEligible, policyVersion: decision.policyVersion };
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

export function actionQueueService(deps: ServiceDeps): ServiceImpl<typeof ActionQueueService> {
  const { config, actions, events, dispatcher, hub, pauses, metrics } = deps;
  const bound = check.bounded(config.limits);

  /** Checks an enqueue request and asks the policy: the action to insert,
   * or an ActionqError naming what is wrong. */
  function prepareEnqueue(req: EnqueueActionRequest, access: Access): NewAction {
    const requestedRisk = riskFromWire(req.riskLevel);
    if (requestedRisk === undefined) throw invalidField("risk_level", `unknown risk level ${req.riskLevel}`);
    const rollbackRef = req.rollbackRef === "" ? "" : check.name("rollback_ref", req.rollbackRef);
    const rollbackPayload = req.rollbackPayload === undefined ? null : bound.payload("rollback_payload", req.rollbackPayload);
    if (rollbackPayload !== null && rollbackRef === "") throw invalidField("rollback_payload", "needs rollback_ref: it is the payload of that reverse action");
    // What the producer asked for, as it asked: the digest that tells a
    // retry from a reused key must not change when the policy does.
    const fields = {
      actionType: check.name("action_type", req.actionType),
      project: check.name("project", req.project, false),
      targetRef: bound.ref("target_ref", req.targetRef),
      sourceRefs: bound.sourceRefs("source_refs", req.sourceRefs),
      payload: bound.payload("payload", req.payload),
      priority: req.priority,
      requestedRisk,
      confidence: check.confidence("confidence", req.confidence),
      approvalRequired: req.approvalRequired,
      createdBy: access.identity("created_by", req.createdBy),
      correlationId: bound.ref("correlation_id", req.correlationId),
      node: bound.ref("node", req.node),
      service: bound.ref("service", req.service),
      parentId: check.optionalId("parent_id", req.parentId),
      rollbackRef,
      rollbackPayload,
      supersedesId: check.optionalId("supersedes_id", req.supersedesId),
      maxAttempts: check.count("max_attempts", req.maxAttempts, config.maxAttempts, 1000),
      runAfter: check.runAfter("run_after", req.runAfter),
    };
    access.allowNew(fields.project, fields.actionType);
    const idempotencyKey = req.idempotencyKey === "" ? null : bound.ref("idempotency_key", req.idempotencyKey);
    const loaded = deps.policy.current;
    const { risk, typeRisk } = resolveRisk(loaded.policy, fields.actionType, requestedRisk);
    const { requestedRisk: _requested, ...rest } = fields;
    const input: NewAction = {
      ...rest,
      riskLevel: risk,
      rollbackOf: null,
      note: null,
      idempotencyKey,
      // Only a repeated idempotency key is compared with it. As the
      // producer sent it: run_after as its ISO string (a Date has no keys of
      // its own), max_attempts before the server's default, so that
      // replicas with different defaults agree on a retry.
      requestDigest:
        idempotencyKey === null
          ? null
          : createHash("sha256")
              .update(canonical({ ...fields, runAfter: fields.runAfter?.toISOString() ?? null, maxAttempts: req.maxAttempts } as unknown as JsonValue))
              .digest("base64url"),
      ...decisions(loaded, { ...fields, riskLevel: risk, typeRisk }),
    };
    return input;
  }

  /** The access checks of one call, bound to its caller. */
  const accessOf = (ctx: HandlerContext) => Access.of(ctx, actions, check.principal);

  return {
    async enqueueAction(req, ctx) {
      const access = accessOf(ctx);
      const input = prepareEnqueue(req, access);
      if (input.supersedesId !== null) {
        const [refused] = await access.supersedeErrors([input.supersedesId]);
        if (refused) throw refused;
      }
      const outcome = must(await actions.one.enqueue(input));
      if (outcome.created !== false) metrics.onEnqueued(outcome.action);
      if (outcome.action.deferred) deps.scheduler.hint(outcome.action.run_after!);
      return { action: actionToWire(outcome.action), created: outcome.created ?? true };
    },

    async enqueueActions(req, ctx) {
      const access = accessOf(ctx);
      const inputs = bound.batch("requests", req.requests).map((one, index) => attempt(`requests[${index}]`, () => prepareEnqueue(one, access)));
      const superseding = inputs.flatMap((input, index) => (input instanceof ActionqError || input.supersedesId === null ? [] : [{ index, id: input.supersedesId }]));
      const refused = await access.supersedeErrors(superseding.map((item) => item.id));
      superseding.forEach(({ index }, n) => {
        const error = refused[n];
        if (error) inputs[index] = withItemField(error, `requests[${index}]`);
      });
      return {
        results: await perItem(inputs, (valid) => actions.enqueueMany(valid), (_input, outcome) => {
          if (outcome.created !== false) metrics.onEnqueued(outcome.action);
          if (outcome.action.deferred) deps.scheduler.hint(outcome.action.run_after!);
          return { result: { case: "ok" as const, value: { action: actionToWire(outcome.action), created: outcome.created ?? true } } };
        }),
      };
    },

    async getAction(req, ctx) {
      const id = check.id("id", req.id);
      await accessOf(ctx).allowExisting([id]);
      const found = await actions.get(id);
      if (!found) throw actionNotFound(id);
      return { action: actionToWire(found.action), events: found.events.map(eventToWire) };
    },

    async listActions(req, ctx) {
      const statuses = req.statuses.map((value, index) => {
        const status = statusFromWire(value);
        if (!status) throw invalidField(`statuses[${index}]`, `unknown status ${value}`);
        return status;
      });
      const scoped = accessOf(ctx).narrow({ actionTypes: check.nameList("action_types", req.actionTypes), projects: check.nameList("projects", req.projects) });
      const filters = {
        statuses: [...new Set(statuses)].sort() as Status[],
        actionTypes: scoped.actionTypes.sort(),
        projects: scoped.projects.sort(),
        createdBy: req.createdBy === "" ? null : check.principal("created_by", req.createdBy),
        parentId: check.optionalId("parent_id", req.parentId),
        correlationId: req.correlationId === "" ? null : bound.ref("correlation_id", req.correlationId),
      };
      const limit = bound.pageSize("page_size", req.pageSize, 50);
      const beforeId = decodePageToken("page_token", req.pageToken, filters);
      const rows = await actions.list({ ...filters, beforeId, limit: limit + 1 });
      const page = rows.slice(0, limit);
      const more = rows.length > limit;
      return {
        actions: page.map(actionToWire),
        nextPageToken: more ? encodePageToken(page[page.length - 1]!.id, filters) : "",
      };
    },

    async approveAction(req, ctx) {
      const access = accessOf(ctx);
      const approveId = check.id("id", req.id);
      const approver = access.identity("approver", req.approver);
      await access.allowExisting([approveId]);
      const outcome = only(
        await actions.approveMany([
          { id: approveId, approver, note: bound.text("note", req.note) },
        ]),
      );
      if (outcome.action.deferred) deps.scheduler.hint(outcome.action.run_after!);
      return { action: actionToWire(outcome.action) };
    },

    async rejectAction(req, ctx) {
      const access = accessOf(ctx);
      const id = check.id("id", req.id);
      const actor = access.identity("actor", req.actor);
      const reason = bound.text("reason", req.reason, true);
      if (req.claimToken !== "") {
        const token = check.claimToken("claim_token", req.claimToken);
        await access.requireHolder(id, token);
        const outcome = only(await actions.rejectClaimedMany([{ id, token, actor, reason }]));
        dispatcher.onClaimEnded(id, outcome.action.attempt);
        if (!outcome.repeated) metrics.onFinished(outcome.action, "rejected", null);
        return { action: actionToWire(outcome.action) };
      }
      await access.allowExisting([id]);
      const outcomes = await actions.rejectPendingMany([{ id, actor, reason }]);
      const outcome = outcomes[0]!;
      if (!outcome.ok && outcome.error.reason === "INVALID_TRANSITION" && outcome.error.metadata.current_status === "CLAIMED") {
        throw new ActionqError(
          "failed_precondition",
          "CLAIM_TOKEN_REQUIRED",
          `action ${id} is CLAIMED; only the worker holding it can reject it, with its claim_token (an operator cancels instead)`,
          { action_id: id, current_status: "CLAIMED", field: "claim_token" },
        );
      }
      return { action: actionToWire(only(outcomes).action) };
    },

    async cancelAction(req, ctx) {
      const access = accessOf(ctx);
      const id = check.id("id", req.id);
      const actor = access.identity("actor", req.actor);
      const reason = bound.text("reason", req.reason, true);
      await access.allowExisting([id]);
      const outcome = only(await actions.cancelMany([{ id, actor, reason }]));
      dispatcher.onClaimEnded(id, outcome.action.attempt);
      return { action: actionToWire(outcome.action) };
    },

    async claimAction(req, ctx) {
      const access = accessOf(ctx);
      const worker = access.identity("worker", req.worker);
      const filter = access.narrow({ actionTypes: check.nameList("action_types", req.actionTypes), projects: check.nameList("projects", req.projects) });
      const leaseMs = check.lease("lease_duration", req.leaseDuration, config.leaseMs, config.maxLeaseMs)!;
      const [row] = await actions.claim(filter, [{ session: null, worker, leaseMs }]);
      if (row) metrics.onClaimed(row);
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
      const release = deps.openStreams.take("claim", access.caller.limitKey, config.limits.streamsPerPrincipal, "ACTIONQ_MAX_STREAMS_PER_PRINCIPAL");
      let session;
      try {
        session = dispatcher.open({ worker, filter, maxInFlight, leaseMs, holding });
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
              metrics.onClaimed(message.action);
              yield { kind: { case: "claim", value: claimToWire(message.action) } };
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
      dispatcher.onAcked(id, outcome.action.attempt);
      return { action: actionToWire(outcome.action) };
    },

    async extendClaim(req, ctx) {
      const id = check.id("id", req.id);
      const token = check.claimToken("claim_token", req.claimToken);
      const leaseMs = check.lease("lease_duration", req.leaseDuration, null, config.maxLeaseMs);
      await accessOf(ctx).requireHolder(id, token);
      const outcome = only(await actions.extendMany([{ id, token, leaseMs }]));
      dispatcher.onAcked(id, outcome.action.attempt);
      const action = actionToWire(outcome.action);
      return { claimDeadline: action.claimDeadline, action };
    },

    async completeAction(req, ctx) {
      const id = check.id("id", req.id);
      const token = check.claimToken("claim_token", req.claimToken);
      const resultRef = bound.ref("result_ref", req.resultRef);
      await accessOf(ctx).requireHolder(id, token);
      const outcome = must(await actions.one.complete({ id, token, resultRef }));
      dispatcher.onClaimEnded(id, outcome.action.attempt);
      if (!outcome.repeated) metrics.onFinished(outcome.action, "completed", outcome.action.claimed_since ?? null);
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
        results: await perItem(items, (valid) => actions.completeMany(valid), (item, outcome) => {
          dispatcher.onClaimEnded(item.id, outcome.action.attempt);
          if (!outcome.repeated) metrics.onFinished(outcome.action, "completed", outcome.action.claimed_since ?? null);
          return { result: { case: "action" as const, value: actionToWire(outcome.action) } };
        }),
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
      dispatcher.onClaimEnded(id, outcome.action.attempt);
      if (!outcome.repeated) metrics.onFinished(outcome.action, outcome.action.status === "failed" ? "failed" : "retry_scheduled", null);
      if (outcome.action.deferred) deps.scheduler.hint(outcome.action.run_after!);
      return { action: actionToWire(outcome.action) };
    },

    async retryAction(req, ctx) {
      const access = accessOf(ctx);
      const id = check.id("id", req.id);
      const actor = access.identity("actor", req.actor);
      const reason = bound.text("reason", req.reason, true);
      const extra = check.count("additional_attempts", req.additionalAttempts, 1, 1000);
      await access.allowExisting([id]);
      const outcome = only(await actions.retryMany([{ id, actor, reason, extra }]));
      return { action: actionToWire(outcome.action) };
    },

    async sweepClaims(req, ctx) {
      const access = accessOf(ctx);
      const actor = access.principal || req.actor !== "" ? access.identity("actor", req.actor) : "server:sweeper";
      access.requireUnscoped("sweep every claim");
      const { expired, requeued } = await actions.sweep(actor);
      for (const row of requeued) dispatcher.onClaimEnded(row.id, row.attempt);
      return { requeuedActions: requeued.map(actionToWire), expiredActions: expired.map(actionToWire) };
    },

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
      const afterId = check.cursor("after_id", req.afterId);
      await scopedEvents(access, filter.actionId);
      const release = deps.openStreams.take("watch", access.caller.limitKey, config.limits.watchersPerPrincipal, "ACTIONQ_MAX_WATCHERS_PER_PRINCIPAL");
      ctx.signal.addEventListener("abort", release, { once: true });
      try {
        yield { kind: { case: "heartbeat", value: { serverTime: timestampNow() } }, cursor: afterId };
        for await (const item of hub.watch(afterId, filter, linkedSignal(ctx, deps.shutdown))) {
          if (item.kind === "event") {
            yield sharedWatchResponse(item.event);
          } else {
            yield { kind: { case: "heartbeat", value: { serverTime: timestampNow() } }, cursor: item.cursor };
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
        dispatcher.onAcked(id, Number(result.payload.attempt));
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

    async pauseClaims(req, ctx) {
      const access = accessOf(ctx);
      const scope = pauseScopeFromWire(req.scope);
      const actor = access.identity("actor", req.actor);
      const reason = bound.text("reason", req.reason, true);
      access.allowPause(scope.kind, scope.value);
      const { pause, created } = await pauses.pause(scope, actor, reason);
      return { pause: pauseToWire(pause), created };
    },

    async resumeClaims(req, ctx) {
      const access = accessOf(ctx);
      const scope = pauseScopeFromWire(req.scope);
      const actor = access.identity("actor", req.actor);
      const reason = bound.text("reason", req.reason);
      access.allowPause(scope.kind, scope.value);
      const lifted = await pauses.resume(scope, actor, reason);
      if (!lifted) {
        throw new ActionqError("not_found", "PAUSE_NOT_FOUND", `no pause is in force for ${scope.kind}${scope.value === "" ? "" : ` ${scope.value}`}`, {
          kind: scope.kind,
          value: scope.value,
        });
      }
      // This server's streams wake now; the others on the 'r' notification.
      dispatcher.wakeAll();
      return { pause: pauseToWire(lifted) };
    },

    async getQueueStats(_req, ctx) {
      accessOf(ctx).requireUnscoped("read the whole queue's statistics");
      const stats = await pauses.stats();
      return {
        counts: stats.counts.map((row) => ({ status: statusToWire(row.status as Status), actionType: row.action_type, count: BigInt(row.n) })),
        claimable: BigInt(stats.claimable),
        oldestClaimableAge: stats.oldestClaimableAt ? durationFromMs(Math.max(0, Date.now() - stats.oldestClaimableAt.getTime())) : undefined,
        pauses: stats.pauses.map(pauseToWire),
        policyVersion: deps.policy.current.version,
      };
    },

    async rollbackAction(req, ctx) {
      const access = accessOf(ctx);
      const id = check.id("id", req.id);
      const actor = access.identity("actor", req.actor);
      await access.allowExisting([id]);
      const reason = bound.text("reason", req.reason);
      const loaded = deps.policy.current;
      const outcome = await actions.rollback(id, (original) => {
        access.allowNew(original.project, original.rollback_ref);
        const typeRisk = loaded.policy.action_types[original.rollback_ref] ?? loaded.policy.default_risk;
        const proposal = {
          actionType: original.rollback_ref,
          project: original.project,
          targetRef: original.target_ref,
          sourceRefs: [`action:${original.id}`],
          payload: original.rollback_payload ?? {},
          priority: original.priority,
          riskLevel: typeRisk,
          confidence: null,
          approvalRequired: false,
          maxAttempts: original.max_attempts,
          runAfter: null,
          createdBy: actor,
          correlationId: original.correlation_id,
          node: original.node,
          service: original.service,
          parentId: original.id,
        };
        return {
          ...proposal,
          rollbackRef: "",
          rollbackPayload: null,
          rollbackOf: original.id,
          supersedesId: null,
          idempotencyKey: null,
          requestDigest: createHash("sha256").update(`rollback:${original.id}`).digest("base64url"),
          note: reason === "" ? null : reason,
          ...decisions(loaded, { ...proposal, typeRisk }),
        };
      });
      if (!outcome.ok) throw outcome.error;
      return { rollback: actionToWire(outcome.action), created: outcome.created ?? true };
    },

    async getPolicy() {
      const loaded = deps.policy.current;
      return { policyVersion: loaded.version, source: loaded.source ?? "", policy: JSON.parse(JSON.stringify(loaded.policy)) as JsonObject };
    },

    async reloadPolicy(req, ctx) {
      const access = accessOf(ctx);
      const actor = access.identity("actor", req.actor);
      access.requireUnscoped("reload the policy");
      const { version, changed } = await deps.reloadPolicy(actor);
      return { policyVersion: version, changed };
    },
  };
}

export function registerActionQueueService(router: ConnectRouter, deps: ServiceDeps): void {
  router.service(ActionQueueService, actionQueueService(deps));
}
