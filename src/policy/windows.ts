// Change windows: when the policy says changes may NOT run. A window is
// closed during its spans (weekly or daily, in its own time zone) and its
// one-off intervals. Everything here is a pure function of the windows and
// an instant, so tests can ask about any moment, DST changes included; the
// server materialises the closed intervals of the next days into PostgreSQL
// (src/store/windows.ts), where the claim statement reads them.
//
// Local times are resolved by luxon: a local time that does not exist
// (spring forward: 02:30 in Europe/Berlin on the last Sunday of March) is
// read as the same wall-clock time after the jump (03:30 summer time); one
// that exists twice (fall back) is its second occurrence, in standard time.
import { DateTime, IANAZone } from "luxon";
import { z } from "zod";
import type { RiskLevel } from "../domain/vocabulary.js";

export const WINDOW_EFFECTS = ["hold_claims", "stop_auto_approval"] as const;
export type WindowEffect = (typeof WINDOW_EFFECTS)[number];

const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] as const;
const FULL_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

/** "Fri 16:00" (weekday 1-7, luxon's numbering) or "16:00" (every day). */
interface WallTime {
  weekday: number | null;
  hour: number;
  minute: number;
}

function parseWallTime(text: string): WallTime | null {
  const match = /^\s*(?:([A-Za-z]+)\s+)?(\d{1,2}):(\d{2})\s*$/.exec(text);
  if (!match) return null;
  const hour = Number(match[2]);
  const minute = Number(match[3]);
  if (hour > 23 || minute > 59) return null;
  if (match[1] === undefined) return { weekday: null, hour, minute };
  const day = match[1].toLowerCase();
  const index = Math.max(WEEKDAYS.indexOf(day as (typeof WEEKDAYS)[number]), FULL_WEEKDAYS.indexOf(day));
  return index < 0 ? null : { weekday: index + 1, hour, minute };
}

const OFFSET = /(Z|[+-]\d{2}:\d{2})$/i;

/** One-off bounds: local time in the window's zone, or RFC 3339 with an
 * offset (then the zone does not matter). */
function parseInstant(text: string, zone: string): DateTime | null {
  const at = OFFSET.test(text) ? DateTime.fromISO(text, { setZone: true }) : DateTime.fromISO(text, { zone });
  return at.isValid && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(text) ? at : null;
}

const bound = z.string({ error: "must be a string" }).min(1, "must not be empty");
const span = z.strictObject({ from: bound, to: bound }, { error: "must be a mapping with from and to" });

/** The schema of one window; `patterns` and `risk` are the policy file's
 * own, so that a window's matchers read like a rule's. */
