// Outgoing webhooks: one sender per configured endpoint, each sending the
// outbox (migration 008) to its endpoint in event-id order, one request at a
// time, retrying a failure with backoff for as long as it takes. With
// several replicas, the one that holds the endpoint's lease (a row,
// renewed every few seconds: see lease.ts) is its only sender; if it
// dies, the lease runs out and another replica's sender takes over from
// the cursor in the database. A clean stop gives the lease back at once.
//
// Nothing here is on a request's path: senders are woken by the commit seam
// (this replica's commits), by NOTIFY 'n' through the listener (the
// others'), and by a backstop poll. A dead or hanging endpoint only delays
// its own notifications.
import type pg from "pg";
import type { Logger } from "pino";
import type { Committed } from "../store/commits.js";
import { type Database, createClient } from "../store/db.js";
import { type Queryable, endpointBacklog, ensureEndpoints, markEndpointsSeen, pruneOutbox } from "../store/webhooks.js";
import { KIND_NAMES, eventTypesOf } from "./kinds.js";
import { Sender } from "./sender.js";
import type { Endpoint, Webhooks } from "./webhooks-file.js";

const HOUSEKEEPING_MS = 60_000;

/** Where one endpoint stands, for the metrics and GetQueueStats. */
export interface WebhookBacklog {
  endpoint: string;
  /** Notifications of its kinds not sent yet. */
  n: number;
  oldest: Date | null;
  /** Failed attempts in a row at the next one. */
  attempts: number;
  lastError: string;
}

export type DeliveryOutcome = "delivered" | "http_error" | "timeout" | "network_error";

export interface NotifierOptions {
  database: Database;
  pollIntervalMs: number;
  log: Logger;
  onOutcome(endpoint: string, outcome: DeliveryOutcome): void;
}

/** Commits that may have written to the outbox. */
const NOTIFYING: ReadonlySet<Committed["kind"]> = new Set([
  "enqueued",
  "approval_granted",
  "approved",
  "rejected",
  "expired",
  "failed",
  "retry_scheduled",
  "paused",
  "resumed",
]);

/** No query of the senders takes this long (event_horizon() gives up after
 * 10 s); one that does is on a connection that died without a word. */
const STUCK_MS = 60_000;

/** The senders share one connection (it holds nothing: the leases are
 * rows); pg wants one query at a time on it. */
export class Serial implements Queryable {
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    readonly client: pg.Client,
    private readonly onStuck: (error: Error) => void,
  ) {}

  query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
    const run = this.tail.then(
      () =>
        new Promise<pg.QueryResult<R>>((resolve, reject) => {
          const timer = setTimeout(() => {
            const error = new Error(`a query on the webhooks connection got no answer in ${STUCK_MS / 1000} s`);
            reject(error);
            this.onStuck(error);
          }, STUCK_MS);
          this.client
            .query<R>(text, values)
            .then(resolve, reject)
            .finally(() => clearTimeout(timer));
        }),
    );
    this.tail = run.catch(() => {});
    return run;
  }
}

export class Notifier {
  private client: Serial | undefined;
  private connecting: Promise<Serial> | undefined;
  private readonly senders = new Map<string, Sender>();
  private housekeeping: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly pool: pg.Pool,
    private webhooks: Webhooks,
    readonly options: NotifierOptions,
  ) {}

  get current(): Webhooks {
    return this.webhooks;
  }

  /** Records the endpoints (a new one starts from now), then starts their
   * senders. */
  async start(): Promise<void> {
    await ensureEndpoints(
      this.pool,
      this.webhooks.endpoints.map((endpoint) => endpoint.name),
    );
    for (const endpoint of this.webhooks.endpoints) this.startSender(endpoint);
    this.housekeeping = setInterval(() => void this.tidy(), HOUSEKEEPING_MS);
    this.housekeeping.unref();
  }

  /** Puts a new file in force: senders of removed endpoints stop (their
   * leases go to whoever still has them), new ones start from now, the
   * others carry on from their cursor with the new settings. */
  async reconfigure(next: Webhooks): Promise<void> {
    await ensureEndpoints(
      this.pool,
      next.endpoints.map((endpoint) => endpoint.name),
    );
    this.webhooks = next;
    const names = new Set(next.endpoints.map((endpoint) => endpoint.name));
    await Promise.all(
      [...this.senders]
        .filter(([name]) => !names.has(name))
        .map(async ([name, sender]) => {
          this.senders.delete(name);
          await sender.stop();
        }),
    );
    for (const endpoint of next.endpoints) {
      const sender = this.senders.get(endpoint.name);
      if (sender) sender.endpoint = endpoint;
      else if (!this.stopped) this.startSender(endpoint);
    }
    this.poke();
  }

  private startSender(endpoint: Endpoint): void {
    const sender = new Sender(this, endpoint, this.options.log.child({ endpoint: endpoint.name }));
    this.senders.set(endpoint.name, sender);
    sender.start();
  }

  /** Notifications may have been committed. */
  poke(): void {
    for (const sender of this.senders.values()) sender.poke();
  }

  /** After a commit on this replica. */
  committed(change: Committed): void {
    if (NOTIFYING.has(change.kind)) this.poke();
  }

  /** The senders' connection; opened on demand. */
  async connection(): Promise<Serial> {
    if (this.client) return this.client;
    this.connecting ??= (async () => {
      const client = createClient(this.options.database, "actionq-webhooks", { keepAlive: true });
      client.on("error", (error) => this.lost(client, error));
      client.on("end", () => this.lost(client, new Error("connection ended")));
      await client.connect();
      if (this.stopped) {
        await client.end().catch(() => {});
        throw new Error("the notifier stopped");
      }
      this.client = new Serial(client, (error) => this.lost(client, error));
      return this.client;
    })().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private lost(client: pg.Client, error: Error): void {
    if (this.client?.client !== client) return;
    this.client = undefined;
    if (!this.stopped) this.options.log.warn({ err: error.message }, "lost the webhooks connection; senders reconnect and carry on while their leases last");
    client.removeAllListeners("end");
    client.on("error", () => {});
    client.end().catch(() => {});
  }

  private async tidy(): Promise<void> {
    try {
      await markEndpointsSeen(
        this.pool,
        this.webhooks.endpoints.map((endpoint) => endpoint.name),
      );
      const pruned = await pruneOutbox(this.pool);
      if (pruned > 0) this.options.log.debug({ pruned }, "removed delivered notifications from the outbox");
    } catch (error) {
      this.options.log.warn({ err: (error as Error).message }, "webhook outbox housekeeping failed; will try again");
    }
  }

  /** For the metrics, per configured endpoint: notifications not yet
   * passed, the oldest one's time, and the failed attempts at the head. */
  async backlog(): Promise<WebhookBacklog[]> {
    return Promise.all(
      this.webhooks.endpoints.map(async (endpoint) => {
        const row = await endpointBacklog(this.pool, endpoint.name, eventTypesOf(endpoint.kinds ? [...endpoint.kinds] : KIND_NAMES));
        const attempts = row?.attempts ?? 0;
        return { endpoint: endpoint.name, n: row?.n ?? 0, oldest: row?.oldest ?? null, attempts, lastError: attempts > 0 ? (row?.last_error ?? "") : "" };
      }),
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.housekeeping);
    await Promise.all([...this.senders.values()].map((sender) => sender.stop()));
    this.senders.clear();
    const client = this.client?.client;
    this.client = undefined;
    if (client) {
      client.removeAllListeners("end");
      client.on("error", () => {});
      await client.end().catch(() => {});
    }
  }
}
