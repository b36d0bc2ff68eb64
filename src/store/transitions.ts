// Every change of an action's state goes through changeWithEvent: one
// statement that locks the rows, updates them and appends their events, so
// the change and its history commit together and no path can forget the
// event. Queries are built once, at module load, from constant fragments.
import { actionColumns } from "./rows.js";

export interface ChangeSpec {
  /** Optional input relation `i` (must have an `id` column), such as an
   * unnest of parameter arrays. */
  inputs?: string;
  /** A SELECT producing relation `o`: the rows to change, locked FOR UPDATE.
   * It must have an `id` column; other columns are old values for the event
   * (prefix them `old_`). */
  lock: string;
  /** The SET list of `UPDATE actions a ... FROM o [, i]`. */
  set: string;
  /** Extra FROM items (after `o`) and WHERE conditions for the update. */
  from?: string;
  where?: string;
  /** The event appended for each changed row. Expressions may use `c` (the
   * row after the change), `o` and `i`. */
  event?: { type: string; actor: string; payload: string };
  /** Extra columns of the result, from `c` or `o`, such as an old value. */
  returning?: string;
}

export function changeWithEvent(spec: ChangeSpec): string {
  const ctes: string[] = [];
  if (spec.inputs) ctes.push(`i AS (${spec.inputs})`);
  ctes.push(`o AS (${spec.lock})`);
  ctes.push(
    `c AS (
      UPDATE /*schema*/actions a SET ${spec.set}, updated_at = now()
      FROM o${spec.inputs ? " JOIN i USING (id)" : ""}${spec.from ?? ""}
      WHERE a.id = o.id${spec.where ? ` AND ${spec.where}` : ""}
      RETURNING a.*
    )`,
  );
  if (spec.event) {
    ctes.push(
      `e AS (
        INSERT INTO /*schema*/events (action_id, event_type, actor, payload)
        SELECT c.id, ${spec.event.type}, ${spec.event.actor}, ${spec.event.payload}
        FROM c JOIN o USING (id)${spec.inputs ? " JOIN i USING (id)" : ""}
        ORDER BY c.id
      )`,
    );
  }
  const extra = spec.returning ? `, ${spec.returning}` : "";
  return `WITH ${ctes.join(",\n")}\nSELECT ${actionColumns("c")}${extra} FROM c${spec.returning ? " JOIN o USING (id)" : ""} ORDER BY c.id`;
}

/** The SET list that clears a claim from an action going back to the queue. */
export const CLEAR_CLAIM_SET = `claimed_by = NULL, claim_token = NULL, claim_session = NULL,
  claimed_at = NULL, claim_deadline = NULL, lease = NULL, ack_deadline = NULL, acked_at = NULL`;

/** The SET list that puts a claim lost in delivery (never acknowledged, or
 * its lease ran out) back in the queue, to be claimed again at once. */
export const REQUEUE_LOST_SET = `status = 'approved', ${CLEAR_CLAIM_SET}, lost_deliveries = a.lost_deliveries + 1`;

/** The SET list shared by every move out of CLAIMED into a final status. */
export const FINISH_CLAIM_SET = `finished_at = now(), claim_deadline = NULL, claim_session = NULL, claimed_at = NULL,
  ack_deadline = NULL`;
