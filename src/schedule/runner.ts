// The scheduler loop of one server (ACTIONQ_SCHEDULER=on, the default): it
// acts on due schedules one transaction at a time (src/schedule/ticks.ts),
// then sleeps until the earliest next tick by the database's clock, never
// longer than a second, so that a schedule created or resumed on another
// replica is found within a second. It wakes at once when this server
// changes a schedule or finishes an action of one (a buffered tick may go).
// Any number of replicas may run it: row locks decide who acts on a tick.
import type pg from "pg";
import type { Logger } from "pino";
import type { Committed } from "../store/commits.js";
import { ScheduleNextDue } from "../store/schedule-queries.js";
import type { Ticks } from "./ticks.js";

/** How long a schedule whose transaction failed is left alone by this
 * replica, so that a fault does not become a hot loop. */
const FAILED_BACKOFF_MS = 30_000;
/** The wait when the next tick is overdue but another replica holds it. */
const HELD_ELSEWHERE_MS = 100;
/** Schedules acted on per wakeup before the loop yields. */
const SCHEDULES_PER_PASS = 1000;

const FINISHED = new Set(["completed", "failed", "rejected", "cancelled", "expired", "timed_out"]);

export class ScheduleRunner {
  private timer: NodeJS.Timeout | undefined;
  private wakeAt = Number.POSITIVE_INFINITY;
  private running: Promise<void> | undefined;
  private started = false;
  private stopped = false;
  private again = false;
  private readonly failing = new Map<string, number>();

  constructor(
    private readonly ticks: Ticks,
    private readonly pool: pg.Pool,
    private readonly maxSleepMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.started = true;
    this.arm(Date.now());
  }

  /** A schedule changed here: its next tick may be sooner. */
  poke(): void {
    this.arm(Date.now());
  }

  /** An action of a schedule finished here: a buffered tick may go. */
  committed(change: Committed): void {
    if ("action" in change && change.action.schedule_key !== null && FINISHED.has(change.kind)) this.poke();
  }

  private arm(at: number): void {
    if (this.stopped || !this.started) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (at >= this.wakeAt && this.timer) return;
    clearTimeout(this.timer);
    this.wakeAt = at;
    this.timer = setTimeout(() => this.wake(), Math.max(0, at - Date.now()));
    this.timer.unref();
  }

  private wake(): void {
    this.wakeAt = Number.POSITIVE_INFINITY;
    this.timer = undefined;
    this.running = this.pass().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        this.arm(Date.now());
      }
    });
  }

  private async pass(): Promise<void> {
    let sleepMs = this.maxSleepMs;
    try {
      const now = Date.now();
      for (const [key, until] of this.failing) if (until <= now) this.failing.delete(key);
      for (let n = 0; n < SCHEDULES_PER_PASS && !this.stopped; n++) {
        const working: { key?: string } = {};
        try {
          const key = await this.ticks.runOne([...this.failing.keys()], working);
          if (key === null) break;
        } catch (error) {
          // Rolled back whole: the ticks stay due, for a later pass.
          if (working.key === undefined) throw error;
          this.failing.set(working.key, Date.now() + FAILED_BACKOFF_MS);
          this.log.error({ err: (error as Error).message, schedule_key: working.key }, "acting on a schedule's ticks failed; it is retried later");
        }
      }
      const { rows } = await this.pool.query<{ due_in_ms: number | null }>(ScheduleNextDue, [[...this.failing.keys()]]);
      const dueIn = rows[0]?.due_in_ms;
      if (dueIn !== null && dueIn !== undefined) {
        // Rounded up: setTimeout drops the fraction, and a wakeup a
        // moment early finds nothing due and waits HELD_ELSEWHERE_MS.
        sleepMs = Math.min(sleepMs, dueIn <= 0 ? HELD_ELSEWHERE_MS : Math.ceil(dueIn) + 1);
      }
    } catch (error) {
      this.log.warn({ err: (error as Error).message }, "the scheduler pass failed; will retry");
    }
    if (!this.stopped) {
      this.wakeAt = Number.POSITIVE_INFINITY;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.wake(), Math.max(0, sleepMs));
      this.timer.unref();
      this.wakeAt = Date.now() + sleepMs;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }
}
