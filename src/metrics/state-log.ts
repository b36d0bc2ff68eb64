// One info line for each move of an action and for each pause and resume,
// so that an operator reading the log sees what changed (action, type, who,
// from, to) without the per-call lines, which are at debug. It listens to
// the store's commits, so moves made by the server's own timers (a lease
// that ran out, an approval window that closed) are logged like the
// moves a call made.
import type { Logger } from "pino";
import type { Committed } from "../store/commits.js";

const upper = (status: string) => status.toUpperCase();

export class StateLog {
  constructor(private readonly log: Logger) {}

  committed(change: Committed): void {
    if (!this.log.isLevelEnabled("info")) return;
    if (change.kind === "progressed") return;
    if ("pause" in change) {
      const { pause } = change;
      const scope = `${pause.kind}${pause.value ? ` ${pause.value}` : ""}`;
      const paused = change.kind === "paused";
      this.log.info(
        { scope, principal: change.actor, ...(paused ? { reason: pause.reason } : { pausedBy: pause.paused_by }) },
        paused ? `claims paused: ${scope}` : `claims resumed: ${scope}`,
      );
      return;
    }
    const { action } = change;
    if (change.kind === "break_glass") {
      this.log.info(
        { change: change.kind, actionId: action.id, actionType: action.action_type, principal: change.actor, reason: action.break_glass_reason },
        `action ${action.id}: glass broken; it may run inside a closed change window`,
      );
      return;
    }
    const from = change.from === null ? "NEW" : upper(change.from);
    const to = upper(action.status);
    // An approval short of its quorum, an ack, an extension: no move.
    if (from === to) return;
    this.log.info(
      { change: change.kind, actionId: action.id, actionType: action.action_type, ...(change.actor ? { principal: change.actor } : {}), from, to },
      `action ${action.id} ${from} -> ${to}`,
    );
  }
}
