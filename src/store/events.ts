// Named queries on the event log. Reads never run past the horizon: the id
// below which every event is settled (see event_horizon() in migration 001),
// so that a reader following an id cursor never skips an event that commits
// after a larger one, and never sees one twice.
import type { JsonObject } from "@bufbuild/protobuf";
import type pg from "pg";
import { actionNotFound } from "../errors.js";
import { type EventRow, eventColumns } from "./rows.js";

const EventHorizon = "SELECT /*schema*/event_horizon()::text AS horizon";

const EventListAfter = `
SELECT ${eventColumns("e")} FROM /*schema*/events e
WHERE e.id > $1 AND e.id <= $2
  AND ($3::bigint IS NULL OR e.action_id = $3)
  AND ($4::text[] IS NULL OR e.event_type = ANY($4))
ORDER BY e.id
LIMIT $5`;

/** Unbounded by the horizon: for the live tail, which checks for gaps itself. */
const EventReadAfter = `SELECT ${eventColumns("e")} FROM /*schema*/events e WHERE e.id > $1 ORDER BY e.id LIMIT $2`;

const EventInsertOne = `
INSERT INTO /*schema*/events (action_id, event_type, actor, payload)
SELECT $1::bigint, $2, $3, $4::jsonb
WHERE $1::bigint IS NULL OR EXISTS (SELECT 1 FROM /*schema*/actions WHERE id = $1)
RETURNING ${eventColumns("events")}`;

export interface EventFilter {
  actionId: string | null;
  eventTypes: string[];
}

export class EventStore {
  constructor(private readonly pool: pg.Pool) {}

  /** Every event id up to the returned one is settled. */
  async horizon(): Promise<bigint> {
    const { rows } = await this.pool.query<{ horizon: string }>(EventHorizon);
    return BigInt(rows[0]!.horizon);
  }

  /** Events after `afterId` up to `upTo` (the horizon when not given),
   * filtered. `next` is where the next read should start: the last event
   * returned when the page is full, else the bound itself, since nothing
   * up to it is left unread. */
  async list(afterId: bigint, filter: EventFilter, limit: number, upTo?: bigint): Promise<{ events: EventRow[]; next: bigint }> {
    const bound = upTo ?? (await this.horizon());
    if (bound <= afterId) return { events: [], next: afterId };
    const { rows } = await this.pool.query<EventRow>(EventListAfter, [
      afterId.toString(),
      bound.toString(),
      filter.actionId,
      filter.eventTypes.length > 0 ? filter.eventTypes : null,
      limit,
    ]);
    const next = rows.length === limit ? BigInt(rows[rows.length - 1]!.id) : bound;
    return { events: rows, next };
  }

  /** Committed events after `afterId`, unfiltered, possibly with gaps where
   * a transaction has not committed yet. */
  async readAfter(afterId: bigint, limit: number): Promise<EventRow[]> {
    const { rows } = await this.pool.query<EventRow>(EventReadAfter, [afterId.toString(), limit]);
    return rows;
  }

  async append(event: { actionId: string | null; eventType: string; actor: string; payload: JsonObject }): Promise<EventRow> {
    const { rows } = await this.pool.query<EventRow>(EventInsertOne, [event.actionId, event.eventType, event.actor, JSON.stringify(event.payload)]);
    const row = rows[0];
    if (!row) throw actionNotFound(event.actionId!);
    return row;
  }
}
