// How a server hears of commits made on the other replicas: over its one
// LISTEN connection when it has a direct one (ACTIONQ_LISTEN_URL, which
// defaults to ACTIONQ_URL), or else by polling every
// ACTIONQ_FALLBACK_POLL_SECONDS. A transaction pooler cannot carry LISTEN
// (the session that listens is not the one that waits), so behind one
// without a direct URL the server polls, says so at start, and every
// wakeup still comes, a poll interval late at most. The same poll runs
// while a configured LISTEN connection is lost, until it is back.
import type { Logger } from "pino";
import { Listener, type ListenerHandlers } from "./listener.js";

export type WakeupMode = "listen" | "poll";

/** Where the LISTEN connection goes, or why there is none. */
export type ListenTarget = { url: string } | { url: undefined; reason: string };

/** ACTIONQ_LISTEN_URL: unset means the pool's URL; `none` means polling. */
export function listenTarget(listenUrl: string | undefined, databaseUrl: string): ListenTarget {
  if (listenUrl === "none") return { url: undefined, reason: "ACTIONQ_LISTEN_URL=none" };
  return { url: listenUrl ?? databaseUrl };
}

export interface WakeupHandlers extends ListenerHandlers {
  /** No notification can arrive: look for everything one would have said. */
  onPoll(): void;
}

export class Wakeups {
  readonly listener: Listener | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private polls = 0;

  constructor(
    private readonly target: ListenTarget,
    schema: string,
    pingIntervalMs: number,
    private readonly fallbackPollMs: number,
    private readonly handlers: WakeupHandlers,
    private readonly log: Logger,
  ) {
    this.listener = target.url === undefined ? undefined : new Listener(target.url, schema, pingIntervalMs, handlers, log);
  }

  /** listen while the LISTEN connection is up; poll otherwise. */
  get mode(): WakeupMode {
    return this.listener?.connected ? "listen" : "poll";
  }

  /** Whether a LISTEN connection is up. */
  get listening(): boolean {
    return this.listener?.connected ?? false;
  }

  /** Fallback polls made so far (for tests and the log). */
  get pollCount(): number {
    return this.polls;
  }

  /** With a LISTEN URL, rejects if its first connection fails: a server
   * told to listen somewhere should not quietly poll from the start. */
  async start(): Promise<void> {
    if (this.listener) await this.listener.start();
    else {
      this.log.info(
        { reason: this.target.url === undefined ? this.target.reason : "", interval_ms: this.fallbackPollMs },
        `no direct LISTEN connection: polling every ${this.fallbackPollMs} ms for work, ended claims, events and notifications from other replicas`,
      );
    }
    this.pollTimer = setInterval(() => {
      if (this.mode !== "poll") return;
      this.polls++;
      this.handlers.onPoll();
    }, this.fallbackPollMs);
    this.pollTimer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.pollTimer);
    await this.listener?.stop();
  }
}
