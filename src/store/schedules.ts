// The schedules store: creating, changing, pausing, resuming and deleting
// a schedule, each with its event in the same transaction, and reading
// schedules with their ticks. Acting on ticks (which enqueues actions) is
// in src/schedule/ticks.ts, inside the actions store's transaction.
import type { JsonObject } from "@bufbuild/protobuf";
import type pg from "pg";
import type { OverlapPolicy, Status, TickOutcome } from "../domain/vocabulary.js";
import { ActionqError } from "../errors.js";
import { Clock } from "../schedule/clock.js";
import { inTransaction } from "./db.js";
import {
  DatabaseNow,
  ScheduleDelete,
  ScheduleEvent,
  ScheduleGet,
  ScheduleInsert,
  ScheduleList,
  ScheduleLock,
  SchedulePause,
  ScheduleReplace,
  ScheduleResume,
  TicksLatest,
  TicksPrune,
  TicksRecent,
  TickUnbuffer,
} from "./schedule-queries.js";

/** A schedule as the store returns it. bigint columns stay strings. */
export interface ScheduleRow {
  key: string;
  id: string;
  /** The EnqueueActionRequest as proto JSON. */
  template: JsonObject;
  project: string;
  cron: string | null;
  interval_ms: string | null;
  time_zone: string;
  anchor_time: Date;
  start_time: Date | null;
  end_time: Date | null;
  jitter_ms: string;
  overlap_policy: OverlapPolicy;
  catch_up_ms: string;
  paused: boolean;
  pause_reason: string;
  owner: string;
  description: string;
  created_at: Date;
  updated_at: Date;
  next_tick_time: Date | null;
  buffered_tick_time: Date | null;
  revision: string;
  deleted_at: Date | null;
}

export interface TickRow {
  tick_time: Date;
  outcome: TickOutcome;
  action_id: string | null;
  reason: string;
  backfill: boolean;
  recorded_at: Date;
  action_status?: Status | null;
}

/** A schedule's definition, checked: what CreateSchedule and
 * UpdateSchedule write. */
export interface ScheduleSpec {
  id: string;
  template: JsonObject;
  project: string;
  cron: string | null;
  intervalMs: number | null;
  timeZone: string;
  startTime: Date | null;
  endTime: Date | null;
  jitterMs: number;
  overlapPolicy: OverlapPolicy;
  catchUpMs: number;
  description: string;
}

export function scheduleNotFound(id: string): ActionqError {
  return new ActionqError("not_found", "SCHEDULE_NOT_FOUND", `schedule ${id} does not exist`, { schedule_id: id });
}

/** The clock of a schedule as stored. */
export function clockOf(row: Pick<ScheduleRow, "cron" | "interval_ms" | "time_zone" | "anchor_time" | "start_time" | "end_time">): Clock {
  const bounds = { start: row.start_time, end: row.end_time };
  return row.cron !== null
    ? new Clock({ cron: row.cron, timeZone: row.time_zone }, bounds)
    : new Clock({ intervalMs: Number(row.interval_ms), anchor: row.anchor_time }, bounds);
}

/** Interval ticks count from start_time, else from creation; a schedule
 * ticks first strictly after it is created or changed. */
function firstTick(spec: Pick<ScheduleSpec, "cron" | "intervalMs" | "timeZone" | "startTime" | "endTime">, anchor: Date, now: Date): Date | null {
  return clockOf({
    cron: spec.cron,
    interval_ms: spec.intervalMs === null ? null : String(spec.intervalMs),
    time_zone: spec.timeZone,
    anchor_time: anchor,
    start_time: spec.startTime,
    end_time: spec.endTime,
  }).after(now);
}

function specParams(spec: ScheduleSpec): unknown[] {
  return [JSON.stringify(spec.template), spec.project, spec.cron, spec.intervalMs, spec.timeZone];
}

