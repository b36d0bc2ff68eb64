// People decide: approve or reject a pending action, cancel one, or send a
// failed one back for more attempts.
import type { HandlerContext } from "@connectrpc/connect";
import { ActionqError } from "../../errors.js";
import { only } from "../batch-results.js";
import { actionToWire } from "../convert.js";
import * as check from "../validate.js";
import type { Handlers, Kit } from "./kit.js";

export function reviewing(kit: Kit): Handlers<"approveAction" | "rejectAction" | "cancelAction" | "retryAction"> {
  const { deps, bound, accessOf } = kit;
  const { actions } = deps;
  /** What a person's decision on one action carries, checked in this
   * order: which action, who decides, and why (required). */
  const decision = (req: { id: bigint; actor: string; reason: string }, ctx: HandlerContext) => {
    const access = accessOf(ctx);
    return { access, id: check.id("id", req.id), actor: access.identity("actor", req.actor), reason: bound.text("reason", req.reason, true) };
  };
  return {
    async approveAction(req, ctx) {
      const access = accessOf(ctx);
      const approveId = check.id("id", req.id);
      const approver = access.identity("approver", req.approver);
      await access.allowExisting([approveId]);
      // Without an auth file nobody belongs to a group.
      const groups = access.principal?.groups ?? [];
      const outcome = only(await actions.approveMany([{ id: approveId, approver, note: bound.text("note", req.note), groups }]));
      return { action: actionToWire(outcome.action) };
    },
    async rejectAction(req, ctx) {
      const { access, id, actor, reason } = decision(req, ctx);
      if (req.claimToken !== "") {
        const token = check.claimToken("claim_token", req.claimToken);
        await access.requireHolder(id, token);
        const outcome = only(await actions.rejectClaimedMany([{ id, token, actor, reason }]));
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
      const { access, id, actor, reason } = decision(req, ctx);
      await access.allowExisting([id]);
      const outcome = only(await actions.cancelMany([{ id, actor, reason }]));
      return { action: actionToWire(outcome.action) };
    },
    async retryAction(req, ctx) {
      const { access, id, actor, reason } = decision(req, ctx);
      const extra = check.count("additional_attempts", req.additionalAttempts, 1, 1000);
      await access.allowExisting([id]);
      const outcome = only(await actions.retryMany([{ id, actor, reason, extra }]));
      return { action: actionToWire(outcome.action) };
    },
  };
}
