// The kill switch and the queue's vital signs. A pause is a row in the
// `pauses` table; the claim and enqueue statements read it themselves, so
// it holds on every server from the moment it commits. Each pause and
// resume writes its event in the same statement.
import type pg from "pg";
import type { Commits } from "./commits.js";
import { type HeldKey, heldKeys } from "./concurrency.js";

export const PAUSE_KINDS = ["all", "action_type", "project", "auto_approval"] as const;
export type PauseKind = (typeof PAUSE_KINDS)[number];

export interface PauseScope {
  kind: PauseKind;
  /** The action type or project; empty for `all` and `auto_approval`. */
  value: string;
}

export interface PauseRow {
  kind: PauseKind;
  value: string;
  paused_by: string;
  reason: string;
  created_at: Date;
}

export interface QueueStats {
  counts: { status: string; action_type: string; n: string }[];
  claimable: string;
  oldestClaimableAt: Date | null;
  pauses: PauseRow[];
  heldKeys: HeldKey[];
}

/** What "claimable" means, for a relation aliased `alias`: approved, due
 * (not deferred), and held back by no pause and no closed change window
 * (unless an operator broke glass on it). The claim statement and the
 * queue's vital signs share it, so they can never disagree. Pauses and
 * windows are read in the statement itself, with now(), so one committed
 * on any server holds back every later claim on every server, and a window
 * that opens releases its actions at that instant, without a sweep. */
export function claimableWhere(alias: string): string[] {
  return [
    `${alias}.status = 'approved'`,
    `NOT ${alias}.deferred`,
    "NOT EXISTS (SELECT 1 FROM /*schema*/pauses p WHERE p.kind = 'all')",
    `NOT EXISTS (SELECT 1 FROM /*schema*/pauses p WHERE p.kind = 'action_type' AND p.value = ${alias}.action_type)`,
    `NOT EXISTS (SELECT 1 FROM /*schema*/pauses p WHERE p.kind = 'project' AND p.value = ${alias}.project)`,
    `(${alias}.break_glass_at IS NOT NULL OR NOT EXISTS (SELECT 1 FROM /*schema*/change_window_intervals w WHERE ${windowHolds("w", alias)}))`,
  ];
}

/** A closed interval `w` of a hold_claims window that applies to the
 * action aliased `alias`, now. */
export function windowHolds(w: string, alias: string): string {
  return `${w}.ends_at > now() AND ${w}.starts_at <= now()
    AND (${w}.action_types IS NULL OR ${alias}.action_type LIKE ANY (${w}.action_types))
    AND (${w}.projects IS NULL OR ${alias}.project LIKE ANY (${w}.projects))
    AND (${w}.risk_levels IS NULL OR ${alias}.risk_level = ANY (${w}.risk_levels))`;
}

const scopeJson = "jsonb_build_object('kind', kind, 'value', value)";

const PauseInsert = `
WITH ins AS (
  INSERT INTO /*schema*/pauses (kind, value, paused_by, reason) VALUES ($1, $2, $3, $4)
  ON CONFLICT (kind, value) DO NOTHING
  RETURNING *
),
ev AS (
  INSERT INTO /*schema*/events (action_id, event_type, actor, payload)
  SELECT NULL, 'coordinator_paused', paused_by, jsonb_build_object('scope', ${scopeJson}, 'reason', reason) FROM ins
)
SELECT *, true AS created FROM ins
UNION ALL
SELECT *, false AS created FROM /*schema*/pauses WHERE kind = $1 AND value = $2 AND NOT EXISTS (SELECT 1 FROM ins)`;

const PauseDelete = `
WITH del AS (
  DELETE FROM /*schema*/pauses WHERE kind = $1 AND value = $2 RETURNING *
),
ev AS (
  INSERT INTO /*schema*/events (action_id, event_type, actor, payload)
  SELECT NULL, 'coordinator_resumed', $3::text, jsonb_build_object(
    'scope', ${scopeJson}, 'reason', $4::text, 'paused_by', paused_by, 'pause_reason', reason, 'paused_at', /*schema*/rfc3339(created_at))
  FROM del
)
SELECT * FROM del`;

const PauseList = "SELECT * FROM /*schema*/pauses ORDER BY created_at, kind, value";

// Finished actions are counted too, so this reads the whole table: an
// operator's question, not a hot path.
const CountByStatusAndType = `
SELECT status, action_type, count(*)::text AS n FROM /*schema*/actions GROUP BY status, action_type ORDER BY status, action_type`;

const Claimable = `
SELECT count(*)::text AS n, min(approved_at) AS oldest FROM /*schema*/actions a
WHERE ${claimableWhere("a").join(" AND ")}`;

const LiveCounts = `
SELECT status, action_type, count(*)::text AS n FROM /*schema*/actions
WHERE status IN ('pending', 'approved', 'claimed')
GROUP BY status, action_type`;

export class PauseStore {
  constructor(
    private readonly pool: pg.Pool,
    /** Every committed pause and resume is reported here, once. */
    private readonly commits: Commits,
  ) {}

  /** Pauses a scope; when it is already paused, returns that pause with
   * `created` false and writes nothing. */
  async pause(scope: PauseScope, actor: string, reason: string): Promise<{ pause: PauseRow; created: boolean }> {
    // A concurrent pause of the same scope may commit after this
    // statement's snapshot: the insert then conflicts but the select cannot
    // see it yet. The retry sees it.
    for (let attempt = 0; ; attempt++) {
      const { rows } = await this.pool.query<PauseRow & { created: boolean }>(PauseInsert, [scope.kind, scope.value, actor, reason]);
      const row = rows[0];
      if (row) {
        const { created, ...pause } = row;
        if (created) this.commits.publish([{ kind: "paused", pause, actor }]);
        return { pause, created };
      }
      if (attempt >= 3) throw new Error(`pause of ${scope.kind} ${scope.value} neither inserted nor found`);
    }
  }

  /** Lifts a pause; undefined when the scope was not paused. */
  async resume(scope: PauseScope, actor: string, reason: string): Promise<PauseRow | undefined> {
    const { rows } = await this.pool.query<PauseRow>(PauseDelete, [scope.kind, scope.value, actor, reason]);
    if (rows[0]) this.commits.publish([{ kind: "resumed", pause: rows[0], actor }]);
    return rows[0];
  }

  async list(): Promise<PauseRow[]> {
    const { rows } = await this.pool.query<PauseRow>(PauseList);
    return rows;
  }

  /** Live actions by status and type: what metrics scrape, often, so it
   * reads only the live part of the table. */
  async liveCounts(): Promise<{ status: string; action_type: string; n: string }[]> {
    const { rows } = await this.pool.query<{ status: string; action_type: string; n: string }>(LiveCounts);
    return rows;
  }

  async claimable(): Promise<{ n: string; oldestAt: Date | null }> {
    const { rows } = await this.pool.query<{ n: string; oldest: Date | null }>(Claimable);
    return { n: rows[0]!.n, oldestAt: rows[0]!.oldest };
  }

  async stats(): Promise<QueueStats> {
    const [counts, claimable, pauses, held] = await Promise.all([
      this.pool.query<{ status: string; action_type: string; n: string }>(CountByStatusAndType),
      this.pool.query<{ n: string; oldest: Date | null }>(Claimable),
      this.list(),
      heldKeys(this.pool),
    ]);
    const head = claimable.rows[0]!;
    return { counts: counts.rows, claimable: head.n, oldestClaimableAt: head.oldest, pauses, heldKeys: held };
  }
}
