// The load of a fault scenario besides the workers: producers that enqueue
// with idempotency keys and retry through any replica until each key has
// its action, and a watcher that follows WatchEvents from the start of the
// log across every disconnect, resuming from its cursor.
import * as grpc from "@grpc/grpc-js";
import { createClient, unary } from "../worker.mjs";
import { sleep } from "../../support/wait.js";

type RawClient = ReturnType<typeof createClient>;

export interface ProducerOptions {
  addresses: string[];
  /** Idempotency keys are `${prefix}-${i}`. */
  prefix: string;
  count: number;
  actionType: string;
  concurrency?: number;
  /** Spread the enqueues over about this long. */
  spreadMs?: number;
  /** Every n-th action fails once (asks for a retry) before it completes. */
  flakyEvery?: number;
  /** The concurrency key and limit of action i, if it has one. */
  keyOf?: (i: number) => { key: string; limit: number };
}

const DEFINITE = new Set([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.ALREADY_EXISTS,
  grpc.status.PERMISSION_DENIED,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.NOT_FOUND,
]);

export class Producer {
  /** key -> action id, once the server answered. */
  readonly ids = new Map<string, string>();
  readonly stats = { calls: 0, retries: 0, created: 0, repeats: 0 };
  readonly done: Promise<void>;
  private readonly clients: RawClient[];

  constructor(readonly options: ProducerOptions) {
    this.clients = options.addresses.map((address) => createClient(address));
    this.done = this.run();
  }

  get keys(): string[] {
    return Array.from({ length: this.options.count }, (_, i) => `${this.options.prefix}-${i}`);
  }

  private async run(): Promise<void> {
    const { count, concurrency = 4, spreadMs = 5000 } = this.options;
    const started = Date.now();
    let next = 0;
    const lane = async () => {
      for (;;) {
        const i = next++;
        if (i >= count) return;
        // Pace: action i is due at its share of the spread.
        const due = started + (spreadMs * i) / count;
        if (due > Date.now()) await sleep(due - Date.now());
        await this.enqueue(i);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, lane));
  }

  private async enqueue(i: number): Promise<void> {
    const { prefix, actionType, flakyEvery } = this.options;
    const flaky = flakyEvery !== undefined && i % flakyEvery === 0;
    const request = {
      actionType,
      createdBy: `human:${prefix}`,
      idempotencyKey: `${prefix}-${i}`,
      targetRef: `item/${i}`,
      maxAttempts: flaky ? 3 : 1,
      payload: { fields: { i: { numberValue: i }, flaky: { boolValue: flaky } } },
      ...(this.options.keyOf ? { concurrencyKey: this.options.keyOf(i).key, concurrencyLimit: this.options.keyOf(i).limit } : {}),
    };
    const deadline = Date.now() + 60_000;
    for (let attempt = 0; ; attempt++) {
      const client = this.clients[(i + attempt) % this.clients.length]!;
      this.stats.calls++;
      try {
        const res = await unary<{ action: { id: string }; created: boolean }>(client, "EnqueueAction", request);
        this.ids.set(request.idempotencyKey, res.action.id);
        if (res.created) this.stats.created++;
        else this.stats.repeats++;
        return;
      } catch (error) {
        const code = (error as grpc.ServiceError).code;
        if (DEFINITE.has(code) || Date.now() > deadline) throw new Error(`enqueue ${request.idempotencyKey} failed for good: ${(error as Error).message}`);
        this.stats.retries++;
        await sleep(Math.min(1000, 50 * (attempt + 1)));
      }
    }
  }

  close(): void {
    for (const client of this.clients) client.close();
  }
}

export interface WatchedEvent {
  id: string;
  actionId: string;
  eventType: string;
}

/** Follows the whole event log from the start, through any replica, for as
 * long as it runs; reconnects from its cursor whenever the stream ends,
 * fails, or stays silent longer than `silenceMs`. */
export class Watcher {
  readonly events: WatchedEvent[] = [];
  cursor = "0";
  reconnects = 0;
  private stopping = false;
  private call: grpc.ClientReadableStream<Record<string, unknown>> | undefined;
  private readonly clients: RawClient[];
  private readonly loop: Promise<void>;

  constructor(
    addresses: string[],
    private readonly silenceMs = 3000,
  ) {
    this.clients = addresses.map((address) => createClient(address));
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    for (let round = 0; !this.stopping; round++) {
      const client = this.clients[round % this.clients.length]!;
      const got = await this.follow(client);
      if (this.stopping) return;
      this.reconnects++;
      await sleep(got ? 20 : 250);
    }
  }

  private follow(client: RawClient): Promise<boolean> {
    return new Promise((resolve) => {
      let got = false;
      const call = (client as unknown as Record<string, (request: unknown) => grpc.ClientReadableStream<Record<string, unknown>>>).WatchEvents!({
        afterId: this.cursor,
      });
      this.call = call;
      let last = Date.now();
      const watchdog = setInterval(() => {
        if (Date.now() - last > this.silenceMs) call.cancel();
      }, 250);
      call.on("data", (message: { kind: string; event?: WatchedEvent; cursor: string }) => {
        last = Date.now();
        got = true;
        if (message.kind === "event") {
          const { id, actionId, eventType } = message.event!;
          this.events.push({ id, actionId, eventType });
        }
        this.cursor = message.cursor;
      });
      call.on("error", () => {});
      const done = () => {
        clearInterval(watchdog);
        resolve(got);
      };
      call.on("status", done);
      call.on("close", done);
    });
  }

  /** Waits until the cursor reaches `lastId`, then stops. */
  async finish(lastId: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (BigInt(this.cursor) < BigInt(lastId) && Date.now() < deadline) await sleep(50);
    this.stopping = true;
    this.call?.cancel();
    await Promise.race([this.loop, sleep(3000)]);
    for (const client of this.clients) client.close();
  }
}