/** The fields of a schedule an update may change, for its event. */
function changedFields(before: ScheduleRow, after: ScheduleRow): string[] {
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  const fields: [string, unknown, unknown][] = [
    ["template", before.template, after.template],
    ["cron", before.cron, after.cron],
    ["interval", before.interval_ms, after.interval_ms],
    ["time_zone", before.time_zone, after.time_zone],
    ["start_time", before.start_time, after.start_time],
    ["end_time", before.end_time, after.end_time],
    ["jitter", before.jitter_ms, after.jitter_ms],
    ["overlap_policy", before.overlap_policy, after.overlap_policy],
    ["catch_up_window", before.catch_up_ms, after.catch_up_ms],
    ["description", before.description, after.description],
  ];
  return fields.filter(([, a, b]) => !same(a, b)).map(([name]) => name);
}

function clockPayload(row: ScheduleRow): JsonObject {
  return {
    schedule_id: row.id,
    revision: Number(row.revision),
    ...(row.cron !== null ? { cron: row.cron } : { interval_ms: Number(row.interval_ms) }),
    time_zone: row.time_zone,
    overlap_policy: row.overlap_policy,
    next_tick_time: row.next_tick_time?.toISOString() ?? null,
  };
}

export class ScheduleStore {
  private readonly listeners: (() => void)[] = [];

  constructor(private readonly pool: pg.Pool) {}

