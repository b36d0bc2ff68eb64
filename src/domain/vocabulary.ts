// The words of actionq's domain, in one place: the statuses an action moves
// through, the risk levels, the event types of the log, and what a name
// may look like. The store
// re-exports them (src/store/rows.ts) and the web console imports them, so
// a new event type is written once. No imports: the console's bundle takes
// this file as it is.
export const STATUSES = ["pending", "approved", "claimed", "completed", "failed", "rejected", "cancelled"] as const;
export type Status = (typeof STATUSES)[number];

/** The statuses an action ends in (FAILED only until a retry). */
const FINISHED_STATUSES: readonly Status[] = ["completed", "failed", "rejected", "cancelled"];

export function isFinished(status: Status): boolean {
  return FINISHED_STATUSES.includes(status);
}

/** In rising order. */
export const RISK_LEVELS = ["safe", "guarded", "dangerous"] as const;
export type RiskLevel = (typeof RISK_LEVELS)[number];

/** Whether `risk` is a lower level than `than`. */
export function riskBelow(risk: RiskLevel, than: RiskLevel): boolean {
  return RISK_LEVELS.indexOf(risk) < RISK_LEVELS.indexOf(than);
}

/** The event types a schedule writes (action_id 0, the schedule's id in
 * the payload). */
export const SCHEDULE_EVENT_TYPES = [
  "schedule_created",
  "schedule_updated",
  "schedule_paused",
  "schedule_resumed",
  "schedule_deleted",
  "schedule_tick_skipped",
] as const;

export const EVENT_TYPES = [
  "action_enqueued",
  "approval_granted",
  "action_approved",
  "action_rejected",
  "action_claimed",
  "action_completed",
  "action_failed",
  "action_cancelled",
  "claim_timed_out",
  "claim_released",
  "claim_extended",
  "action_retry_scheduled",
  "action_retried",
  "action_progress",
  "coordinator_cycle",
  "coordinator_paused",
  "coordinator_resumed",
  "policy_reloaded",
  "break_glass",
  ...SCHEDULE_EVENT_TYPES,
  "action_imported",
  "action_interrupted",
] as const;
export type EventType = (typeof EVENT_TYPES)[number];
export const COORDINATOR_EVENT_TYPES: readonly EventType[] = ["coordinator_cycle", "coordinator_paused"];

/** What a schedule's tick does while an earlier tick's action is
 * unfinished (Temporal's names). */
export const OVERLAP_POLICIES = ["skip", "buffer_one", "allow_all", "cancel_other"] as const;
export type OverlapPolicy = (typeof OVERLAP_POLICIES)[number];

/** What became of a schedule's tick. */
export const TICK_OUTCOMES = ["enqueued", "skipped_overlap", "skipped_catch_up", "buffered", "failed"] as const;
export type TickOutcome = (typeof TICK_OUTCOMES)[number];

/** Schedule ids: like names, without the slash. */
export const SCHEDULE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;

/** The external id actionq derives for a native action (migration 014):
 * a UUID version 8 whose last 15 hex digits are the action id. Whether
 * this deployment derived it, only the database can say. */
export const DERIVED_EXTERNAL_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-8000-8([0-9a-f]{3})-([0-9a-f]{12})$/;

/** Action types, projects and event types: short, printable, no spaces. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$/;
/** Formats, not tunable: names and principals are identifiers. */
export const NAME_LENGTH = 128;
export const PRINCIPAL_LENGTH = 256;

/** The defaults of the tunable caps (ACTIONQ_MAX_*), for clients that want
 * to stay inside them without asking. */
export const DEFAULT_LIMITS = { textLength: 4096, refLength: 1024 } as const;
