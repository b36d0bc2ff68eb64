// Schedules in actionctl's table mode: a list as an aligned table, one
// schedule as `label  value` lines, its ticks as a table with what each
// became (the action it enqueued, or why none).
import type { JsonObject } from "@bufbuild/protobuf";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { RiskLevel } from "../../gen/actionq/v1/action_pb.js";
import {
  type EnqueueActionRequest,
  type GetScheduleResponse,
  type Schedule,
  SchedulePolicyOverlap,
  type ScheduleTick,
  ScheduleTickOutcome,
} from "../../gen/actionq/v1/action_queue_service_pb.js";
import { fields, table } from "./table.js";
import { statusName, time } from "./views.js";

const UNITS: [string, bigint][] = [
  ["d", 86_400n],
  ["h", 3_600n],
  ["m", 60n],
  ["s", 1n],
];

/** A duration exactly, largest units first: `1h30m`, `90ms`, `0s`. Clocks
 * are read by the second, so nothing is rounded here. */
export function exactDuration(duration: Duration | undefined): string {
  if (!duration) return "";
  let seconds = duration.seconds;
  const parts: string[] = [];
  for (const [unit, size] of UNITS) {
    if (seconds >= size) {
      parts.push(`${seconds / size}${unit}`);
      seconds %= size;
    }
  }
  if (duration.nanos > 0) parts.push(`${duration.nanos / 1e6}ms`);
  return parts.join("") || "0s";
}

/** `cron 0 3 * * * (Europe/Berlin)` or `every 5m`. */
export function clockText(schedule: Schedule): string {
  switch (schedule.clock.case) {
    case "cron":
      return `cron ${schedule.clock.value} (${schedule.timeZone || "UTC"})`;
    case "interval":
      return `every ${exactDuration(schedule.clock.value)}`;
    default:
      return "no clock";
  }
}

/** `skip`, `buffer-one`...: as the --overlap flag spells it. */
export function overlapName(overlap: SchedulePolicyOverlap): string {
  const name = SchedulePolicyOverlap[overlap === SchedulePolicyOverlap.UNSPECIFIED ? SchedulePolicyOverlap.SKIP : overlap] ?? `${overlap}`;
  return name.toLowerCase().replace(/_/g, "-");
}

/** `enqueued`, `skipped-overlap`...: the outcome of a tick. */
export function outcomeName(outcome: ScheduleTickOutcome): string {
  return (ScheduleTickOutcome[outcome] ?? `${outcome}`).toLowerCase().replace(/_/g, "-");
}

/** What a tick became, in one cell: `action 42 (COMPLETED)` or why none. */
function tickResult(tick: ScheduleTick): string {
  const action = tick.actionId !== 0n ? `action ${tick.actionId}${tick.actionStatus ? ` (${statusName(tick.actionStatus)})` : ""}` : "";
  return [action, tick.reason].filter(Boolean).join(": ");
}

function lastTickText(tick: ScheduleTick | undefined): string {
  return tick ? `${time(tick.tickTime)} ${outcomeName(tick.outcome)}${tick.actionId !== 0n ? ` ${tick.actionId}` : ""}` : "";
}

export function schedulesTable(schedules: Schedule[]): string[] {
  return table(schedules, [
    { header: "ID", cell: (s) => s.id, max: 32 },
    { header: "TYPE", cell: (s) => s.template?.actionType ?? "", max: 28 },
    { header: "CLOCK", cell: clockText, max: 40 },
    { header: "NEXT TICK", cell: (s) => time(s.nextTickTime) || (s.paused ? "-" : "none") },
    { header: "LAST TICK", cell: (s) => lastTickText(s.lastTick), max: 48 },
    { header: "STATE", cell: (s) => (s.paused ? "paused" : "active") },
    { header: "OWNER", cell: (s) => s.owner, max: 24 },
  ]);
}

const json = (value: JsonObject | undefined) => (value && Object.keys(value).length > 0 ? JSON.stringify(value) : "");

/** The template in one line: `redeploy_service on svc/api in project shop`. */
function templateText(template: EnqueueActionRequest | undefined): string {
  if (!template) return "";
  return [
    template.actionType,
    template.targetRef && `on ${template.targetRef}`,
    template.project && `in project ${template.project}`,
    template.riskLevel ? `risk ${(RiskLevel[template.riskLevel] ?? "").toLowerCase()}` : "",
  ]
    .filter(Boolean)
    .join(" ");
}

/** One schedule as `label  value` lines. */
export function scheduleFields(schedule: Schedule): string[] {
  const template = schedule.template;
  return fields([
    ["schedule", `${schedule.id}  ${schedule.paused ? "PAUSED" : "active"}`],
    ["paused", schedule.paused && schedule.pauseReason],
    ["description", schedule.description],
    ["clock", clockText(schedule)],
    ["from", time(schedule.startTime)],
    ["until", time(schedule.endTime)],
    ["jitter", exactDuration(schedule.jitter)],
    ["overlap", overlapName(schedule.overlapPolicy)],
    ["catch up", schedule.catchUpWindow ? exactDuration(schedule.catchUpWindow) : "1m (default)"],
    ["action", templateText(template)],
    ["payload", json(template?.payload)],
    ["owner", `${schedule.owner}  ${time(schedule.createTime)}`],
    ["changed", time(schedule.updateTime)],
    ["next tick", time(schedule.nextTickTime)],
    ["last tick", schedule.lastTick && `${lastTickText(schedule.lastTick)}${schedule.lastTick.reason ? `: ${schedule.lastTick.reason}` : ""}`],
    ["revision", `${schedule.revision}`],
  ]);
}

export function ticksTable(ticks: ScheduleTick[]): string[] {
  return table(ticks, [
    { header: "TICK", cell: (t) => time(t.tickTime) },
    { header: "OUTCOME", cell: (t) => outcomeName(t.outcome) },
    { header: "ACTION", cell: (t) => (t.actionId !== 0n ? `${t.actionId}` : "-"), right: true },
    { header: "RESULT", cell: tickResult, max: 80 },
    { header: "BY", cell: (t) => (t.backfill ? "backfill" : "clock") },
    { header: "RECORDED", cell: (t) => time(t.recordTime) },
  ]);
}

/** `schedule get`: the schedule, its next ticks, then its recent ticks. */
export function scheduleView(response: GetScheduleResponse): string[] {
  const upcoming = response.upcomingTickTimes.map((tick: Timestamp) => `  ${time(tick)}`);
  return [
    ...scheduleFields(response.schedule!),
    "",
    response.upcomingTickTimes.length ? `next ticks${response.schedule?.paused ? " (while paused they pass without an action)" : ""}:` : "next ticks: none",
    ...upcoming,
    "",
    ...(response.recentTicks.length ? ["recent ticks, newest first:", ...ticksTable(response.recentTicks)] : ["recent ticks: none yet"]),
  ];
}