  /** Called after a commit that may change when a schedule next ticks
   * (the scheduler of this process wakes; others poll). */
  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }

  private async write<T>(fn: (client: pg.PoolClient, now: Date) => Promise<T>): Promise<T> {
    const result = await inTransaction(this.pool, async (client) => {
      const { rows } = await client.query<{ now: Date }>(DatabaseNow);
      return fn(client, rows[0]!.now);
    });
    this.changed();
    return result;
  }

  async create(spec: ScheduleSpec, owner: string): Promise<ScheduleRow> {
    return this.write(async (client, now) => {
      const anchor = spec.startTime ?? now;
      const { rows } = await client.query<ScheduleRow>(ScheduleInsert, [
        spec.id,
        ...specParams(spec),
        anchor,
        spec.startTime,
        spec.endTime,
        spec.jitterMs,
        spec.overlapPolicy,
        spec.catchUpMs,
        owner,
        spec.description,
        firstTick(spec, anchor, now),
      ]);
      const row = rows[0];
      if (!row) {
        throw new ActionqError("already_exists", "SCHEDULE_EXISTS", `schedule ${spec.id} already exists`, { schedule_id: spec.id, field: "schedule.id" });
      }
      await client.query(ScheduleEvent, ["schedule_created", owner, JSON.stringify({ ...clockPayload(row), owner })]);
      return row;
    });
  }

  async update(spec: ScheduleSpec, expectedRevision: string | null, actor: string, allow: (row: ScheduleRow) => void): Promise<ScheduleRow> {
    return this.write(async (client, now) => {
      const before = await this.lock(client, spec.id);
      allow(before);
      if (expectedRevision !== null && expectedRevision !== before.revision) {
        throw new ActionqError(
          "failed_precondition",
          "SCHEDULE_REVISION_MISMATCH",
          `schedule ${spec.id} is at revision ${before.revision}, not ${expectedRevision}: it changed since it was read`,
          { schedule_id: spec.id, current_revision: before.revision, field: "expected_revision" },
        );
      }
      // Interval ticks keep counting from the same anchor unless the start
      // moved; a paused schedule stays paused (no next tick).
      const anchor = spec.startTime ?? (before.start_time === null ? before.anchor_time : now);
      const next = before.paused ? null : firstTick(spec, anchor, now);
      const { rows } = await client.query<ScheduleRow>(ScheduleReplace, [
        before.key,
        ...specParams(spec),
        anchor,
        spec.startTime,
        spec.endTime,
        spec.jitterMs,
        spec.overlapPolicy,
        spec.catchUpMs,
        spec.description,
        next,
      ]);
      const after = rows[0]!;
      await client.query(ScheduleEvent, ["schedule_updated", actor, JSON.stringify({ ...clockPayload(after), changed: changedFields(before, after) })]);
      return after;
    });
  }

  async pause(id: string, reason: string, actor: string, allow: (row: ScheduleRow) => void): Promise<{ schedule: ScheduleRow; changed: boolean }> {
    return this.write(async (client) => {
      const before = await this.lock(client, id);
      allow(before);
      const { rows } = await client.query<ScheduleRow>(SchedulePause, [before.key, reason]);
      const after = rows[0];
      if (!after) return { schedule: before, changed: false };
      // A buffered tick does not outlive the pause.
      if (before.buffered_tick_time) {
        await client.query(TickUnbuffer, [before.key, before.buffered_tick_time]);
      }
      await client.query(ScheduleEvent, ["schedule_paused", actor, JSON.stringify({ schedule_id: id, reason, revision: Number(after.revision) })]);
      return { schedule: after, changed: true };
    });
  }

  async resume(id: string, reason: string, actor: string, allow: (row: ScheduleRow) => void): Promise<{ schedule: ScheduleRow; changed: boolean }> {
    return this.write(async (client, now) => {
      const before = await this.lock(client, id);
      allow(before);
      if (!before.paused) return { schedule: before, changed: false };
      // From the next tick: the ticks that passed while paused are not
      // caught up.
      const { rows } = await client.query<ScheduleRow>(ScheduleResume, [before.key, clockOf(before).after(now)]);
      const after = rows[0]!;
      await client.query(ScheduleEvent, [
        "schedule_resumed",
        actor,
        JSON.stringify({ schedule_id: id, reason, revision: Number(after.revision), next_tick_time: after.next_tick_time?.toISOString() ?? null }),
      ]);
      return { schedule: after, changed: true };
    });
  }

  async delete(id: string, reason: string, actor: string, allow: (row: ScheduleRow) => void): Promise<ScheduleRow> {
    return this.write(async (client) => {
      const before = await this.lock(client, id);
      allow(before);
      await client.query<ScheduleRow>(ScheduleDelete, [before.key]);
      await client.query(ScheduleEvent, ["schedule_deleted", actor, JSON.stringify({ schedule_id: id, reason, revision: Number(before.revision) })]);
      return before;
    });
  }

  /** The live schedule `id` without locking it, for the access checks
   * that come before a change. */
  async find(id: string): Promise<ScheduleRow | undefined> {
    const { rows } = await this.pool.query<ScheduleRow>(ScheduleGet, [id]);
    return rows[0];
  }

  async get(id: string, recent: number): Promise<{ schedule: ScheduleRow; ticks: TickRow[] }> {
    const schedule = await this.find(id);
    if (!schedule) throw scheduleNotFound(id);
    const { rows } = await this.pool.query<TickRow>(TicksRecent, [schedule.key, recent]);
    return { schedule, ticks: rows };
  }

  /** A page of live schedules by id, after `afterId`, in `projects` (all
   * when empty), each with its latest tick. */
  async list(projects: string[], afterId: string, limit: number): Promise<{ schedule: ScheduleRow; last: TickRow | undefined }[]> {
    const { rows } = await this.pool.query<ScheduleRow>(ScheduleList, [afterId, projects, limit]);
    if (rows.length === 0) return [];
    const { rows: ticks } = await this.pool.query<TickRow & { schedule_key: string }>(TicksLatest, [rows.map((row) => row.key)]);
    const byKey = new Map(ticks.map((tick) => [tick.schedule_key, tick]));
    return rows.map((schedule) => ({ schedule, last: byKey.get(schedule.key) }));
  }

  /** The latest tick of one schedule. */
  async lastTick(key: string): Promise<TickRow | undefined> {
    const { rows } = await this.pool.query<TickRow>(TicksRecent, [key, 1]);
    return rows[0];
  }

  /** Deletes a batch of ticks that enqueued nothing, older than `ageMs`. */
  async pruneTicks(ageMs: number, batchSize = 1000): Promise<number> {
    const { rowCount } = await this.pool.query(TicksPrune, [ageMs, batchSize]);
    return rowCount ?? 0;
  }

  private async lock(client: pg.PoolClient, id: string): Promise<ScheduleRow> {
    const { rows } = await client.query<ScheduleRow>(ScheduleLock, [id]);
    const row = rows[0];
    if (!row) throw scheduleNotFound(id);
    return row;
  }
}
