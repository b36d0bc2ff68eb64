// The closed intervals of the hold_claims change windows, materialised for
// the claim statement (see migrations/009_change_windows.sql for why one
// set, replaced whole), and what they hold back: per window for the queue's
// vital signs, per action for GetAction.
import type pg from "pg";
import { inTransaction } from "./db.js";
import { windowHolds } from "./pauses.js";

/** One closed interval as the claim statement reads it. */
export interface WindowInterval {
  windowName: string;
  start: Date;
  end: Date;
  /** LIKE patterns; null matches anything. */
  actionTypes: string[] | null;
  projects: string[] | null;
  riskLevels: string[] | null;
}

const SourceEnsure = "INSERT INTO /*schema*/change_window_source (policy_version, horizon_end) VALUES ('', 'epoch') ON CONFLICT (singleton) DO NOTHING";
// Taken FOR UPDATE: two servers writing at once take turns, and the second
// sees what the first wrote.
const SourceLock = "SELECT policy_version, horizon_end FROM /*schema*/change_window_source FOR UPDATE";
const SourceGet = "SELECT policy_version, horizon_end FROM /*schema*/change_window_source";
const IntervalsDelete = "DELETE FROM /*schema*/change_window_intervals";
const IntervalsInsert = `
INSERT INTO /*schema*/change_window_intervals (window_name, starts_at, ends_at, action_types, projects, risk_levels)
SELECT r.window_name, r.starts_at, r.ends_at, r.action_types, r.projects, r.risk_levels
FROM jsonb_to_recordset($1::jsonb) AS r(window_name text, starts_at timestamptz, ends_at timestamptz, action_types text[], projects text[], risk_levels text[])`;
const SourceSet = "UPDATE /*schema*/change_window_source SET policy_version = $1, horizon_end = $2, written_at = now()";
// Other replicas' claim streams look again ('r' is what a resume sends):
// a reload may have opened a window.
const NotifyChanged = "SELECT pg_notify('actionq_' || current_schema(), 'r')";

/** Milliseconds from the database's now() to the next end of a closed
 * interval: when held actions may become claimable. */
const NextOpening = `
SELECT (extract(epoch FROM min(ends_at) - now()) * 1000)::float8 AS in_ms FROM /*schema*/change_window_intervals WHERE ends_at > now()`;

/** Approved, due actions that a closed window holds, per window. An action
 * held by two windows counts for both. */
const HeldCounts = `
SELECT w.window_name, count(*)::text AS n
FROM /*schema*/change_window_intervals w JOIN /*schema*/actions a ON ${windowHolds("w", "a")}
WHERE a.status = 'approved' AND NOT a.deferred AND a.break_glass_at IS NULL
GROUP BY w.window_name`;

/** The window holding one approved action now, the one closed longest. */
const HoldOf = `
SELECT w.window_name, w.ends_at FROM /*schema*/actions a JOIN /*schema*/change_window_intervals w ON ${windowHolds("w", "a")}
WHERE a.id = $1 AND a.status = 'approved' AND a.break_glass_at IS NULL
ORDER BY w.ends_at DESC LIMIT 1`;

export class WindowStore {
  constructor(private readonly pool: pg.Pool) {}

  /** Replaces the whole set with `intervals`, written by `policyVersion`
   * and reaching to `horizonEnd`. Unless `force`, only when the set in
   * force is from the same version or reaches less far than `minHorizon`
   * (its writer is gone). Returns whether it wrote. */
  async replace(
    policyVersion: string,
    intervals: WindowInterval[],
    horizonEnd: Date,
    options: { force: boolean; minHorizon: Date },
  ): Promise<{ written: boolean; inForce: string }> {
    return inTransaction(this.pool, async (client) => {
      await client.query(SourceEnsure);
      const { rows } = await client.query<{ policy_version: string; horizon_end: Date }>(SourceLock);
      const current = rows[0]!;
      const stale = current.horizon_end.getTime() < options.minHorizon.getTime();
      if (!options.force && current.policy_version !== policyVersion && current.policy_version !== "" && !stale) {
        return { written: false, inForce: current.policy_version };
      }
      await client.query(IntervalsDelete);
      await client.query(IntervalsInsert, [
        JSON.stringify(
          intervals.map((interval) => ({
            window_name: interval.windowName,
            starts_at: interval.start.toISOString(),
            ends_at: interval.end.toISOString(),
            action_types: interval.actionTypes,
            projects: interval.projects,
            risk_levels: interval.riskLevels,
          })),
        ),
      ]);
      await client.query(SourceSet, [policyVersion, horizonEnd]);
      await client.query(NotifyChanged);
      return { written: true, inForce: policyVersion };
    });
  }

  /** The policy version whose windows are in force; "" before any. */
  async source(): Promise<string> {
    const { rows } = await this.pool.query<{ policy_version: string }>(SourceGet);
    return rows[0]?.policy_version ?? "";
  }

  /** Milliseconds until a closed interval ends, by the database's clock;
   * null when none is closed or ahead. */
  async nextOpeningInMs(): Promise<number | null> {
    const { rows } = await this.pool.query<{ in_ms: number | null }>(NextOpening);
    return rows[0]?.in_ms ?? null;
  }

  async heldCounts(): Promise<Map<string, bigint>> {
    const { rows } = await this.pool.query<{ window_name: string; n: string }>(HeldCounts);
    return new Map(rows.map((row) => [row.window_name, BigInt(row.n)]));
  }

  /** The window holding this action now and when that interval ends. */
  async holdOf(actionId: string): Promise<{ windowName: string; until: Date } | null> {
    const { rows } = await this.pool.query<{ window_name: string; ends_at: Date }>(HoldOf, [actionId]);
    return rows[0] ? { windowName: rows[0].window_name, until: rows[0].ends_at } : null;
  }
}
