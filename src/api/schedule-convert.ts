// Schedules between the wire and the store: the checks of a Schedule
// message (each refusal names its field under `schedule.`), and rows back
// into messages. The template's own checks are in src/schedule/template.ts.
import { create, fromJson } from "@bufbuild/protobuf";
import { type Duration, type Timestamp, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  EnqueueActionRequestSchema,
  type Schedule,
  SchedulePolicyOverlap,
  ScheduleSchema,
  type ScheduleTick,
  ScheduleTickOutcome,
  ScheduleTickSchema,
} from "../../gen/actionq/v1/action_queue_service_pb.js";
import { ActionStatus } from "../../gen/actionq/v1/action_pb.js";
import { type OverlapPolicy, SCHEDULE_ID_PATTERN, type TickOutcome } from "../domain/vocabulary.js";
import { invalidField } from "../errors.js";
import { Clock, cronProblem, isKnownZone } from "../schedule/clock.js";
import type { ScheduleRow, ScheduleSpec, TickRow } from "../store/schedules.js";
import { statusToWire } from "./convert.js";

/** Unset: one minute, as the contract says. */
export const DEFAULT_CATCH_UP_MS = 60_000;
const MAX_WINDOW_MS = 366 * 86_400_000;
const DESCRIPTION_LENGTH = 1024;

const OVERLAP_TO_WIRE: Record<OverlapPolicy, SchedulePolicyOverlap> = {
  skip: SchedulePolicyOverlap.SKIP,
  buffer_one: SchedulePolicyOverlap.BUFFER_ONE,
  allow_all: SchedulePolicyOverlap.ALLOW_ALL,
  cancel_other: SchedulePolicyOverlap.CANCEL_OTHER,
};
const WIRE_TO_OVERLAP = new Map<SchedulePolicyOverlap, OverlapPolicy>(Object.entries(OVERLAP_TO_WIRE).map(([name, value]) => [value, name as OverlapPolicy]));

const OUTCOME_TO_WIRE: Record<TickOutcome, ScheduleTickOutcome> = {
  enqueued: ScheduleTickOutcome.ENQUEUED,
  skipped_overlap: ScheduleTickOutcome.SKIPPED_OVERLAP,
  skipped_catch_up: ScheduleTickOutcome.SKIPPED_CATCH_UP,
  buffered: ScheduleTickOutcome.BUFFERED,
  failed: ScheduleTickOutcome.FAILED,
};

/** The overlap policy of a request; `fallback` when unspecified. */
export function overlapFromWire(field: string, value: SchedulePolicyOverlap, fallback: OverlapPolicy): OverlapPolicy {
  if (value === SchedulePolicyOverlap.UNSPECIFIED) return fallback;
  const policy = WIRE_TO_OVERLAP.get(value);
  if (!policy) throw invalidField(field, `unknown overlap policy ${value}`);
  return policy;
}

function durationMs(field: string, value: Duration): number {
  const ms = Number(value.seconds) * 1000 + Math.floor(value.nanos / 1e6);
  if (!Number.isFinite(ms) || ms < 0 || value.nanos < 0) throw invalidField(field, "must not be negative");
  return ms;
}

export function timeFromWire(field: string, value: Timestamp | undefined, required = false): Date | null {
  if (value === undefined) {
    if (required) throw invalidField(field, "is required");
    return null;
  }
  const date = timestampDate(value);
  if (Number.isNaN(date.getTime()) || date.getTime() < 0) throw invalidField(field, "is not a valid time");
  return date;
}

export function scheduleId(field: string, value: string): string {
  if (value === "") throw invalidField(field, "is required");
  if (!SCHEDULE_ID_PATTERN.test(value))
    throw invalidField(field, "must be letters, digits and `_ . : -`, at most 128 characters, starting with a letter or digit");
  return value;
}

/** The clock and options of a Schedule message, checked; the template is
 * checked by the caller (it needs the policy and the caller's scope). */
