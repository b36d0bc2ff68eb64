// The one seam for what follows a commit. The store reports every change it
// committed here, once, after the commit (a repeat of an earlier call
// changed nothing and is not reported); the dispatcher, the scheduler, the
// metrics, the state log and the webhook notifier subscribe. Handlers call
// none of them, so a new RPC cannot forget one, and a new kind of effect is
// one more subscriber.
//
// Other replicas learn of the same commits through NOTIFY (see
// src/dispatch/listener.ts), which reaches only the dispatcher, the event
// hub and the notifier: they are the effects that must reach every replica.
import type { PauseRow } from "./pauses.js";
import type { ActionRow, Status } from "./rows.js";

/** What a committed change did to an action. */
export type ActionChangeKind =
  | "enqueued"
  | "approval_granted"
  | "approved"
  | "rejected"
  | "claimed"
  | "acked"
  | "extended"
  | "completed"
  | "failed"
  | "retry_scheduled"
  | "retried"
  | "released"
  | "timed_out"
  | "expired"
  | "cancelled"
  /** An operator broke glass: the action may run inside a closed change
   * window. Its status did not change. */
  | "break_glass"
  /** An action imported as already finished (ImportActions): a record of
   * what happened elsewhere, which nothing here will claim or notify of;
   * readers of the log (watchers) are the ones to tell. Imports that wait
   * or may run are reported as enqueued. */
  | "imported";

export interface ActionChange {
  kind: ActionChangeKind;
  /** The row as the commit left it. */
  action: ActionRow;
  /** Its status before the change; null for a new action. */
  from: Status | null;
  /** Who made the change: the producer, approver, worker or operator, or
   * a server component such as server:sweeper. */
  actor: string;
}

/** A worker reported progress on a claim it holds: the claim is alive. */
export interface ProgressChange {
  kind: "progressed";
  actionId: string;
  attempt: number;
  actor: string;
}

export interface PauseChange {
  kind: "paused" | "resumed";
  pause: PauseRow;
  actor: string;
}

export type Committed = ActionChange | ProgressChange | PauseChange;

export type CommitListener = (change: Committed) => void;

/** Hands each committed change to every subscriber, in subscription order,
 * synchronously: the effects have run when the store call returns, so a
 * caller's answer never overtakes them. */
export class Commits {
  private readonly listeners: { name: string; listener: CommitListener }[] = [];

  constructor(private readonly onListenerError: (name: string, error: unknown) => void = () => {}) {}

  subscribe(name: string, listener: CommitListener): () => void {
    const entry = { name, listener };
    this.listeners.push(entry);
    return () => {
      const index = this.listeners.indexOf(entry);
      if (index >= 0) this.listeners.splice(index, 1);
    };
  }

  publish(changes: readonly Committed[]): void {
    for (const change of changes) {
      for (const { name, listener } of this.listeners) {
        // The change is committed whatever a listener does: one that throws
        // must not fail the call or keep the others from hearing of it.
        try {
          listener(change);
        } catch (error) {
          this.onListenerError(name, error);
        }
      }
    }
  }
}

/** The changes of a statement that moved these rows, all of one kind. */
export function moved(
  kind: ActionChangeKind | ((row: ActionRow) => ActionChangeKind),
  rows: readonly ActionRow[],
  from: Status | null,
  actor: (row: ActionRow) => string,
): ActionChange[] {
  return rows.map((action) => ({ kind: typeof kind === "function" ? kind(action) : kind, action, from, actor: actor(action) }));
}
