// Words and numbers as the console shows them. Everything producer-written
// is rendered by React as text, never as HTML: nothing here builds markup.
import type { JsonValue } from "@bufbuild/protobuf";
import { type Duration, type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";
import { ActionStatus, RiskLevel } from "../../gen/actionq/v1/action_pb.js";
import { PauseKind } from "../../gen/actionq/v1/action_queue_service_pb.js";
import { WIRE_STATUSES } from "../../src/domain/wire-statuses.js";

export const STATUS_NAMES: Record<ActionStatus, string> = {
  [ActionStatus.UNSPECIFIED]: "unspecified",
  [ActionStatus.PENDING]: "pending",
  [ActionStatus.APPROVED]: "approved",
  [ActionStatus.CLAIMED]: "claimed",
  [ActionStatus.COMPLETED]: "completed",
  [ActionStatus.FAILED]: "failed",
  [ActionStatus.REJECTED]: "rejected",
  [ActionStatus.CANCELLED]: "cancelled",
};

export const RISK_NAMES: Record<RiskLevel, string> = {
  [RiskLevel.UNSPECIFIED]: "safe",
  [RiskLevel.SAFE]: "safe",
  [RiskLevel.GUARDED]: "guarded",
  [RiskLevel.DANGEROUS]: "dangerous",
};

export const PAUSE_KIND_NAMES: Record<PauseKind, string> = {
  [PauseKind.UNSPECIFIED]: "unspecified",
  [PauseKind.ALL]: "all claims",
  [PauseKind.ACTION_TYPE]: "action type",
  [PauseKind.PROJECT]: "project",
  [PauseKind.AUTO_APPROVAL]: "auto-approval",
};

/** Statuses a person can filter by, in lifecycle order. */
export const STATUSES = WIRE_STATUSES;

export function toDate(ts: Timestamp | undefined): Date | undefined {
  return ts ? timestampDate(ts) : undefined;
}

/** An instant as RFC 3339 in UTC, to the second. */
export function isoTime(ts: Timestamp | Date | undefined): string {
  const date = ts instanceof Date ? ts : toDate(ts);
  return date ? date.toISOString().replace(/\.\d{3}Z$/, "Z") : "";
}

/** A span of milliseconds in words a person reads at a glance: 45s, 12m, 3h 5m, 2d 4h. */
export function span(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 ? `${h}h ${m % 60}m` : `${h}h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d}d ${h % 24}h` : `${d}d`;
}

/** "3m ago" or "in 3m" relative to `now`. */
export function relative(ts: Timestamp | Date | undefined, now = Date.now()): string {
  const date = ts instanceof Date ? ts : toDate(ts);
  if (!date) return "";
  const diff = date.getTime() - now;
  return diff >= 0 ? `in ${span(diff)}` : `${span(-diff)} ago`;
}

export function durationMs(d: Duration | undefined): number | undefined {
  return d ? Number(d.seconds) * 1000 + Math.round(d.nanos / 1e6) : undefined;
}

/** JSON as indented text, for a <pre>. */
export function prettyJson(value: JsonValue | object | undefined): string {
  if (value === undefined) return "";
  return JSON.stringify(value, null, 2);
}

/** Cuts long text for a table cell; the whole text stays in the title. */
export function clip(text: string, max = 60): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