export function scheduleSpecFromWire(schedule: Schedule | undefined): Omit<ScheduleSpec, "template" | "project"> {
  if (!schedule) throw invalidField("schedule", "is required");
  const id = scheduleId("schedule.id", schedule.id);
  const timeZone = schedule.timeZone === "" ? "UTC" : schedule.timeZone;
  if (!isKnownZone(timeZone))
    throw invalidField("schedule.time_zone", `${JSON.stringify(timeZone.slice(0, 128))} is not an IANA time zone (such as Europe/Berlin or UTC)`);
  let cron: string | null = null;
  let intervalMs: number | null = null;
  if (schedule.clock.case === "cron") {
    const problem = cronProblem(schedule.clock.value, timeZone);
    if (problem) throw invalidField("schedule.cron", `${JSON.stringify(schedule.clock.value.slice(0, 256))} ${problem}`);
    cron = schedule.clock.value.trim();
  } else if (schedule.clock.case === "interval") {
    intervalMs = durationMs("schedule.interval", schedule.clock.value);
    if (intervalMs < 1000) throw invalidField("schedule.interval", "must be at least one second");
    if (intervalMs > MAX_WINDOW_MS) throw invalidField("schedule.interval", "must be at most 366 days");
  } else {
    throw invalidField("schedule.cron", "a clock is required: set `cron` or `interval`");
  }
  const startTime = timeFromWire("schedule.start_time", schedule.startTime);
  const endTime = timeFromWire("schedule.end_time", schedule.endTime);
  if (startTime && endTime && endTime <= startTime) throw invalidField("schedule.end_time", "must be after start_time");
  const jitterMs = schedule.jitter === undefined ? 0 : durationMs("schedule.jitter", schedule.jitter);
  if (intervalMs !== null && jitterMs > intervalMs) throw invalidField("schedule.jitter", "must be at most the interval");
  if (cron !== null && jitterMs > 0) {
    // The shortest gap between the next few ticks stands for the interval.
    const ticks = new Clock({ cron, timeZone }).upcoming(new Date(), 10);
    const gap = Math.min(...ticks.slice(1).map((tick, i) => tick.getTime() - ticks[i]!.getTime()));
    if (jitterMs > gap) throw invalidField("schedule.jitter", `must be at most the time between ticks (${gap / 1000} s for this expression)`);
  }
  const catchUpMs = schedule.catchUpWindow === undefined ? DEFAULT_CATCH_UP_MS : durationMs("schedule.catch_up_window", schedule.catchUpWindow);
  if (catchUpMs > MAX_WINDOW_MS) throw invalidField("schedule.catch_up_window", "must be at most 366 days");
  if (schedule.description.length > DESCRIPTION_LENGTH) throw invalidField("schedule.description", `must be at most ${DESCRIPTION_LENGTH} characters`);
  return {
    id,
    cron,
    intervalMs,
    timeZone,
    startTime,
    endTime,
    jitterMs,
    overlapPolicy: overlapFromWire("schedule.overlap_policy", schedule.overlapPolicy, "skip"),
    catchUpMs,
    description: schedule.description,
  };
}

function duration(ms: number): Duration {
  const seconds = Math.floor(ms / 1000);
  return { $typeName: "google.protobuf.Duration", seconds: BigInt(seconds), nanos: (ms - seconds * 1000) * 1_000_000 };
}

export function tickToWire(tick: TickRow): ScheduleTick {
  return create(ScheduleTickSchema, {
    tickTime: timestampFromDate(tick.tick_time),
    outcome: OUTCOME_TO_WIRE[tick.outcome],
    actionId: tick.action_id === null ? 0n : BigInt(tick.action_id),
    actionStatus: tick.action_status ? statusToWire(tick.action_status) : ActionStatus.UNSPECIFIED,
    reason: tick.reason,
    recordTime: timestampFromDate(tick.recorded_at),
    backfill: tick.backfill,
  });
}

export function scheduleToWire(row: ScheduleRow, lastTick: TickRow | undefined): Schedule {
  return create(ScheduleSchema, {
    id: row.id,
    template: fromJson(EnqueueActionRequestSchema, row.template),
    clock: row.cron !== null ? { case: "cron", value: row.cron } : { case: "interval", value: duration(Number(row.interval_ms)) },
    timeZone: row.time_zone,
    startTime: row.start_time ? timestampFromDate(row.start_time) : undefined,
    endTime: row.end_time ? timestampFromDate(row.end_time) : undefined,
    jitter: Number(row.jitter_ms) > 0 ? duration(Number(row.jitter_ms)) : undefined,
    overlapPolicy: OVERLAP_TO_WIRE[row.overlap_policy],
    catchUpWindow: duration(Number(row.catch_up_ms)),
    paused: row.paused,
    pauseReason: row.pause_reason,
    owner: row.owner,
    description: row.description,
    createTime: timestampFromDate(row.created_at),
    updateTime: timestampFromDate(row.updated_at),
    nextTickTime: row.next_tick_time ? timestampFromDate(row.next_tick_time) : undefined,
    lastTick: lastTick ? tickToWire(lastTick) : undefined,
    revision: BigInt(row.revision),
  });
}
