// Moving over from another system: ImportActions checks each item, asks
// the policy what it becomes here (src/policy/imports.ts) and hands the
// batch to the store, which answers each item as imported or already
// present.
import type { JsonObject } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { ImportedAction } from "../../../gen/actionq/v1/action_queue_service_pb.js";
import { ImportOutcome } from "../../../gen/actionq/v1/action_queue_service_pb.js";
import { PRINCIPAL_LENGTH, isFinished } from "../../domain/vocabulary.js";
import { invalidField } from "../../errors.js";
import { type ImportFields, type PlannedImport, planImport } from "../../policy/imports.js";
import { attempt, perItem } from "../batch-results.js";
import { actionToWire, riskFromWire, statusFromWire } from "../convert.js";
import * as check from "../validate.js";
import type { Handlers, Kit } from "./kit.js";

const DAY_MS = 86_400_000;

/** The other system's document may be larger than a payload it carries:
 * room for its own fields as well. */
const DOCUMENT_OVERHEAD_BYTES = 64 * 1024;

/** Times from the other system: from 1970 to a day ahead of this clock
 * (theirs may run fast), kept to the microsecond as PostgreSQL keeps them.
 * `micros` to compare, `text` to store. */
function time(field: string, value: Timestamp | undefined, required: boolean): { micros: bigint; text: string } | null {
  if (value === undefined) {
    if (required) throw invalidField(field, "is required");
    return null;
  }
  if (value.nanos < 0 || value.nanos > 999_999_999) throw invalidField(field, "nanos must be from 0 to 999999999");
  if (value.seconds < 0n || value.seconds * 1000n > BigInt(Date.now() + DAY_MS)) {
    throw invalidField(field, "must be after 1970 and at most a day ahead of the server's clock");
  }
  const micros = Math.floor(value.nanos / 1000);
  const whole = new Date(Number(value.seconds) * 1000).toISOString().slice(0, 19);
  return { micros: value.seconds * 1_000_000n + BigInt(micros), text: `${whole}.${String(micros).padStart(6, "0")}Z` };
}

/** An item's fields, checked; INVALID_ARGUMENT names the first bad one. */
function importFields(bound: Kit["bound"], payloadBytes: number, item: ImportedAction): ImportFields {
  const externalId = check.text("external_id", item.externalId, { required: true, max: PRINCIPAL_LENGTH });
  const statusThere = statusFromWire(item.status);
  if (statusThere === undefined) {
    throw invalidField("status", "is required: PENDING, APPROVED, CLAIMED (running there), COMPLETED, FAILED, REJECTED or CANCELLED");
  }
  const createdAt = time("create_time", item.createTime, true)!;
  const createdBy = check.text("created_by", item.createdBy, { required: true, max: PRINCIPAL_LENGTH });
  const actionType = check.name("action_type", item.actionType);
  const requestedRisk = riskFromWire(item.riskLevel);
  if (requestedRisk === undefined) throw invalidField("risk_level", `unknown risk level ${item.riskLevel}`);
  const finishedAt = time("finish_time", item.finishTime, false);
  if (finishedAt !== null) {
    if (!isFinished(statusThere)) throw invalidField("finish_time", `is only for a finished status, not ${statusThere.toUpperCase()}`);
    if (finishedAt.micros < createdAt.micros) throw invalidField("finish_time", "is before create_time");
  }
  const history = item.history.map((line, index) => {
    if (line.includes("\u0000")) throw invalidField(`history[${index}]`, "must not contain NUL characters");
    return line;
  });
  const historyBytes = history.reduce((sum, line) => sum + Buffer.byteLength(line), 0);
  if (historyBytes > payloadBytes) {
    throw invalidField("history", `is ${historyBytes} bytes; at most ${payloadBytes} are allowed (ACTIONQ_MAX_PAYLOAD_BYTES)`);
  }
  return {
    externalId,
    statusThere,
    createdAt: createdAt.text,
    createdBy,
    correlationId: bound.ref("correlation_id", item.correlationId),
    node: bound.ref("node", item.node),
    service: bound.ref("service", item.service),
    actionType,
    // The other system may not have known risk levels: SAFE, then raised
    // to the type's level by the policy.
    riskLevel: requestedRisk ?? "safe",
    confidence: check.confidence("confidence", item.confidence),
    approvalRequired: item.approvalRequired,
    autonomousEligible: item.autonomousEligible,
    payload: bound.payload("payload", item.payload),
    rollbackRef: item.rollbackRef === "" ? "" : check.name("rollback_ref", item.rollbackRef),
    finishedAt: finishedAt?.text ?? null,
    failureReason: bound.text("failure_reason", item.failureReason),
    original: item.original === undefined ? null : (check.payload("original", item.original, payloadBytes + DOCUMENT_OVERHEAD_BYTES) as JsonObject),
    history,
    source: bound.ref("source", item.source),
  };
}

export function importing(kit: Kit): Handlers<"importActions"> {
  const { deps, bound, accessOf } = kit;
  return {
    async importActions(req, ctx) {
      const access = accessOf(ctx);
      const actor = access.identity("actor", req.actor);
      // Refused before anything is read or written: the whole call vouches.
      if (req.trustApprovals) access.allowTrustedApprovals();
      const loaded = deps.policy.current;
      const context = { actor, trustApprovals: req.trustApprovals, maxAttempts: deps.config.maxAttempts };
      const planned = bound.batch("actions", req.actions).map((item, index) =>
        attempt(`actions[${index}]`, (): PlannedImport => {
          const fields = importFields(bound, deps.config.limits.payloadBytes, item);
          // Imports have no project: a scoped producer imports what it
          // could enqueue without one.
          access.allowNew("", fields.actionType);
          return planImport(loaded, fields, context);
        }),
      );
      return {
        results: await perItem(
          planned,
          (valid) => deps.actions.importMany(valid, { validateOnly: req.validateOnly, actor }),
          (item, outcome) => ({
            result: {
              case: "ok" as const,
              value: {
                action: actionToWire(outcome.action),
                outcome: outcome.created ? ImportOutcome.IMPORTED : ImportOutcome.ALREADY_PRESENT,
                notes: outcome.created ? item.notes : [],
              },
            },
          }),
          "actions",
        ),
      };
    },
  };
}