export function windowSchema(patterns: z.ZodType<string[]>, risk: z.ZodType<RiskLevel>) {
  return z
    .strictObject({
      name: z.string({ error: "must be a string" }).min(1, "must not be empty").max(128),
      effect: z.enum(WINDOW_EFFECTS, { error: `must be one of ${WINDOW_EFFECTS.join(", ")}` }),
      action_types: patterns.optional(),
      projects: patterns.optional(),
      risk_levels: z.array(risk, { error: "must be a list of risk levels" }).min(1, "must not be an empty list; leave it out to match any").optional(),
      time_zone: z.string({ error: "must be an IANA time zone such as Europe/Berlin" }).refine((zone) => IANAZone.isValidZone(zone), {
        message: "must be an IANA time zone such as Europe/Berlin or UTC",
      }),
      recurring: z.array(span, { error: "must be a list of {from, to} spans" }).max(100).optional(),
      once: z.array(span, { error: "must be a list of {from, to} intervals" }).max(1000).optional(),
    })
    .superRefine((window, ctx) => {
      if (!window.recurring?.length && !window.once?.length) {
        ctx.addIssue({ code: "custom", path: ["recurring"], message: "a window needs recurring spans or once intervals (or both)" });
      }
      window.recurring?.forEach((item, index) => {
        const from = parseWallTime(item.from);
        const to = parseWallTime(item.to);
        const shape = 'must be "HH:MM" (every day) or "Ddd HH:MM" (weekly, such as "Fri 16:00")';
        if (!from) ctx.addIssue({ code: "custom", path: ["recurring", index, "from"], message: shape });
        if (!to) ctx.addIssue({ code: "custom", path: ["recurring", index, "to"], message: shape });
        if (from && to && (from.weekday === null) !== (to.weekday === null)) {
          ctx.addIssue({ code: "custom", path: ["recurring", index, "to"], message: "must name a weekday when from does, and none when from does not" });
        } else if (from && to && from.weekday === to.weekday && from.hour === to.hour && from.minute === to.minute) {
          ctx.addIssue({ code: "custom", path: ["recurring", index, "to"], message: "must differ from from" });
        }
      });
      if (!IANAZone.isValidZone(window.time_zone)) return;
      window.once?.forEach((item, index) => {
        const from = parseInstant(item.from, window.time_zone);
        const to = parseInstant(item.to, window.time_zone);
        const shape = 'must be a local time such as "2026-12-24T00:00" or RFC 3339 with an offset';
        if (!from) ctx.addIssue({ code: "custom", path: ["once", index, "from"], message: shape });
        if (!to) ctx.addIssue({ code: "custom", path: ["once", index, "to"], message: shape });
        if (from && to && to <= from) ctx.addIssue({ code: "custom", path: ["once", index, "to"], message: "must be after from" });
      });
    });
}

export interface ChangeWindow {
  name: string;
  effect: WindowEffect;
  action_types?: string[] | undefined;
  projects?: string[] | undefined;
  risk_levels?: RiskLevel[] | undefined;
  time_zone: string;
  recurring?: { from: string; to: string }[] | undefined;
  once?: { from: string; to: string }[] | undefined;
}

/** A time during which a window is closed: [start, end). */
export interface ClosedInterval {
  window: ChangeWindow;
  start: Date;
  end: Date;
}

/** What a window applies to. */
export interface WindowSubject {
  actionType: string;
  project: string;
  riskLevel: RiskLevel;
}

const DAY_MS = 86_400_000;

function localAt(day: DateTime, time: WallTime, zone: string): DateTime {
  return DateTime.fromObject({ year: day.year, month: day.month, day: day.day, hour: time.hour, minute: time.minute }, { zone });
}

/** The spans of one recurring entry that overlap [from, to). */
function expandRecurring(window: ChangeWindow, entry: { from: string; to: string }, from: Date, to: Date): ClosedInterval[] {
  const start = parseWallTime(entry.from);
  const end = parseWallTime(entry.to);
  if (!start || !end) return [];
  const zone = window.time_zone;
  // How many days after its start a span ends, in local dates.
  const startMinute = start.hour * 60 + start.minute;
  const endMinute = end.hour * 60 + end.minute;
  const days =
    start.weekday === null || end.weekday === null
      ? endMinute <= startMinute
        ? 1
        : 0
      : (end.weekday - start.weekday + 7) % 7 || (endMinute <= startMinute ? 7 : 0);
  const out: ClosedInterval[] = [];
  // A span that began up to 8 days before `from` may still be running.
  let day = DateTime.fromMillis(from.getTime() - 8 * DAY_MS, { zone }).startOf("day");
  const last = DateTime.fromMillis(to.getTime() + DAY_MS, { zone }).startOf("day");
  for (; day <= last; day = day.plus({ days: 1 })) {
    if (start.weekday !== null && day.weekday !== start.weekday) continue;
    const opens = localAt(day, start, zone);
    const closes = localAt(day.plus({ days }), end, zone);
    // A span that DST made empty (22:30 to 23:00 never shrinks to nothing
    // in practice, but 02:00 to 02:30 on a spring-forward day does).
    if (closes <= opens) continue;
    if (closes.toMillis() > from.getTime() && opens.toMillis() < to.getTime()) {
      out.push({ window, start: opens.toJSDate(), end: closes.toJSDate() });
    }
  }
  return out;
}

