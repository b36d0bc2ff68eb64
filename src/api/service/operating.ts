// Operators steer the queue: the kill switch, the queue's vital signs, a
// policy reload, and break-glass on one action in a closed change window.
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Status } from "../../domain/vocabulary.js";
import { ActionqError } from "../../errors.js";
import { windowStates } from "../../policy/windows.js";
import { only } from "../batch-results.js";
import { actionToWire, pauseScopeFromWire, pauseToWire, statusToWire } from "../convert.js";
import * as check from "../validate.js";
import type { Handlers, Kit } from "./kit.js";

export function operating(kit: Kit): Handlers<"pauseClaims" | "resumeClaims" | "getQueueStats" | "reloadPolicy" | "breakGlass"> {
  const { deps, bound, accessOf } = kit;
  const { pauses, windows } = deps;
  return {
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
      return { pause: pauseToWire(lifted) };
    },
    async getQueueStats(_req, ctx) {
      accessOf(ctx).requireUnscoped("read the whole queue's statistics");
      const [stats, held, enforced, webhooks] = await Promise.all([pauses.stats(), windows.heldCounts(), windows.source(), deps.webhookBacklog()]);
      const now = new Date();
      return {
        counts: stats.counts.map((row) => ({ status: statusToWire(row.status as Status), actionType: row.action_type, count: BigInt(row.n) })),
        claimable: BigInt(stats.claimable),
        oldestClaimableAge: stats.oldestClaimableAt ? durationFromMs(Math.max(0, Date.now() - stats.oldestClaimableAt.getTime())) : undefined,
        pauses: stats.pauses.map(pauseToWire),
        policyVersion: deps.policy.current.version,
        heldKeys: stats.heldKeys.map((held) => ({
          key: held.key,
          limit: held.claim_limit,
          holderIds: held.holder_ids.map(BigInt),
          waiting: BigInt(held.waiting),
        })),
        changeWindows: {
          enforcedPolicyVersion: enforced,
          windows: windowStates(deps.policy.current.policy.windows, now).map(({ window, closed, nextChange }) => ({
            name: window.name,
            effect: window.effect,
            closed,
            nextChangeTime: nextChange ? timestampFromDate(nextChange) : undefined,
            held: held.get(window.name) ?? 0n,
            timeZone: window.time_zone,
          })),
        },
        webhooks: webhooks.map((hook) => ({
          endpoint: hook.endpoint,
          pending: BigInt(hook.n),
          oldestPendingAge: hook.oldest ? durationFromMs(Math.max(0, Date.now() - hook.oldest.getTime())) : undefined,
          consecutiveFailures: hook.attempts,
          lastError: hook.lastError,
        })),
      };
    },
    async breakGlass(req, ctx) {
      const access = accessOf(ctx);
      const id = check.id("id", req.id);
      const actor = access.identity("actor", req.actor);
      const reason = bound.text("reason", req.reason, true);
      await access.allowExisting([id]);
      const outcome = only(await deps.actions.breakGlassMany([{ id, actor, reason }]));
      return { action: actionToWire(outcome.action) };
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
