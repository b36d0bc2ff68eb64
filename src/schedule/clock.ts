// When a schedule ticks: the one module that knows the cron library and
// the time zone database. Nothing here reads the time: callers pass it in
// (the scheduler passes the database's clock), so tests inject any "now".
//
// croner matches cron expressions (seconds, names, ranges, steps) but its
// daylight-saving behaviour depends on the expression's shape: a fixed
// hour in the fall-back overlap runs once, `*/30 1 * * *` runs twice, and
// `*/15 2 * * *` in the spring-forward gap not at all (see
// test/schedules-clock.test.ts). The contract promises one rule for every
// expression, so croner is asked only which wall times match (in a
// zone-less calendar), and this module maps each wall time to an instant
// with luxon's zone data: a wall time inside the gap runs at the first
// instant after the gap (several such wall times run there once), and one
// inside the overlap at its first occurrence only.
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

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** Wall times looked at for one tick before giving up: enough for an hour
 * of one-second wall times that all fall before `at` in an overlap. */
const MAX_STEPS = 10_000;

export class Clock {
  private readonly cron: Cron | undefined;
  private readonly zone: IANAZone | undefined;
  private readonly intervalMs: number;
  private readonly anchorMs: number;

  constructor(
    spec: ClockSpec,
    readonly bounds: Bounds = { start: null, end: null },
  ) {
    if ("cron" in spec) {
      // Matched against wall times written as UTC dates: a calendar
      // without zones, where every wall time exists exactly once.
      this.cron = new Cron(spec.cron, { timezone: "UTC", paused: true });
      this.zone = IANAZone.create(spec.timeZone);
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
      tick = this.nextCron(from);
    } else {
      const k = Math.max(0, Math.ceil((from - this.anchorMs) / this.intervalMs));
      tick = this.anchorMs + k * this.intervalMs;
    }
    if (tick === null || (this.bounds.end && tick >= this.bounds.end.getTime())) return null;
    return new Date(tick);
  }

  /** The first cron tick at or after instant `from`. Wall times are read
   * from just before `from`, so that a wall time inside a gap that ends
   * exactly at `from` still counts (it runs at `from`). */
  private nextCron(from: number): number | null {
    const cron = this.cron!;
    let wall: Date | null = new Date(this.wallOf(from - 1) - 1);
    for (let step = 0; step < MAX_STEPS; step++) {
      // croner answers strictly after its argument, in whole seconds.
      wall = cron.nextRun(wall);
      if (!wall) return null;
      const instant = this.instantOf(wall.getTime());
      // In an overlap, wall times after `from`'s own may first occur
      // before `from`: they have run already.
      if (instant >= from) return instant;
    }
    return null;
  }

  /** The wall time of an instant in the zone, as ms of a zone-less
   * calendar. */
  private wallOf(instant: number): number {
    return instant + this.zone!.offset(instant) * 60_000;
  }

  /** The instant of a wall time: its only one; the first of two in an
   * overlap; the end of the gap for one that does not exist. */
  private instantOf(wall: number): number {
    const zone = this.zone!;
    const offsets = [...new Set([zone.offset(wall - DAY_MS), zone.offset(wall), zone.offset(wall + DAY_MS)])];
    const valid = offsets.map((o) => wall - o * 60_000).filter((instant) => this.wallOf(instant) === wall);
    if (valid.length > 0) return Math.min(...valid);
    // In the gap: the transition lies between the instants the wall time
    // would have with the offsets before and after it.
    let before = wall - Math.max(...offsets) * 60_000;
    let after = wall - Math.min(...offsets) * 60_000;
    while (after - before > 1) {
      const mid = Math.floor((before + after) / 2);
      if (this.wallOf(mid) < wall) before = mid;
      else after = mid;
    }
    return after;
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
