// When a schedule ticks: the one module that knows the cron library. Cron
// expressions are read by croner in the schedule's IANA time zone; it
// follows the Open Cron Pattern Specification on daylight-saving changes,
// which is what the contract promises (tested in test/schedule-clock.test.ts):
// a wall time inside the spring-forward gap runs once at the first valid
// instant after the gap, and a fixed wall time inside the fall-back overlap
// runs once, at its first occurrence. Fixed intervals ignore zones. Nothing
// here reads the time: callers pass it in (the scheduler passes the
// database's clock), so tests inject any "now".
import { Cron } from "croner";
import { IANAZone } from "luxon";

export type ClockSpec = { cron: string; timeZone: string } | { intervalMs: number; anchor: Date };

export interface Bounds {
  /** No tick before this. */
  start: Date | null;
  /** No tick at or after this. */
  end: Date | null;
}

/** Why a cron expression cannot be used, or undefined when it can. */
export function cronProblem(expression: string, timeZone = "UTC"): string | undefined {
  const fields = expression.trim().split(/\s+/);
  if (expression.trim() === "" || (fields.length !== 5 && fields.length !== 6)) {
    return `must have five fields (minute hour day-of-month month day-of-week) or six with seconds first; got ${expression.trim() === "" ? "none" : fields.length}`;
  }
  try {
    const cron = new Cron(expression, { timezone: timeZone, paused: true });
    // An expression that parses but never matches (30 February) would
    // leave the schedule silent forever.
    if (cron.nextRun(new Date(0)) === null) return "never matches any date";
  } catch (error) {
    return (error as Error).message.replace(/^CronPattern: /, "");
  }
  return undefined;
}

/** Whether `zone` is a time zone the tz database knows. */
export function isKnownZone(zone: string): boolean {
  return IANAZone.isValidZone(zone);
}

export class Clock {
  private readonly cron: Cron | undefined;
  private readonly intervalMs: number;
  private readonly anchorMs: number;

  constructor(
    spec: ClockSpec,
    readonly bounds: Bounds = { start: null, end: null },
  ) {
    if ("cron" in spec) {
      this.cron = new Cron(spec.cron, { timezone: spec.timeZone, paused: true });
      this.intervalMs = 0;
      this.anchorMs = 0;
    } else {
      this.intervalMs = spec.intervalMs;
      this.anchorMs = spec.anchor.getTime();
    }
  }

  /** The first tick at or after `at` (within the bounds), or null. */
  next(at: Date): Date | null {
    const from = Math.max(at.getTime(), this.bounds.start?.getTime() ?? Number.NEGATIVE_INFINITY);
    let tick: number | null;
    if (this.cron) {
      // croner answers strictly after its argument, in whole seconds.
      tick = this.cron.nextRun(new Date(from - 1))?.getTime() ?? null;
    } else {
      const k = Math.max(0, Math.ceil((from - this.anchorMs) / this.intervalMs));
      tick = this.anchorMs + k * this.intervalMs;
    }
    if (tick === null || (this.bounds.end && tick >= this.bounds.end.getTime())) return null;
    return new Date(tick);
  }

  /** The first tick strictly after `at`, or null. */
  after(at: Date): Date | null {
    return this.next(new Date(at.getTime() + 1));
  }

  /** The ticks in [from, to), oldest first, at most `max`. */
  between(from: Date, to: Date, max: number): Date[] {
    const ticks: Date[] = [];
    for (let tick = this.next(from); tick && tick < to && ticks.length < max; tick = this.after(tick)) ticks.push(tick);
    return ticks;
  }

  /** How many ticks lie in [from, to): exact for intervals; for cron,
   * counted up to `cap` (then `capped`), so a long outage of a one-second
   * schedule costs bounded work. */
  count(from: Date, to: Date, cap: number): { count: number; capped: boolean } {
    if (!this.cron) {
      const first = this.next(from);
      if (!first || first >= to) return { count: 0, capped: false };
      const last = this.bounds.end && this.bounds.end < to ? this.bounds.end : to;
      return { count: Math.ceil((last.getTime() - first.getTime()) / this.intervalMs), capped: false };
    }
    const ticks = this.between(from, to, cap + 1);
    return ticks.length > cap ? { count: cap, capped: true } : { count: ticks.length, capped: false };
  }

  /** The next `n` ticks at or after `at`. */
  upcoming(at: Date, n: number): Date[] {
    return this.between(at, new Date(8.64e15), n);
  }
}
