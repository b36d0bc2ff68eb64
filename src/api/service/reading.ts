// Reads: an action with its history, a filtered page of actions, the
// policy in force, and who the caller is.
import type { JsonObject } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Status } from "../../domain/vocabulary.js";
import { actionNotFound, invalidField } from "../../errors.js";
import { actionToWire, eventToWire, statusFromWire } from "../convert.js";
import { decodePageToken, encodePageToken } from "../page-token.js";
import * as check from "../validate.js";
import type { Handlers, Kit } from "./kit.js";

export function reading(kit: Kit): Handlers<"getAction" | "listActions" | "getPolicy" | "getCaller"> {
  const { deps, bound, accessOf } = kit;
  const { actions } = deps;
  return {
    async getAction(req, ctx) {
      const id = check.id("id", req.id);
      await accessOf(ctx).allowExisting([id]);
      const found = await actions.get(id);
      if (!found) throw actionNotFound(id);
      const keyHold = found.action.concurrency_key !== null && found.action.status === "approved" ? await actions.concurrencyHold(id) : undefined;
      const hold = found.action.status === "approved" && found.action.break_glass_at === null ? await deps.windows.holdOf(id) : null;
      return {
        action: actionToWire(found.action),
        events: found.events.map(eventToWire),
        concurrencyHold: keyHold && {
          key: keyHold.key,
          limit: keyHold.claim_limit,
          holderIds: keyHold.holder_ids.map(BigInt),
          ahead: BigInt(keyHold.ahead),
        },
        windowHold: hold ? { windowName: hold.windowName, untilTime: timestampFromDate(hold.until) } : undefined,
      };
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
    async getPolicy() {
      const loaded = deps.policy.current;
      // A policy without a name (the built-in one) shows none, not null.
      const { name, ...rest } = loaded.policy;
      const policy = name === null ? rest : loaded.policy;
      return { policyVersion: loaded.version, source: loaded.source ?? "", policy: JSON.parse(JSON.stringify(policy)) as JsonObject };
    },
    async getCaller(_req, ctx) {
      const principal = accessOf(ctx).principal;
      if (!principal) return { authenticationEnabled: false };
      return {
        authenticationEnabled: true,
        name: principal.name,
        roles: [...principal.roles],
        projects: [...(principal.scope?.projects ?? [])],
        actionTypes: [...(principal.scope?.actionTypes ?? [])],
        groups: [...principal.groups],
      };
    },
  };
}
