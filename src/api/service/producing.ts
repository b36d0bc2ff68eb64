// Producers propose actions: one, a batch (each item answered on its own),
// or the rollback of a finished one. The policy's part (risk, decision,
// digest) is in src/policy/proposals.ts; here the request is checked.
import type { EnqueueActionRequest } from "../../../gen/actionq/v1/action_queue_service_pb.js";
import type { Access } from "../../auth/access.js";
import { ActionqError, invalidField } from "../../errors.js";
import { type ProposedFields, proposeAction, proposeRollback } from "../../policy/proposals.js";
import type { NewAction } from "../../store/actions.js";
import { attempt, must, perItem, withItemField } from "../batch-results.js";
import { actionToWire, riskFromWire } from "../convert.js";
import * as check from "../validate.js";
import type { Handlers, Kit } from "./kit.js";

/** An enqueue request's own fields, checked, for `createdBy`: what
 * EnqueueAction and a schedule's template share. */
export function enqueueFields(bound: Kit["bound"], maxAttemptsDefault: number, req: EnqueueActionRequest, createdBy: string): ProposedFields {
  const requestedRisk = riskFromWire(req.riskLevel);
  if (requestedRisk === undefined) throw invalidField("risk_level", `unknown risk level ${req.riskLevel}`);
  const rollbackRef = req.rollbackRef === "" ? "" : check.name("rollback_ref", req.rollbackRef);
  const rollbackPayload = req.rollbackPayload === undefined ? null : bound.payload("rollback_payload", req.rollbackPayload);
  if (rollbackPayload !== null && rollbackRef === "") throw invalidField("rollback_payload", "needs rollback_ref: it is the payload of that reverse action");
  return {
    actionType: check.name("action_type", req.actionType),
    project: check.name("project", req.project, false),
    targetRef: bound.ref("target_ref", req.targetRef),
    sourceRefs: bound.sourceRefs("source_refs", req.sourceRefs),
    payload: bound.payload("payload", req.payload),
    priority: req.priority,
    requestedRisk,
    confidence: check.confidence("confidence", req.confidence),
    approvalRequired: req.approvalRequired,
    createdBy,
    correlationId: bound.ref("correlation_id", req.correlationId),
    node: bound.ref("node", req.node),
    service: bound.ref("service", req.service),
    parentId: check.optionalId("parent_id", req.parentId),
    rollbackRef,
    rollbackPayload,
    supersedesId: check.optionalId("supersedes_id", req.supersedesId),
    maxAttempts: check.count("max_attempts", req.maxAttempts, maxAttemptsDefault, 1000),
    runAfter: check.runAfter("run_after", req.runAfter),
    requestedConcurrencyKey: req.concurrencyKey,
    requestedConcurrencyLimit: req.concurrencyLimit,
  };
}

/** Checks an enqueue request and asks the policy: the action to insert,
 * or an ActionqError naming what is wrong. */
function prepareEnqueue({ deps, bound }: Kit, req: EnqueueActionRequest, access: Access): NewAction {
  const fields = enqueueFields(bound, deps.config.maxAttempts, req, access.identity("created_by", req.createdBy));
  access.allowNew(fields.project, fields.actionType);
  const idempotencyKey = req.idempotencyKey === "" ? null : bound.ref("idempotency_key", req.idempotencyKey);
  return proposeAction(deps.policy.current, fields, idempotencyKey, req.maxAttempts);
}

export function producing(kit: Kit): Handlers<"enqueueAction" | "enqueueActions" | "rollbackAction"> {
  const { deps, bound, accessOf } = kit;
  const { actions } = deps;
  return {
    async enqueueAction(req, ctx) {
      const access = accessOf(ctx);
      const input = prepareEnqueue(kit, req, access);
      if (input.supersedesId !== null) {
        const [refused] = await access.supersedeErrors([input.supersedesId]);
        if (refused) throw refused;
      }
      const outcome = must(await actions.one.enqueue(input));
      return { action: actionToWire(outcome.action), created: outcome.created ?? true };
    },
    async enqueueActions(req, ctx) {
      const access = accessOf(ctx);
      const inputs = bound.batch("requests", req.requests).map((one, index) => attempt(`requests[${index}]`, () => prepareEnqueue(kit, one, access)));
      const superseding = inputs.flatMap((input, index) =>
        input instanceof ActionqError || input.supersedesId === null ? [] : [{ index, id: input.supersedesId }],
      );
      const refused = await access.supersedeErrors(superseding.map((item) => item.id));
      superseding.forEach(({ index }, n) => {
        const error = refused[n];
        if (error) inputs[index] = withItemField(error, `requests[${index}]`);
      });
      return {
        results: await perItem(
          inputs,
          (valid) => actions.enqueueMany(valid),
          (_input, outcome) => ({
            result: { case: "ok" as const, value: { action: actionToWire(outcome.action), created: outcome.created ?? true } },
          }),
        ),
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
        return proposeRollback(loaded, original, actor, reason);
      });
      if (!outcome.ok) throw outcome.error;
      return { rollback: actionToWire(outcome.action), created: outcome.created ?? true };
    },
  };
}
