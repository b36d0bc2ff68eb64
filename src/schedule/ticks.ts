// Acting on a schedule's ticks. Every replica may run this at once: a
// schedule is acted on only under its row lock (SKIP LOCKED for the
// scheduler, waiting for a backfill), and in one transaction the ticks are
// recorded, their actions enqueued through the actions store's one insert
// path, and next_tick_time advanced. A crash anywhere rolls all of it
// back, so a tick is acted on once or not at all; the unique index on
// (schedule_key, schedule_tick_time) refuses a second action regardless.
import type { Logger } from "pino";
import type { OverlapPolicy, Status } from "../domain/vocabulary.js";
import { ActionqError, invalidField } from "../errors.js";
import type { ActionStore, ActionTransaction } from "../store/actions.js";
import {
  DatabaseNow,
  ScheduleAdvance,
  ScheduleEvent,
  ScheduleLock,
  ScheduleLockDue,
  ScheduleUnfinished,
  TickRecord,
  TicksRecordSkipped,
  TicksRecorded,
} from "../store/schedule-queries.js";
import { type ScheduleRow, type TickRow, clockOf, scheduleNotFound } from "../store/schedules.js";
import type { TemplateActions } from "./template.js";

/** A tick acted on within this long of its time is on time, whatever the
 * catch-up window: a zero window must not skip a tick that a busy
 * scheduler reached a moment late. */
export const ON_TIME_GRACE_MS = 5000;
/** Skipped ticks of one outage recorded one by one; the event counts all. */
export const SKIPPED_ROWS_CAP = 100;
/** Counting skipped cron ticks stops here (the event then says "at
 * least"): each costs the cron library a step, under the schedule's lock.
 * Interval ticks are counted exactly, by arithmetic. */
export const SKIPPED_COUNT_CAP = 1000;
/** Ticks acted on per schedule per transaction; the rest follow at once. */
export const TICKS_PER_PASS = 100;

const ACTOR = "server:scheduler";

interface Unfinished {
  id: string;
  status: Status;
}

/** How many ticks had each outcome in one transaction. */
export type TickTally = Map<TickRow["outcome"], number>;

export class Ticks {
  constructor(
    private readonly actions: ActionStore,
    private readonly templates: TemplateActions,
    private readonly log: Logger,
    /** Told once a transaction that acted on ticks has committed. */
    private readonly onCommitted: (tally: TickTally) => void = () => {},
  ) {}

  /** Runs `fn` in the actions store's transaction; reports the tally of
   * outcomes only once it has committed. */
  private async transact<T>(fn: (tx: ActionTransaction, tally: TickTally) => Promise<T>): Promise<T> {
    const tally: TickTally = new Map();
    const result = await this.actions.transact((tx) => fn(tx, tally));
    if (tally.size > 0) this.onCommitted(tally);
    return result;
  }

  /** Acts on one schedule with work to do, if any, skipping `exclude`.
   * Returns its key, or null when none had work; `working.key` names the
   * schedule as soon as it is locked, for the caller to tell which failed. */
  async runOne(exclude: string[], working: { key?: string } = {}): Promise<string | null> {
    return this.transact(async (tx, tally) => {
      const { rows } = await tx.client.query<ScheduleRow & { now: Date }>(ScheduleLockDue, [exclude]);
      const schedule = rows[0];
      if (!schedule) return null;
      working.key = schedule.key;
      const now = schedule.now;
      const state = { buffered: schedule.buffered_tick_time };
      if (state.buffered && (await this.unfinished(tx, schedule)).length === 0) {
        const tick = state.buffered;
        state.buffered = null;
        count(tally, (await this.enqueue(tx, schedule, tick, false, now)).outcome);
      }
      let next = schedule.next_tick_time;
      if (next && next <= now) next = await this.actOnDue(tx, schedule, next, now, state, tally);
      await tx.client.query(ScheduleAdvance, [schedule.key, next, state.buffered]);
      return schedule.key;
    });
  }

  /** The due ticks from `next` up to now: those older than the catch-up
   * window are skipped (bounded), the rest acted on oldest first. Returns
   * the next tick to act on. */
  private async actOnDue(
    tx: ActionTransaction,
    schedule: ScheduleRow,
    next: Date,
    now: Date,
    state: { buffered: Date | null },
    tally: TickTally,
  ): Promise<Date | null> {
    const clock = clockOf(schedule);
    const lateBefore = new Date(now.getTime() - Math.max(Number(schedule.catch_up_ms), ON_TIME_GRACE_MS));
    let from = next;
    if (next < lateBefore) {
      const skipped = clock.between(next, lateBefore, SKIPPED_ROWS_CAP);
      if (skipped.length > 0) {
        const { count: missed, capped } = clock.count(next, lateBefore, SKIPPED_COUNT_CAP);
        count(tally, "skipped_catch_up", missed);
        const reason = "missed while no scheduler ran; older than the catch-up window";
        await tx.client.query(TicksRecordSkipped, [schedule.key, skipped, reason]);
        await tx.client.query(ScheduleEvent, [
          "schedule_tick_skipped",
          ACTOR,
          JSON.stringify({
            schedule_id: schedule.id,
            reason: "catch_up_window",
            from: skipped[0]!.toISOString(),
            before: lateBefore.toISOString(),
            count: missed,
            ...(capped ? { count_is_at_least: true } : {}),
            recorded: skipped.length,
          }),
        ]);
      }
      from = lateBefore;
    }
    const due = clock.between(from, new Date(now.getTime() + 1), TICKS_PER_PASS);
    const recorded = await this.recorded(tx, schedule, due);
    for (const tick of due) {
      // A backfill may have acted on it already.
      if (recorded.has(tick.getTime())) continue;
      count(tally, (await this.act(tx, schedule, tick, schedule.overlap_policy, false, now, state)).outcome);
    }
    return due.length > 0 ? clock.after(due.at(-1)!) : clock.next(from);
  }

