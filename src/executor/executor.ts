// The dispatcher loop: resume what the journal holds, then keep one claim
// stream open, never holding more than `maxInFlight` claims across streams
// (the server counts a window per stream, so after a reconnect the executor
// asks only for the room it has left).
import type { Logger } from "../log.js";
import { type ClaimDeps, reclaimEntry, runClaim, takeStreamedClaim } from "./claim-run.js";
import { Backoff, type QueueClient, describeError, isFinal, pause } from "./rpc.js";

export interface ExecutorSettings {
  /** The worker name sent to the server; empty lets the server name the
   * authenticated principal. */
  identity: string;
  types: string[];
  maxInFlight: number;
  leaseSeconds: number;
}

type StreamEnd = "drained" | "broken" | "resize" | "stopped";

interface Job {
  /** Which stream delivered the claim; 0 for a resumed one. */
  stream: number;
  done: Promise<void>;
}

export class ExecutorFatalError extends Error {}

export class Executor {
  private readonly jobs = new Set<Job>();
  private streamNumber = 0;
  private currentWindow = 0;
  private slotFreed: (() => void) | undefined;
  /** Set while a stream is open with less room than the executor has. */
  private reopenForRoom: (() => void) | undefined;

  constructor(
    private readonly settings: ExecutorSettings,
    private readonly client: QueueClient,
    private readonly deps: ClaimDeps,
    private readonly log: Logger,
  ) {}

  get held(): number {
    return this.jobs.size;
  }

  /** Runs until `stop` aborts, then waits for the claims it holds. */
  async run(stop: AbortSignal): Promise<void> {
    await this.resume(stop);
    const backoff = new Backoff();
    while (!stop.aborted) {
      await this.freeSlot(stop);
      // Claims started together (resumed ones, say) finish together; a
      // moment's wait lets the stream open with all the room they leave.
      if (this.jobs.size > 0) await pause(100, stop);
      if (stop.aborted) break;
      const end = await this.holdStream(this.settings.maxInFlight - this.jobs.size, stop, backoff);
      if (end === "drained") {
        // The server is going away: finish here, then find the next one.
        this.log.info({ held: this.jobs.size }, "stream drained; finishing held claims before reconnecting");
        await this.finishHeld();
      }
      if (end === "drained" || end === "broken") await pause(backoff.next(), stop);
    }
    this.log.info({ held: this.jobs.size }, "stopped taking work; finishing held claims");
    await this.finishHeld();
  }

  /** Every journal entry is checked with the server before the stream
   * opens, so that a claim still ours is never mistaken for new work. */
  private async resume(stop: AbortSignal): Promise<void> {
    const entries = await this.deps.journal.entries(this.log);
    if (entries.length === 0) return;
    this.log.info({ entries: entries.length }, "resuming journaled claims");
    const reclaimed = await Promise.all(entries.map(async (entry) => ({ entry, action: await reclaimEntry(this.deps, entry, stop) })));
    for (const { entry, action } of reclaimed) {
      if (action) this.track(0, () => runClaim(this.deps, action, entry, true));
    }
  }

  private async holdStream(window: number, stop: AbortSignal, backoff: Backoff): Promise<StreamEnd> {
    const stream = ++this.streamNumber;
    const ended = new AbortController();
    const onStop = () => ended.abort();
    stop.addEventListener("abort", onStop);
    let resized = false;
    this.currentWindow = window;
    if (window < this.settings.maxInFlight) {
      this.reopenForRoom = () => {
        resized = true;
        ended.abort();
      };
    }
    const log = this.log.child({ stream, window });
    log.info({ types: this.settings.types }, "opening claim stream");
    try {
      const messages = this.client.streamClaims(
        {
          worker: this.settings.identity,
          actionTypes: this.settings.types,
          maxInFlight: window,
          leaseDuration: { seconds: BigInt(this.settings.leaseSeconds) },
        },
        { signal: ended.signal },
      );
      for await (const message of messages) {
        backoff.reset();
        if (message.kind.case === "claim") {
          const claim = message.kind.value;
          this.track(stream, () => takeStreamedClaim(this.deps, claim));
        } else if (message.kind.case === "drain") {
          log.info({ reason: message.kind.value.reason }, "server sent Drain");
          return "drained";
        }
      }
      log.warn("the server ended the claim stream; reconnecting");
      return "broken";
    } catch (error) {
      if (stop.aborted) return "stopped";
      if (resized) {
        log.info("reopening the claim stream with the room freed by earlier claims");
        return "resize";
      }
      if (isFinal(error)) throw new ExecutorFatalError(`the server refused the claim stream: ${describeError(error)}`);
      log.warn({ err: describeError(error) }, "claim stream broke; reconnecting");
      return "broken";
    } finally {
      ended.abort();
      this.reopenForRoom = undefined;
      stop.removeEventListener("abort", onStop);
    }
  }

  private track(stream: number, work: () => Promise<void>): void {
    const job: Job = {
      stream,
      done: work()
        .catch((error: unknown) => {
          // A local fault (the journal's disk, a bug): the entry, if written,
          // stays for the next start, and the lease lapses for another
          // worker meanwhile.
          this.log.error({ err: error }, "claim abandoned after an unexpected error");
        })
        .finally(() => {
          this.jobs.delete(job);
          this.slotFreed?.();
          this.onJobEnded();
        }),
    };
    this.jobs.add(job);
  }

  /** A stream opened with a reduced window keeps it; once it holds nothing
   * and more room is free than it has, reopening it gets that room back.
   * (Only a claim already on its way is released by that, and requeued.) */
  private onJobEnded(): void {
    if (!this.reopenForRoom) return;
    const current = this.streamNumber;
    const ownHeld = [...this.jobs].filter((job) => job.stream === current).length;
    if (ownHeld === 0 && this.currentWindow < this.settings.maxInFlight - this.jobs.size) this.reopenForRoom();
  }

  private async freeSlot(stop: AbortSignal): Promise<void> {
    while (this.jobs.size >= this.settings.maxInFlight && !stop.aborted) {
      await new Promise<void>((resolve) => {
        const wake = () => {
          stop.removeEventListener("abort", wake);
          this.slotFreed = undefined;
          resolve();
        };
        this.slotFreed = wake;
        stop.addEventListener("abort", wake);
      });
    }
  }

  private async finishHeld(): Promise<void> {
    while (this.jobs.size > 0) await Promise.all([...this.jobs].map((job) => job.done));
  }
}
