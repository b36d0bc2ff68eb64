// How a server hears of commits made on the other replicas: over its one
// LISTEN connection when it has a direct one (ACTIONQ_LISTEN_URL, which
// defaults to ACTIONQ_URL unless that is a transaction pooler's), or else
// by polling every ACTIONQ_FALLBACK_POLL_SECONDS. A transaction pooler
// cannot carry LISTEN (the server connection that listens goes back to the
// pool), so behind one without a direct URL the server polls, says so at
// start, and every wakeup still comes, a poll interval late at most. The
// same poll runs while a configured LISTEN connection is lost, until it is
// back.
import type { Logger } from "pino";
import type { Database } from "../store/db.js";
import { Listener, type ListenerHandlers } from "./listener.js";

export type WakeupMode = "listen" | "poll";

/** Where the LISTEN connection goes, or why there is none. */
export type ListenTarget = { database: Database } | { database: undefined; reason: string };

/** ACTIONQ_LISTEN_URL: a URL is a direct connection, whatever ACTIONQ_URL
 * is; `none` means polling; unset means ACTIONQ_URL, unless that is a
 * transaction pooler's, which would take the LISTEN and never deliver a
 * notification: then polling too. */
export function listenTarget(listenUrl: string | undefined, database: Database): ListenTarget {
  if (listenUrl === "none") return { database: undefined, reason: "ACTIONQ_LISTEN_URL=none" };
  if (listenUrl !== undefined) return { database: { url: listenUrl, schema: database.schema, pooler: "none" } };
  if (database.pooler === "transaction") {
    return { database: undefined, reason: "ACTIONQ_DATABASE_POOLER=transaction and no ACTIONQ_LISTEN_URL: LISTEN cannot go through a transaction pooler" };
  }
  return { database };
}

/** The first LISTEN connection failed: the server does not start, and says
 * that it is ACTIONQ_LISTEN_URL's connection (or ACTIONQ_URL's, when that
 * is the one LISTEN uses). */
export class ListenStartError extends Error {
  constructor(
    readonly url: string,
    override readonly cause: unknown,
  ) {
    super(`the LISTEN connection failed: ${(cause as Error)?.message ?? String(cause)}`);
    this.name = "ListenStartError";
  }
}

export interface WakeupHandlers extends ListenerHandlers {
  /** No notification can arrive: look for everything one would have said. */
  onPoll(): void;
}

export class Wakeups {
  readonly listener: Listener | undefined;
  private pollTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly target: ListenTarget,
    pingIntervalMs: number,
    private readonly fallbackPollMs: number,
    private readonly handlers: WakeupHandlers,
    private readonly log: Logger,
  ) {
    this.listener = target.database === undefined ? undefined : new Listener(target.database, pingIntervalMs, handlers, log);
  }

  /** listen while the LISTEN connection is up; poll otherwise. */
  get mode(): WakeupMode {
    return this.listener?.connected ? "listen" : "poll";
  }

  /** Whether a LISTEN connection is up. */
  get listening(): boolean {
    return this.listener?.connected ?? false;
  }

  /** With a LISTEN URL, rejects if its first connection fails: a server
   * told to listen somewhere should not quietly poll from the start. */
  async start(): Promise<void> {
    if (this.listener) {
      try {
        await this.listener.start();
      } catch (error) {
        throw new ListenStartError(this.target.database?.url ?? "", error);
      }
    } else {
      this.log.info(
        { reason: this.target.database === undefined ? this.target.reason : "", interval_ms: this.fallbackPollMs },
        `no direct LISTEN connection: polling every ${this.fallbackPollMs} ms for work, ended claims, events and notifications from other replicas`,
      );
    }
    this.pollTimer = setInterval(() => {
      if (this.mode === "poll") this.handlers.onPoll();
    }, this.fallbackPollMs);
    this.pollTimer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.pollTimer);
    await this.listener?.stop();
  }
}
