// The insert path of ImportActions, in one transaction per call: actions
// already here under an external id are answered as present and left
// alone; the others are inserted with their events by one statement. The
// unique index on external_id settles concurrent imports of the same id:
// the loser reads the winner and answers it as present.
import type pg from "pg";
import { DERIVED_EXTERNAL_ID_PATTERN, isFinished } from "../domain/vocabulary.js";
import { ActionqError } from "../errors.js";
import type { PlannedImport } from "../policy/imports.js";
import type { Outcome } from "./actions.js";
import { type ActionChange, type Commits, moved } from "./commits.js";
import { type Queryable, inTransaction } from "./db.js";
import { ActionGetByExternalIds, ActionImportMany, DerivedHereMany } from "./import-queries.js";
import type { ActionRow } from "./rows.js";

const INT64_MAX = 2n ** 63n - 1n;

/** The action id a derived external id would name, or null when the
 * string does not have the shape. Whether this deployment derived it is
 * for SQL to say. */
export function derivedActionId(externalId: string): string | null {
  const match = DERIVED_EXTERNAL_ID_PATTERN.exec(externalId.toLowerCase());
  if (!match) return null;
  const id = BigInt(`0x${match[1]}${match[2]}`);
  return id > 0n && id <= INT64_MAX ? id.toString() : null;
}

/** A validate_only call ends in a rollback that carries its outcomes. */
class RolledBack {
  constructor(readonly outcomes: Outcome[]) {}
}

/** Imports in one transaction; with `validateOnly`, the same work rolled
 * back, answering the would-be actions with id 0. Created actions that
 * wait or may run are reported to `commits` once committed as enqueued, so
 * that the dispatcher, metrics and notifications learn of them as of an
 * enqueue; finished ones as imported. */
export async function importActions(
  pool: pg.Pool,
  commits: Commits,
  items: PlannedImport[],
  options: { validateOnly: boolean; actor: string },
): Promise<Outcome[]> {
  const changes: ActionChange[] = [];
  let outcomes: Outcome[];
  try {
    outcomes = await inTransaction(pool, async (client) => {
      const result = await importWith(client, items, changes, options);
      if (options.validateOnly) throw new RolledBack(result);
      return result;
    });
  } catch (error) {
    if (!(error instanceof RolledBack)) throw error;
    return error.outcomes.map((outcome) =>
      // Inserted here, or an earlier item of this call that was: ids no
      // action has, answered as 0.
      outcome.ok && (outcome.created || outcome.action.id.startsWith("-")) ? { ...outcome, action: { ...outcome.action, id: "0" } } : outcome,
    );
  }
  commits.publish(changes);
  return outcomes;
}

async function findPresent(client: Queryable, externalIds: string[]): Promise<Map<string, ActionRow>> {
  const derivedIds = externalIds.map(derivedActionId).filter((id): id is string => id !== null);
  const { rows } = await client.query<ActionRow>(ActionGetByExternalIds, [externalIds, derivedIds]);
  // A native action's row carries the id SQL derived for it: a string of
  // the derived shape names it only if they are equal.
  return new Map(rows.map((row) => [row.external_id, row]));
}

/** The strings of the derived shape that this deployment derived. */
async function derivedHere(client: Queryable, externalIds: string[]): Promise<Set<string>> {
  const shaped = externalIds.flatMap((given) => {
    const id = derivedActionId(given);
    return id === null ? [] : [{ given, id }];
  });
  if (shaped.length === 0) return new Set();
  const { rows } = await client.query<{ given: string }>(DerivedHereMany, [shaped.map((s) => s.given), shaped.map((s) => s.id)]);
  return new Set(rows.map((row) => row.given));
}

function lookup(present: Map<string, ActionRow>, externalId: string): ActionRow | undefined {
  return present.get(externalId) ?? (derivedActionId(externalId) === null ? undefined : present.get(externalId.toLowerCase()));
}