  /** Acts on the ticks of [start, end) now, oldest first; a tick that has
   * an action keeps it. */
  async backfill(id: string, start: Date, end: Date, policy: OverlapPolicy, maxTicks: number, allow: (schedule: ScheduleRow) => void): Promise<TickRow[]> {
    return this.transact(async (tx, tally) => {
      const { rows } = await tx.client.query<ScheduleRow>(ScheduleLock, [id]);
      const schedule = rows[0];
      if (!schedule) throw scheduleNotFound(id);
      allow(schedule);
      const now = (await tx.client.query<{ now: Date }>(DatabaseNow)).rows[0]!.now;
      if (end > now) throw invalidField("end_time", `reaches into the future (now is ${now.toISOString()}): a backfill covers past ticks only`);
      const ticks = clockOf(schedule).between(start, end, maxTicks + 1);
      if (ticks.length > maxTicks) {
        throw invalidField("end_time", `the interval holds more than ${maxTicks} ticks (ACTIONQ_MAX_BATCH); backfill it in parts`);
      }
      const done = await this.recorded(tx, schedule, ticks);
      const state = { buffered: schedule.buffered_tick_time };
      const result: TickRow[] = [];
      for (const tick of ticks) {
        const earlier = done.get(tick.getTime());
        if (earlier?.action_id) result.push(earlier);
        else {
          const row = await this.act(tx, schedule, tick, policy, true, now, state);
          count(tally, row.outcome);
          result.push(row);
        }
      }
      if (state.buffered !== schedule.buffered_tick_time) await tx.client.query(ScheduleAdvance, [schedule.key, schedule.next_tick_time, state.buffered]);
      return result;
    });
  }

  /** One tick under an overlap policy. */
  private async act(
    tx: ActionTransaction,
    schedule: ScheduleRow,
    tick: Date,
    policy: OverlapPolicy,
    backfill: boolean,
    now: Date,
    state: { buffered: Date | null },
  ): Promise<TickRow> {
    if (policy !== "allow_all") {
      const unfinished = await this.unfinished(tx, schedule);
      const first = unfinished[0];
      if (first) {
        const still = `action ${first.id} is still ${first.status.toUpperCase()}`;
        if (policy === "skip") return this.record(tx, schedule, tick, "skipped_overlap", null, still, backfill);
        if (policy === "buffer_one") {
          if (state.buffered) {
            return this.record(tx, schedule, tick, "skipped_overlap", null, `${still}, and tick ${state.buffered.toISOString()} is already buffered`, backfill);
          }
          state.buffered = tick;
          return this.record(tx, schedule, tick, "buffered", null, `waiting for ${still.replace(" is still", ", now")} to finish`, backfill);
        }
        await tx.cancelForSchedule(
          unfinished.map((action) => action.id),
          ACTOR,
          `cancelled by tick ${tick.toISOString()} of schedule ${schedule.id} (overlap policy CANCEL_OTHER)`,
          { id: schedule.id, tickTime: tick },
        );
      }
    }
    return this.enqueue(tx, schedule, tick, backfill, now);
  }

  private async enqueue(tx: ActionTransaction, schedule: ScheduleRow, tick: Date, backfill: boolean, now: Date): Promise<TickRow> {
    let input: ReturnType<TemplateActions["build"]>;
    try {
      input = this.templates.build(schedule, tick, now);
    } catch (error) {
      if (!(error instanceof ActionqError)) throw error;
      return this.record(tx, schedule, tick, "failed", null, error.message, backfill);
    }
    const [outcome] = await tx.enqueue([input]);
    if (!outcome!.ok) {
      this.log.info({ schedule: schedule.id, tick: tick.toISOString(), reason: outcome!.error.reason }, "a schedule's tick was refused");
      return this.record(tx, schedule, tick, "failed", null, outcome!.error.message, backfill);
    }
    const row = await this.record(tx, schedule, tick, "enqueued", outcome!.action.id, "", backfill);
    return { ...row, action_status: outcome!.action.status };
  }

  private async record(
    tx: ActionTransaction,
    schedule: ScheduleRow,
    tick: Date,
    outcome: TickRow["outcome"],
    actionId: string | null,
    reason: string,
    backfill: boolean,
  ): Promise<TickRow> {
    const { rows } = await tx.client.query<TickRow>(TickRecord, [schedule.key, tick, outcome, actionId, reason, backfill]);
    // Zero rows: the tick already has an action, which no later act may
    // replace; the unique index has refused a second one before this.
    if (!rows[0]) throw new Error(`tick ${tick.toISOString()} of schedule ${schedule.id} already has an action`);
    return { ...rows[0], action_status: null };
  }

  private async unfinished(tx: ActionTransaction, schedule: ScheduleRow): Promise<Unfinished[]> {
    const { rows } = await tx.client.query<Unfinished>(ScheduleUnfinished, [schedule.key]);
    return rows;
  }

  private async recorded(tx: ActionTransaction, schedule: ScheduleRow, ticks: Date[]): Promise<Map<number, TickRow>> {
    if (ticks.length === 0) return new Map();
    const { rows } = await tx.client.query<TickRow>(TicksRecorded, [schedule.key, ticks]);
    return new Map(rows.map((row) => [row.tick_time.getTime(), row]));
  }
}

function count(tally: TickTally, outcome: TickRow["outcome"], n = 1): void {
  tally.set(outcome, (tally.get(outcome) ?? 0) + n);
}
