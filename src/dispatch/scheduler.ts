// Every server runs one: moves deferred actions (run_after in the future,
// or a retry waiting out its backoff) into the ready index when their time
// comes. It sleeps until the next known due time, never longer than the
// poll interval, so an action deferred by another replica is still found.
// SKIP LOCKED lets every replica run it at once.
import type { Logger } from "pino";
import type { ActionStore } from "../store/actions.js";
import type { Committed } from "../store/commits.js";

export class Scheduler {
  private timer: NodeJS.Timeout | undefined;
  private wakeAt = Number.POSITIVE_INFINITY;
  private running: Promise<void> | undefined;
  private stopped = false;
  private again = false;

  constructor(
    private readonly store: ActionStore,
    private readonly pollIntervalMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.arm(Date.now());
  }

  /** After a commit: an action this process deferred (run_after, or a
   * retry's backoff) is due at its run_after. */
  committed(change: Committed): void {
    if ("action" in change && change.action.deferred && change.action.run_after) this.hint(change.action.run_after);
  }

  /** An action of this process is deferred until `at`. */
  hint(at: Date): void {
    if (at.getTime() < this.wakeAt) this.arm(at.getTime());
  }

  private arm(at: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.wakeAt = at;
    this.timer = setTimeout(() => this.tick(), Math.max(0, at - Date.now()));
    this.timer.unref();
  }

  private tick(): void {
    if (this.running) {
      // Its reading of the next due time may predate what woke us.
      this.again = true;
      return;
    }
    this.wakeAt = Number.POSITIVE_INFINITY;
    this.running = this.promote().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        this.arm(Date.now());
      }
    });
  }

  private async promote(): Promise<void> {
    let next = Date.now() + this.pollIntervalMs;
    try {
      const { promoted, nextDue } = await this.store.promoteDue();
      if (promoted > 0) this.log.debug({ promoted }, "deferred actions are due");
      if (nextDue) next = Math.min(next, nextDue.getTime());
    } catch (error) {
      this.log.warn({ err: (error as Error).message }, "promoting due actions failed; will retry");
    }
    if (next < this.wakeAt) this.arm(next);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }
}