export async function importWith(
  client: Queryable,
  items: PlannedImport[],
  changes: ActionChange[],
  { validateOnly, actor }: { validateOnly: boolean; actor: string },
): Promise<Outcome[]> {
  const outcomes: (Outcome | undefined)[] = new Array(items.length);
  const present = await findPresent(
    client,
    items.map((item) => item.externalId),
  );
  const ours = await derivedHere(
    client,
    items.filter((item) => !lookup(present, item.externalId)).map((item) => item.externalId),
  );
  const toInsert: { index: number; item: PlannedImport }[] = [];
  items.forEach((item, index) => {
    const row = lookup(present, item.externalId);
    if (row) outcomes[index] = { ok: true, action: row, created: false };
    else if (ours.has(item.externalId)) {
      // This deployment's own id for an action it does not have (a
      // restore from an older backup, say): stored, it would one day be
      // the derived id of a new native action as well.
      const id = derivedActionId(item.externalId)!;
      outcomes[index] = {
        ok: false,
        error: new ActionqError(
          "failed_precondition",
          "EXTERNAL_ID_NOT_HERE",
          `external_id: ${item.externalId} is this deployment's id for action ${id}, which is not here; it cannot name another action`,
          { field: "external_id", action_id: id },
        ),
      };
    } else toInsert.push({ index, item });
  });
  if (toInsert.length > 0) {
    const payload = toInsert.map(({ item }, ord) => ({
      ord,
      external_id: item.externalId,
      action_type: item.actionType,
      payload: item.payload,
      status: item.status,
      risk_level: item.riskLevel,
      confidence: item.confidence,
      approval_required: item.approvalRequired,
      created_by: item.createdBy,
      correlation_id: item.correlationId,
      node: item.node,
      service: item.service,
      rollback_ref: item.rollbackRef,
      approved_by: item.approvedBy,
      approved_now: item.approvedNow,
      approvals_required: item.approvalsRequired,
      approval_requirements: item.requirements,
      ttl_seconds: item.approvalTtlSeconds,
      policy_version: item.policyVersion,
      autonomous_eligible: item.autonomousEligible,
      max_attempts: item.maxAttempts,
      concurrency_key: item.concurrencyKey,
      concurrency_limit: item.concurrencyLimit,
      created_at: item.createdAt,
      finished_at: item.finishedAt,
      failure_reason: item.failureReason,
      result_ref: item.resultRef,
      events: item.events,
    }));
    const { rows } = await client.query<ActionRow & { ord: number }>(ActionImportMany, [JSON.stringify(payload), validateOnly]);
    const lost: { index: number; item: PlannedImport }[] = [];
    const created: ActionRow[] = [];
    for (const { ord, ...row } of rows) {
      const { index, item } = toInsert[ord]!;
      if (row.id === null) lost.push({ index, item });
      else {
        outcomes[index] = { ok: true, action: row, created: true };
        created.push(row);
      }
    }
    // Another import (concurrent, or an earlier item of this call) took
    // the id: answer with its action, now visible to this statement.
    if (lost.length > 0) {
      const winners = await findPresent(
        client,
        lost.map(({ item }) => item.externalId),
      );
      for (const { index, item } of lost) {
        const row = lookup(winners, item.externalId);
        outcomes[index] = row
          ? { ok: true, action: row, created: false }
          : {
              ok: false,
              error: new ActionqError(
                "unavailable",
                "CONCURRENT_INSERT",
                `external_id: ${JSON.stringify(item.externalId)} was taken by a transaction that did not commit; retry`,
                { field: "external_id" },
              ),
            };
      }
    }
    // Those that wait or may be claimed enter the queue as an enqueue's
    // do; finished ones only add to the log.
    changes.push(
      ...moved(
        (row) => (isFinished(row.status) ? "imported" : "enqueued"),
        created,
        null,
        () => actor,
      ),
    );
  }
  return outcomes.map((outcome) => outcome!);
}
