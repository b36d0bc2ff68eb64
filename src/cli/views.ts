// actionctl's table mode: what a person reads in a terminal. Lists are
// aligned tables, one action is a short summary, and long values are cut
// (the JSON modes print everything).
import type { JsonObject } from "@bufbuild/protobuf";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { stringify } from "yaml";
import { type Action, ActionStatus, type ApprovalRequirement, type Claim, type Event, RiskLevel } from "../../gen/actionq/v1/action_pb.js";
import {
  type ConcurrencyHold,
  type GetCallerResponse,
  type GetQueueStatsResponse,
  type ItemError,
  type Pause,
  type WindowHold,
  PauseKind,
  type PauseScope,
} from "../../gen/actionq/v1/action_queue_service_pb.js";
import { DERIVED_EXTERNAL_ID_PATTERN } from "../domain/vocabulary.js";
import { WIRE_STATUSES } from "../domain/wire-statuses.js";
import { eventFacts } from "./history.js";
import { fields, table, truncate } from "./table.js";

export function statusName(status: ActionStatus): string {
  return ActionStatus[status] ?? `${status}`;
}

function riskName(risk: RiskLevel): string {
  return (RiskLevel[risk] ?? `${risk}`).toLowerCase();
}

/** RFC 3339 UTC to the second: `2026-12-06T18:45:36Z`. */
export function time(timestamp: Timestamp | undefined): string {
  if (!timestamp) return "";
  return new Date(Number(timestamp.seconds) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** `45s`, `12m`, `3h`, `4d`: how long ago, for list columns. */
export function age(timestamp: Timestamp | undefined, now = Date.now()): string {
  if (!timestamp) return "";
  return span(Math.max(0, now / 1000 - Number(timestamp.seconds)));
}

function span(seconds: number): string {
  if (seconds < 90) return `${Math.round(seconds)}s`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)}m`;
  if (seconds < 36 * 3600) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

export function durationText(duration: Duration | undefined): string {
  return duration ? span(Number(duration.seconds) + duration.nanos / 1e9) : "";
}

const json = (value: JsonObject | undefined) => (value && Object.keys(value).length > 0 ? JSON.stringify(value) : "");

/** The action as `label  value` lines: what it is, where it stands, how it
 * got there. `full` adds the fields that `show` prints and a summary skips. */
export function actionFields(action: Action, full: boolean): string[] {
  const finished = action.status === ActionStatus.COMPLETED || action.status >= ActionStatus.FAILED;
  return fields([
    ["action", `${action.id}  ${action.actionType}  ${statusName(action.status)}`],
    ["project", action.project],
    ["target", action.targetRef],
    ["node", full && action.node],
    ["service", full && action.service],
    ["payload", json(action.payload)],
    ["risk", `${riskName(action.riskLevel)}${action.priority !== 0 ? `, priority ${action.priority}` : ""}`],
    ["created by", `${action.createdBy}  ${time(action.createTime)}`],
    ["scheduled by", action.scheduleId && `${action.scheduleId} at tick ${time(action.scheduleTickTime)}`],
    [
      "approvals",
      action.status === ActionStatus.PENDING &&
        `${action.approvers.length} of ${action.approvalsRequired}${action.approvers.length ? ` (${action.approvers.join(", ")})` : ""}`,
    ],
    ["open", action.approvalRequirements.length > 0 && action.approvalsNeeded],
    ["groups", action.approvalRequirements.map(requirementText).join("; ")],
    ["expires", action.status === ActionStatus.PENDING && time(action.approvalExpireTime)],
    ["approved by", action.approvedBy && `${action.approvedBy}  ${time(action.approveTime)}`],
    ["run after", (action.status === ActionStatus.PENDING || action.status === ActionStatus.APPROVED) && time(action.runAfter)],
    ["concurrency", action.concurrencyKey && `key ${action.concurrencyKey}, at most ${action.concurrencyLimit} at a time`],
    ["max attempts", action.failures === 0 && action.maxAttempts > 1 && `${action.maxAttempts}`],
    ["claimed by", action.claimedBy && `${action.claimedBy}, attempt ${action.attempt}`],
    ["lease until", time(action.claimDeadline)],
    ["failures", action.failures > 0 && `${action.failures} of ${action.maxAttempts}${action.lastError ? ` (last: ${action.lastError})` : ""}`],
    ["result", action.resultRef],
    ["reason", finished && action.failureReason],
    ["finished", time(action.finishTime)],
    ["parent", action.parentId !== 0n && `${action.parentId}`],
    ["rollback of", action.rollbackOfId !== 0n && `${action.rollbackOfId}`],
    ["supersedes", action.supersedesId !== 0n && `${action.supersedesId}`],
    ["rollback", action.rollbackRef && `${action.rollbackRef} ${json(action.rollbackPayload)}`.trim()],
    ["correlation", full && action.correlationId],
    ["sources", full && action.sourceRefs.join(", ")],
    ["idempotency", full && action.idempotencyKey],
    // A native action's is derived from its id: only an imported one's says more.
    ["external id", full && !DERIVED_EXTERNAL_ID_PATTERN.test(action.externalId) && action.externalId],
    ["policy", full && action.policyVersion],
    ["break-glass", action.breakGlassBy && `${action.breakGlassBy}  ${time(action.breakGlassTime)}: ${action.breakGlassReason}`],
  ]);
}

/** "sre-leads 1 of 1 (human:carol)": one approver group requirement and
 * who met it so far. */
function requirementText(requirement: ApprovalRequirement): string {
  const met = Math.min(requirement.satisfiedBy.length, requirement.count);
  return `${requirement.group} ${met} of ${requirement.count}${requirement.satisfiedBy.length ? ` (${requirement.satisfiedBy.join(", ")})` : ""}`;
}

/** After a change: the action as it is now, with a first word saying what
 * happened (`created`, `approved`...). */
export function actionSummary(action: Action | undefined, note?: string): string[] {
  if (!action) return [note ?? "done"];
  const lines = actionFields(action, false);
  return note ? [note, ...lines] : lines;
}

export function claimSummary(claim: Claim): string[] {
  return [
    ...fields(
      [
        ["claim token", claim.claimToken],
        ["ack before", time(claim.ackDeadline)],
      ],
      200,
    ),
    ...actionFields(claim.action!, false),
  ];
}

export function actionsTable(actions: Action[]): string[] {
  const now = Date.now();
  return table(actions, [
    { header: "ID", cell: (a) => `${a.id}`, right: true },
    { header: "STATUS", cell: (a) => statusName(a.status) },
    { header: "TYPE", cell: (a) => a.actionType, max: 28 },
    { header: "PROJECT", cell: (a) => a.project, max: 16, optional: true },
    { header: "TARGET", cell: (a) => a.targetRef, max: 24, optional: true },
    { header: "RISK", cell: (a) => riskName(a.riskLevel) },
    { header: "BY", cell: (a) => a.createdBy, max: 20 },
    { header: "AGE", cell: (a) => age(a.createTime, now), right: true },
    { header: "DETAIL", cell: (a) => actionDetail(a), max: 40, optional: true },
  ]);
}

/** The one thing worth knowing about an action in a list. */
function actionDetail(action: Action): string {
  switch (action.status) {
    case ActionStatus.PENDING:
      // With approver groups the count alone would hide what is missing.
      return action.approvalRequirements.length > 0 && action.approvalsNeeded
        ? action.approvalsNeeded
        : `${action.approvers.length} of ${action.approvalsRequired} approvals`;
    case ActionStatus.APPROVED:
      return action.runAfter && Number(action.runAfter.seconds) * 1000 > Date.now() ? `runs after ${time(action.runAfter)}` : "";
    case ActionStatus.CLAIMED:
      return `${action.claimedBy}, attempt ${action.attempt}`;
    case ActionStatus.COMPLETED:
      return action.resultRef;
    default:
      return action.failureReason;
  }
}

/** Events in fixed columns, so that followed events line up without knowing
 * what comes next. */
export function eventLine(event: Event): string {
  const action = event.actionId === 0n ? "-" : `${event.actionId}`;
  return [
    `${event.id}`.padStart(7),
    time(event.createTime).padEnd(20),
    action.padStart(6),
    truncate(event.eventType, 22).padEnd(22),
    truncate(event.actor, 20).padEnd(20),
    truncate(eventFacts(event), 80),
  ]
    .join("  ")
    .trimEnd();
}

export const EVENT_HEADER = ["ID".padStart(7), "TIME".padEnd(20), "ACTION", "TYPE".padEnd(22), "ACTOR".padEnd(20), "DETAIL"].join("  ");

export function scopeText(scope: PauseScope | undefined): string {
  switch (scope?.kind) {
    case PauseKind.ALL:
      return "all claims";
    case PauseKind.ACTION_TYPE:
      return `claims of type ${scope.value}`;
    case PauseKind.PROJECT:
      return `claims of project ${scope.value}`;
    case PauseKind.AUTO_APPROVAL:
      return "auto-approval";
    default:
      return "?";
  }
}

/** `claims of type x paused by human:carol since ...: deploy freeze`. */
export function pauseText(pause: Pause): string {
  return `${scopeText(pause.scope)} paused by ${pause.pausedBy} since ${time(pause.createTime)}: ${pause.reason}`;
}

const STATUS_ORDER = WIRE_STATUSES;

/** One row per action type, one column per status that has actions. */
export function statsView(stats: GetQueueStatsResponse): string[] {
  const byType = new Map<string, Map<ActionStatus, bigint>>();
  for (const count of stats.counts) {
    const row = byType.get(count.actionType) ?? new Map<ActionStatus, bigint>();
    row.set(count.status, (row.get(count.status) ?? 0n) + count.count);
    byType.set(count.actionType, row);
  }
  const statuses = STATUS_ORDER.filter((status) => stats.counts.some((count) => count.status === status));
  const types = [...byType.keys()].sort();
  const lines = table(types, [
    { header: "TYPE", cell: (type: string) => type, max: 40 },
    ...statuses.map((status) => ({ header: statusName(status), cell: (type: string) => `${byType.get(type)!.get(status) ?? ""}`, right: true })),
  ]);
  if (types.length === 0) lines.splice(0, lines.length, "no actions");
  const oldest = durationText(stats.oldestClaimableAge);
  lines.push("", `claimable: ${stats.claimable}${oldest ? ` (the oldest has waited ${oldest})` : ""}`);
  lines.push(`policy: ${stats.policyVersion}`);
  lines.push(stats.pauses.length === 0 ? "pauses: none" : "pauses:");
  for (const pause of stats.pauses) lines.push(`  ${pauseText(pause)}`);
  if (stats.heldKeys.length > 0) {
    lines.push("held by concurrency keys:");
    for (const held of stats.heldKeys) lines.push(`  ${held.key}: ${held.waiting} waiting; ${holdText(held.limit, held.holderIds)}`);
  }
  const windows = stats.changeWindows?.windows ?? [];
  if (windows.length > 0) {
    lines.push("change windows:");
    for (const window of windows) {
      const next = window.nextChangeTime ? `${window.closed ? "opens" : "closes"} ${time(window.nextChangeTime)}` : "no change within a year";
      const held = window.effect === "hold_claims" ? `, holding ${window.held}` : "";
      lines.push(`  ${window.name} (${window.effect}, ${window.timeZone}): ${window.closed ? "CLOSED" : "open"}, ${next}${held}`);
    }
  }
  if (stats.webhooks.length > 0) lines.push("webhooks:");
  for (const hook of stats.webhooks) {
    const age = durationText(hook.oldestPendingAge);
    const failing = hook.consecutiveFailures > 0 ? `; failing: ${hook.consecutiveFailures} attempts, last ${hook.lastError}` : "";
    lines.push(`  ${hook.endpoint}: ${hook.pending} pending${age ? ` (the oldest for ${age})` : ""}${failing}`);
  }
  return lines;
}

function holdText(limit: number, holderIds: bigint[]): string {
  const holders = holderIds.length === 0 ? "none running" : `running: ${holderIds.join(", ")}`;
  return `at most ${limit} at a time, ${holders}`;
}

/** Why an approved action waits for its concurrency key. */
export function holdLine(hold: ConcurrencyHold | undefined): string[] {
  if (!hold) return [];
  const ahead = hold.ahead > 0n ? `${hold.ahead} ahead of it; ` : "";
  return fields([["waits for", `concurrency key ${hold.key}: ${ahead}${holdText(hold.limit, hold.holderIds)}`]]);
}

/** `held by window X until T`, for show. */
export function windowHoldLines(hold: WindowHold | undefined): string[] {
  return hold ? fields([["held", `by change window ${hold.windowName} until ${time(hold.untilTime)}`]]) : [];
}

export function policyView(version: string, source: string, policy: JsonObject | undefined): string[] {
  return [
    `policy ${version} (${source || "built in"})`,
    "",
    ...stringify(policy ?? {})
      .trimEnd()
      .split("\n"),
  ];
}

export function callerView(caller: GetCallerResponse): string[] {
  if (!caller.authenticationEnabled) return ["authentication is off: callers name themselves (--actor, --worker, ...) and may call everything"];
  return fields([
    ["principal", caller.name],
    ["roles", caller.roles.join(", ") || "none"],
    ["projects", caller.projects.join(", ") || "all"],
    ["action types", caller.actionTypes.join(", ") || "all"],
    ["groups", caller.groups.join(", ") || "none"],
  ]);
}

export function itemErrorText(error: ItemError): string {
  return `${error.reason || error.code}: ${error.message}`;
}
