// What a webhook endpoint can ask to be told about: one row per kind of
// notification, naming the event it comes from and, where one event type
// means several things, how to tell them apart. The outbox trigger
// (webhook_notifiable() in migrations/008_webhook_outbox.sql) copies a
// superset of these events; a new kind is a row here and, for an event type
// the trigger does not copy yet, a line there.
import type { EventRow } from "../store/rows.js";

export interface KindRow {
  kind: string;
  eventType: string;
  /** One line for the docs and for `--help`-style listings. */
  doc: string;
  /** Only for events that need telling apart; absent: every event of the type. */
  when?: (event: EventRow) => boolean;
}

const byPolicy = (event: EventRow) => event.actor.startsWith("policy:");
// The sweeper's expiry writes approval_expired_at; a person's rejection
// never does, whatever reason text it gives.
const expired = (event: EventRow) => event.payload.approval_expired_at !== undefined;

export const NOTIFICATION_KINDS = [
  {
    kind: "approval_requested",
    eventType: "action_enqueued",
    doc: "An action was enqueued and waits for approval (PENDING).",
    when: (event) => event.payload.status === "pending",
  },
  {
    kind: "approval_granted",
    eventType: "approval_granted",
    doc: "One approval was recorded; the action still needs more to reach its quorum.",
  },
  {
    kind: "action_approved",
    eventType: "action_approved",
    doc: "People approved the action: its quorum is met and it is APPROVED. Approvals by the policy itself notify nobody.",
    when: (event) => !byPolicy(event),
  },
  {
    kind: "action_rejected",
    eventType: "action_rejected",
    doc: "An approver rejected a PENDING action, or a worker rejected a claimed one.",
    when: (event) => !expired(event),
  },
  {
    kind: "approval_expired",
    eventType: "action_rejected",
    doc: "A PENDING action's approval window closed before its quorum: it is REJECTED and will not run.",
    when: expired,
  },
  {
    kind: "attempt_failed",
    eventType: "action_retry_scheduled",
    doc: "An attempt failed and a retry is scheduled (the action is APPROVED again, deferred by its backoff).",
  },
  {
    kind: "action_failed",
    eventType: "action_failed",
    doc: "The action failed for good (dead-lettered): no attempts left or not retryable. It stays FAILED until an operator retries it.",
  },
  { kind: "paused", eventType: "coordinator_paused", doc: "An operator paused claims (all, a type, a project) or auto-approval." },
  { kind: "resumed", eventType: "coordinator_resumed", doc: "An operator lifted a pause." },
  { kind: "policy_reloaded", eventType: "policy_reloaded", doc: "A new approval policy was put in force (ReloadPolicy or SIGHUP)." },
  {
    kind: "break_glass",
    eventType: "break_glass",
    doc: "An operator broke glass on an action (BreakGlass): it may run inside a closed change window. The event names who and why.",
  },
] as const satisfies readonly KindRow[];

export type NotificationKind = (typeof NOTIFICATION_KINDS)[number]["kind"];

export const KIND_NAMES = NOTIFICATION_KINDS.map((row) => row.kind) as [NotificationKind, ...NotificationKind[]];

/** The kind of notification an outbox event is, or null when it is none
 * (the trigger copies a superset). */
export function kindOf(event: EventRow): NotificationKind | null {
  for (const row of NOTIFICATION_KINDS as readonly KindRow[]) {
    if (row.eventType === event.event_type && (!row.when || row.when(event))) return row.kind as NotificationKind;
  }
  return null;
}

/** The event types behind these kinds, for counting a backlog in SQL. */
export function eventTypesOf(kinds: readonly string[]): string[] {
  return [...new Set(NOTIFICATION_KINDS.filter((row) => kinds.includes(row.kind)).map((row) => row.eventType))];
}
