// Every server runs one: rejects PENDING actions whose approval window
// closed, requeues claims whose lease ran out and streamed claims never
// acknowledged, and (with a retention age) archives old finished actions
// and prunes the schedule ticks that enqueued nothing.
// SKIP LOCKED lets several replicas sweep at once
// without waiting on each other or requeueing anything twice.
import type { Logger } from "pino";
import type { ActionStore } from "../store/actions.js";

export class Sweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly store: ActionStore,
    private readonly intervalMs: number,
    private readonly log: Logger,
    /** Finished actions older than this are archived; never when unset. */
    private readonly retentionMs?: number,
    private readonly ticks?: { pruneTicks(ageMs: number): Promise<number> },
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = this.sweepOnce().finally(() => (this.running = undefined));
    }, this.intervalMs);
    this.timer.unref();
  }

  private async sweepOnce(): Promise<void> {
    try {
      const { expired, requeued } = await this.store.sweep("server:sweeper");
      if (requeued.length > 0) this.log.info({ requeued: requeued.length }, "requeued expired claims");
      if (expired.length > 0) this.log.info({ rejected: expired.length }, "rejected actions whose approval window closed");
      if (this.retentionMs !== undefined) {
        const archived = await this.store.archiveFinished(this.retentionMs);
        if (archived > 0) this.log.info({ archived }, "moved finished actions past retention to the archive");
        const pruned = (await this.ticks?.pruneTicks(this.retentionMs)) ?? 0;
        if (pruned > 0) this.log.info({ pruned }, "deleted schedule ticks past retention that enqueued nothing");
      }
    } catch (error) {
      this.log.warn({ err: (error as Error).message }, "sweep failed; will retry");
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
