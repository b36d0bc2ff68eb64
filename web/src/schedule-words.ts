// A schedule's clock, overlap policy and tick outcomes in words, for the
// schedules pages. Cron expressions of the common shapes are read out
// ("every day at 03:00"); anything else is shown as written, since a
// wrong paraphrase is worse than none.
import { type Duration, timestampMs } from "@bufbuild/protobuf/wkt";
import { type Schedule, SchedulePolicyOverlap, ScheduleTickOutcome } from "../../gen/actionq/v1/action_queue_service_pb.js";
import { durationMs, span } from "./format.js";

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const DAY_NAMES: Record<string, number> = { SUN: 0, MON: 1, TUE: 2, WED: 3, THU: 4, FRI: 5, SAT: 6 };

const isNumber = (field: string) => /^\d{1,2}$/.test(field);
const pad = (n: string) => n.padStart(2, "0");

function day(field: string): number | undefined {
  const named = DAY_NAMES[field.toUpperCase()];
  if (named !== undefined) return named;
  if (!isNumber(field)) return undefined;
  const n = Number(field);
  return n <= 7 ? n % 7 : undefined;
}

/** "Monday to Friday", "Monday, Wednesday and Friday", or undefined. */
function daysInWords(field: string): string | undefined {
  const range = /^(\w+)-(\w+)$/.exec(field);
  if (range) {
    const from = day(range[1]!);
    const to = day(range[2]!);
    return from !== undefined && to !== undefined ? `${DAYS[from]} to ${DAYS[to]}` : undefined;
  }
  const days = field.split(",").map(day);
  if (days.some((d) => d === undefined)) return undefined;
  const names = days.map((d) => DAYS[d!]!);
  return names.length === 1 ? names[0] : `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

/** A cron expression in words, or undefined when its shape is not a common one. */
export function cronInWords(expression: string): string | undefined {
  let fields = expression.trim().split(/\s+/);
  if (fields.length === 6) {
    if (fields[0] !== "0") return undefined;
    fields = fields.slice(1);
  }
  if (fields.length !== 5) return undefined;
  const [minute, hour, dayOfMonth, month, dayOfWeek] = fields as [string, string, string, string, string];
  if (month !== "*") return undefined;
  const step = (field: string) => /^\*\/(\d+)$/.exec(field)?.[1];
  if (dayOfMonth === "*" && dayOfWeek === "*") {
    if (minute === "*" && hour === "*") return "every minute";
    if (step(minute) && hour === "*") return `every ${step(minute)} minutes`;
    if (isNumber(minute) && hour === "*") return `every hour at :${pad(minute)}`;
    if (isNumber(minute) && step(hour)) return `every ${step(hour)} hours at :${pad(minute)}`;
  }
  if (!isNumber(minute) || !isNumber(hour)) return undefined;
  const at = `at ${pad(hour)}:${pad(minute)}`;
  if (dayOfMonth === "*" && dayOfWeek === "*") return `every day ${at}`;
  if (dayOfMonth === "*") {
    const days = daysInWords(dayOfWeek);
    return days ? `${at} on ${days}` : undefined;
  }
  if (dayOfWeek === "*" && isNumber(dayOfMonth)) return `${at} on day ${Number(dayOfMonth)} of every month`;
  return undefined;
}

/** "every 5m", "every 1h 30m": an interval as the console writes spans. */
export function intervalInWords(interval: Duration | undefined): string {
  const ms = durationMs(interval) ?? 0;
  return `every ${ms < 1000 ? `${ms}ms` : span(ms)}`;
}

/** The clock in words, its time zone, and the expression as written. */
export function clockInWords(schedule: Schedule): { words: string; zone: string; expression?: string } {
  const zone = schedule.timeZone || "UTC";
  switch (schedule.clock.case) {
    case "cron":
      return { words: cronInWords(schedule.clock.value) ?? `on cron ${schedule.clock.value}`, zone, expression: schedule.clock.value };
    case "interval":
      // An interval is counted in seconds: time zones do not move it.
      return { words: intervalInWords(schedule.clock.value), zone: "" };
    default:
      return { words: "no clock", zone };
  }
}

export const OVERLAP_WORDS: Record<SchedulePolicyOverlap, { name: string; means: string }> = {
  [SchedulePolicyOverlap.UNSPECIFIED]: { name: "skip", means: "A tick while the previous action is unfinished enqueues nothing." },
  [SchedulePolicyOverlap.SKIP]: { name: "skip", means: "A tick while the previous action is unfinished enqueues nothing." },
  [SchedulePolicyOverlap.BUFFER_ONE]: {
    name: "buffer one",
    means: "A tick while the previous action is unfinished waits for it to finish; further ticks meanwhile are skipped.",
  },
  [SchedulePolicyOverlap.ALLOW_ALL]: { name: "allow all", means: "Every tick enqueues its action, whatever is unfinished." },
  [SchedulePolicyOverlap.CANCEL_OTHER]: { name: "cancel other", means: "A tick cancels the unfinished earlier actions and enqueues its own." },
};

export const OUTCOME_WORDS: Record<ScheduleTickOutcome, { name: string; tone: "ok" | "warn" | "bad" | "plain" }> = {
  [ScheduleTickOutcome.UNSPECIFIED]: { name: "unknown", tone: "plain" },
  [ScheduleTickOutcome.ENQUEUED]: { name: "enqueued", tone: "ok" },
  [ScheduleTickOutcome.SKIPPED_OVERLAP]: { name: "skipped: overlap", tone: "warn" },
  [ScheduleTickOutcome.SKIPPED_CATCH_UP]: { name: "skipped: missed", tone: "warn" },
  [ScheduleTickOutcome.BUFFERED]: { name: "buffered", tone: "plain" },
  [ScheduleTickOutcome.FAILED]: { name: "failed", tone: "bad" },
};

/** When to read schedules again: just after the soonest next tick, between
 * 1 s and a minute. A tick that enqueues nothing (skipped, buffered, refused)
 * writes no event, so events alone would not show it. */
export function untilNextTick(schedules: readonly Schedule[], now = Date.now()): number {
  const next = Math.min(...schedules.map((schedule) => (schedule.nextTickTime ? timestampMs(schedule.nextTickTime) : Number.POSITIVE_INFINITY)));
  return Math.min(60_000, Math.max(1_000, next - now + 1_000));
}
