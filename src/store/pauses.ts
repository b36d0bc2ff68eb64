// The kill switch and the queue's vital signs. A pause is a row in the
// `pauses` table; the claim and enqueue statements read it themselves, so
// it holds on every server from the moment it commits. Each pause and
// resume writes its event in the same statement.
import type pg from "pg";

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
}

/** What "claimable" means, for a relation aliased `alias`: approved, due
 * (not deferred), and held back by no pause. The claim statement and the
 * queue's vital signs share it, so they can never disagree. Pauses are read
 * in the statement itself, so one committed on any server holds back every
 * later claim on every server. */
export function claimableWhere(alias: string): string[] {
  return [
    `${alias}.status = 'approved'`,
    `NOT ${alias}.deferred`,
    "NOT EXISTS (SELECT 1 FROM pauses p WHERE p.kind = 'all')",
    `NOT EXISTS (SELECT 1 FROM pauses p WHERE p.kind = 'action_type' AND p.value = ${alias}.action_type)`,
    `NOT EXISTS (SELECT 1 FROM pauses p WHERE p.kind = 'project' AND p.value = ${alias}.project)`,
  ];
}

const scopeJson = "jsonb_build_object('kind', kind, 'value', value)";

const PauseInsert = `
WITH ins AS (
  INSERT INTO pauses (kind, value, paused_by, reason) VALUES ($1, $2, $3, $4)
  ON CONFLICT (kind, value) DO NOTHING
  RETURNING *
),
ev AS (
  INSERT INTO events (action_id, event_type, actor, payload)
  SELECT NULL, 'coordinator_paused', paused_by, jsonb_build_object('scope', ${scopeJson}, 'reason', reason) FROM ins
)
SELECT *, true AS created FROM ins
UNION ALL
SELECT *, false AS created FROM pauses WHERE kind = $1 AND value = $2 AND NOT EXISTS (SELECT 1 FROM ins)`;

const PauseDelete = `
WITH del AS (
  DELETE FROM pauses WHERE kind = $1 AND value = $2 RETURNING *
),
ev AS (
  INSERT INTO events (action_id, event_type, actor, payload)
  SELECT NULL, 'coordinator_resumed', $3::text, jsonb_build_object(
    'scope', ${scopeJson}, 'reason', $4::text, 'paused_by', paused_by, 'pause_reason', reason, 'paused_at', created_at)
  FROM del
)
SELECT * FROM del`;

const PauseList = "SELECT * FROM pauses ORDER BY created_at, kind, value";

// Finished actions are counted too, so this reads the whole table: an
// operator's question, not a hot path.
const CountByStatusAndType = `
SELECT status, action_type, count(*)::text AS n FROM actions GROUP BY status, action_type ORDER BY status, action_type`;

const Claimable = `
SELECT count(*)::text AS n, min(approved_at) AS oldest FROM actions a
WHERE ${claimableWhere("a").join(" AND ")}`;

const LiveCounts = `
SELECT status, action_type, count(*)::text AS n FROM actions
WHERE status IN ('pending', 'approved', 'claimed')
GROUP BY status, action_type`;

export class PauseStore {
  constructor(private readonly pool: pg.Pool) {}

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
        return { pause, created };
      }
      if (attempt >= 3) throw new Error(`pause of ${scope.kind} ${scope.value} neither inserted nor found`);
    }
  }

  /** Lifts a pause; undefined when the scope was not paused. */
  async resume(scope: PauseScope, actor: string, reason: string): Promise<PauseRow | undefined> {
    const { rows } = await this.pool.query<PauseRow>(PauseDelete, [scope.kind, scope.value, actor, reason]);
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
    const [counts, claimable, pauses] = await Promise.all([
      this.pool.query<{ status: string; action_type: string; n: string }>(CountByStatusAndType),
      this.pool.query<{ n: string; oldest: Date | null }>(Claimable),
      this.list(),
    ]);
    const head = claimable.rows[0]!;
    return { counts: counts.rows, claimable: head.n, oldestClaimableAt: head.oldest, pauses };
  }
}