/** Every interval during which a window is closed that overlaps [from,
 * to), overlapping or touching intervals of one window merged, sorted by
 * start. */
export function closedIntervals(windows: readonly ChangeWindow[], from: Date, to: Date): ClosedInterval[] {
  const out: ClosedInterval[] = [];
  for (const window of windows) {
    const own: ClosedInterval[] = [];
    for (const entry of window.recurring ?? []) own.push(...expandRecurring(window, entry, from, to));
    for (const entry of window.once ?? []) {
      const opens = parseInstant(entry.from, window.time_zone);
      const closes = parseInstant(entry.to, window.time_zone);
      if (opens && closes && closes.toMillis() > from.getTime() && opens.toMillis() < to.getTime()) {
        own.push({ window, start: opens.toJSDate(), end: closes.toJSDate() });
      }
    }
    own.sort((a, b) => a.start.getTime() - b.start.getTime());
    const merged: ClosedInterval[] = [];
    for (const interval of own) {
      const previous = merged.at(-1);
      if (previous && interval.start.getTime() <= previous.end.getTime()) {
        if (interval.end > previous.end) previous.end = interval.end;
      } else merged.push({ ...interval });
    }
    out.push(...merged);
  }
  return out.sort((a, b) => a.start.getTime() - b.start.getTime() || a.window.name.localeCompare(b.window.name));
}

/** How far ahead a window's next change is looked for. */
const LOOKAHEAD_MS = 400 * DAY_MS;

export interface WindowState {
  window: ChangeWindow;
  closed: boolean;
  /** When it opens (closed) or next closes (open); null when it never
   * closes again within a year. */
  nextChange: Date | null;
}

/** Each window at `at`: closed or open, and until when. */
export function windowStates(windows: readonly ChangeWindow[], at: Date, lookaheadMs = LOOKAHEAD_MS): WindowState[] {
  return windows.map((window) => {
    const intervals = closedIntervals([window], at, new Date(at.getTime() + lookaheadMs));
    const current = intervals.find((interval) => interval.start <= at && at < interval.end);
    if (current) return { window, closed: true, nextChange: current.end };
    return { window, closed: false, nextChange: intervals.find((interval) => interval.start > at)?.start ?? null };
  });
}

function globToRegExp(pattern: string): RegExp {
  return new RegExp(
    `^${pattern
      .split("*")
      .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
      .join(".*")}$`,
  );
}

/** Matchers as rules read them: every list the window has must match; a
 * missing list matches anything. */
export function windowApplies(window: ChangeWindow, subject: WindowSubject): boolean {
  const field = (patterns: string[] | undefined, value: string) => !patterns || patterns.some((pattern) => globToRegExp(pattern).test(value));
  return (
    field(window.action_types, subject.actionType) &&
    field(window.projects, subject.project) &&
    (!window.risk_levels || window.risk_levels.includes(subject.riskLevel))
  );
}

/** The closed window with this effect that applies to `subject` at `at`
 * (the one that stays closed longest when several do), or null. It looks
 * 15 days ahead (a recurring span lasts at most a week): enough to say
 * until when, cheap enough for every enqueue. */
export function closedWindowFor(
  windows: readonly ChangeWindow[],
  effect: WindowEffect,
  subject: WindowSubject,
  at: Date,
): { name: string; until: Date } | null {
  let found: { name: string; until: Date } | null = null;
  for (const state of windowStates(
    windows.filter((window) => window.effect === effect && windowApplies(window, subject)),
    at,
    15 * DAY_MS,
  )) {
    if (state.closed && state.nextChange && (!found || state.nextChange > found.until)) found = { name: state.window.name, until: state.nextChange };
  }
  return found;
}

/** A glob as a LIKE pattern (backslash escapes), for the claim statement. */
export function globToLike(pattern: string): string {
  return pattern.replace(/[\\%_]/g, "\\$&").replaceAll("*", "%");
}
