// The one LISTEN connection of a server process. It turns PostgreSQL
// notifications into calls on the dispatcher, the event hub, the webhook
// notifier and the schedule runner, reconnects
// with backoff when the connection drops, and says so, because anything
// could have happened while it was away.
import pg from "pg";
import type { Logger } from "pino";
import { channelName, clientConfig } from "../store/db.js";

export interface ListenerHandlers {
  /** An action of this type became claimable. */
  onClaimable(actionType: string): void;
  /** A streamed claim left CLAIMED. `attempt` tells this claim from a
   * later claim of the same action. */
  onClaimEnded(session: string, actionId: string, attempt: number): void;
  /** New events were committed. */
  onEvents(): void;
  /** A pause was lifted, or the change windows were replaced: work of any
   * type may be claimable again. */
  onResumed(): void;
  /** Webhook notifications were committed (migration 008). */
  onNotifications(): void;
  /** A schedule was created or changed (migration 011): its next tick may
   * be sooner than the scheduler thought. */
  onSchedulesChanged(): void;
  /** The connection came back after a loss: notifications may have been
   * missed, so everything should be rechecked. */
  onResync(): void;
}

export class Listener {
  private client: pg.Client | undefined;
  private stopped = false;
  private pingTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  /** True while LISTEN is in force. */
  connected = false;

  constructor(
    private readonly url: string,
    private readonly schema: string,
    private readonly pingIntervalMs: number,
    private readonly handlers: ListenerHandlers,
    private readonly log: Logger,
  ) {}

  /** Connects and starts listening; rejects if the first attempt fails. */
  async start(): Promise<void> {
    await this.connect();
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ ...clientConfig(this.url, this.schema, "actionq-listen"), keepAlive: true });
    client.on("notification", (message) => this.dispatch(message.payload ?? ""));
    client.on("error", (error) => this.lost(client, error));
    client.on("end", () => this.lost(client, new Error("connection ended")));
    await client.connect();
    // channelName validates the schema; the name cannot carry a quote.
    await client.query(`LISTEN "${channelName(this.schema)}"`);
    if (this.stopped) {
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
    this.connected = true;
    this.pingTimer = setInterval(() => this.ping(client), this.pingIntervalMs);
    this.pingTimer.unref();
  }

  private dispatch(payload: string): void {
    if (payload === "e") {
      this.handlers.onEvents();
    } else if (payload.startsWith("w:")) {
      this.handlers.onClaimable(payload.slice(2));
    } else if (payload === "r") {
      this.handlers.onResumed();
    } else if (payload === "n") {
      this.handlers.onNotifications();
    } else if (payload === "s") {
      this.handlers.onSchedulesChanged();
    } else if (payload.startsWith("c:") || payload.startsWith("f:")) {
      // c: a statement's ended claims, comma-separated; f: one (sent by
      // servers before migration 005).
      for (const claim of payload.slice(2).split(",")) {
        const [session, actionId, attempt] = claim.split(":");
        if (session && actionId && attempt) this.handlers.onClaimEnded(session, actionId, Number(attempt));
      }
    }
  }

  /** A connection can die without a FIN; a query that does not come back
   * in time tells us. */
  private ping(client: pg.Client): void {
    const timeout = setTimeout(() => this.lost(client, new Error("LISTEN connection did not answer a ping")), this.pingIntervalMs);
    client.query("SELECT 1").then(
      () => clearTimeout(timeout),
      (error: Error) => {
        clearTimeout(timeout);
        this.lost(client, error);
      },
    );
  }

  private lost(client: pg.Client, error: Error): void {
    if (client !== this.client || this.stopped) return;
    this.log.warn({ err: error.message }, "lost the LISTEN connection; reconnecting");
    this.connected = false;
    this.client = undefined;
    clearInterval(this.pingTimer);
    client.removeAllListeners("end");
    client.on("error", () => {});
    client.end().catch(() => {});
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    const delay = Math.min(5000, 100 * 2 ** Math.min(this.failures, 6));
    this.retryTimer = setTimeout(async () => {
      if (this.stopped) return;
      try {
        await this.connect();
        this.failures = 0;
        this.log.info("LISTEN connection restored");
        this.handlers.onResync();
      } catch (error) {
        this.failures++;
        this.log.warn({ err: (error as Error).message, attempt: this.failures }, "could not restore the LISTEN connection");
        this.scheduleReconnect();
      }
    }, delay);
    this.retryTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.connected = false;
    clearInterval(this.pingTimer);
    clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = undefined;
    if (client) {
      client.removeAllListeners("end");
      client.on("error", () => {});
      await client.end().catch(() => {});
    }
  }
}
