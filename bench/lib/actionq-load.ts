// Load on an actionq server: streaming workers that complete every claim
// (batched: the claims that arrived together finish in one CompleteActions
// call, which also acknowledges them), producers that enqueue one action per
// awaited call, and a bulk enqueue in EnqueueActions batches.
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { ConnectError } from "@connectrpc/connect";
import type { Claim } from "../../gen/actionq/v1/action_pb.js";
import { type ActionqClient, connect } from "./actionq-server.js";

export const BENCH_TYPE = "bench_noop";
/** A type nobody enqueues: streams on it stay idle. */
export const IDLE_TYPE = "bench_idle";
/** A producer name that is not rate limited (agent:* and script:* are). */
export const PRODUCER = "human:bench";

export interface WorkerOptions {
  name: string;
  maxInFlight: number;
  actionTypes?: string[];
  /** How claims are finished: "batch" (default) completes the claims in
   * hand together with CompleteActions, which acknowledges them too;
   * "each" sends AckClaim then CompleteAction per claim, as a worker with a
   * long handler would. */
  finish?: "batch" | "each";
  /** Ask StreamClaims for claims in batches (max_batch = max_in_flight);
   * the default with finish "batch". BENCH_ACTIONQ_CLAIM_BATCHES=off turns
   * it off, to measure one claim per message. */
  batchClaims?: boolean;
  /** Called when a claim arrives, before anything is sent back. */
  onClaim?: (claim: Claim, receivedAt: number) => void;
}

/** Counts shared by a set of workers or producers. */
export class Counter {
  value = 0;
  errors = 0;
  lastError: string | undefined;
  private waiters: { target: number; resolve: () => void }[] = [];

  add(n = 1): void {
    this.value += n;
    if (this.waiters.length === 0) return;
    this.waiters = this.waiters.filter((w) => {
      if (this.value < w.target) return true;
      w.resolve();
      return false;
    });
  }

  fail(error: unknown): void {
    this.errors++;
    this.lastError = ConnectError.from(error).message;
  }

  /** Resolves once the count reaches `target`; rejects after `timeoutMs`. */
  reach(target: number, timeoutMs: number): Promise<void> {
    if (this.value >= target) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`count stuck at ${this.value} of ${target} after ${timeoutMs} ms (errors: ${this.errors}, last: ${this.lastError ?? "none"})`)),
        timeoutMs,
      );
      timer.unref();
      this.waiters.push({
        target,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }
}

/** Completions per second from the first one on, for `durationMs` or
 * until `total` are done; then `close` stops the workers. Connecting and
 * opening streams is not claim throughput, and with a backlog of 1,000 it
 * would be much of the window. */
export async function rateFromFirst(completed: Counter, durationMs: number, total: number, close: () => Promise<unknown>): Promise<number> {
  await completed.reach(1, 60_000);
  const started = performance.now();
  const first = completed.value;
  await Promise.race([sleep(durationMs), completed.reach(total, 600_000)]);
  const rate = (completed.value - first) / ((performance.now() - started) / 1000);
  await close();
  return rate;
}

/** A worker holding one StreamClaims stream on its own connection,
 * completing each claim as a worker with a no-op handler would.
 * Reconnects if the stream ends while it should run. */
export class StreamWorker {
  private readonly stop = new AbortController();
  private readonly inFlight = new Set<Promise<void>>();
  private loop: Promise<void> | undefined;
  private pending: Claim[] = [];
  private flushing = false;
  private closing = false;
  readonly client: ActionqClient;

  constructor(
    address: string,
    private readonly options: WorkerOptions,
    readonly completed: Counter,
  ) {
    this.client = connect(address);
  }

  start(): this {
    this.loop = this.run();
    return this;
  }

  private async run(): Promise<void> {
    while (!this.stop.signal.aborted) {
      try {
        const { maxInFlight, finish = "batch", batchClaims = finish === "batch" && process.env.BENCH_ACTIONQ_CLAIM_BATCHES !== "off" } = this.options;
        const stream = this.client.streamClaims(
          {
            worker: this.options.name,
            maxInFlight,
            maxBatch: batchClaims ? maxInFlight : 0,
            actionTypes: this.options.actionTypes ?? [],
            leaseDuration: { seconds: 60n },
          },
          { signal: this.stop.signal },
        );
        for await (const message of stream) {
          const claims = message.kind.case === "claim" ? [message.kind.value] : message.kind.case === "claims" ? message.kind.value.claims : [];
          const receivedAt = performance.now();
          for (const claim of claims) {
            this.options.onClaim?.(claim, receivedAt);
            if (this.closing) continue;
            if (finish === "each") this.track(this.handle(claim));
            else this.queue(claim);
          }
        }
      } catch (error) {
        if (this.stop.signal.aborted) return;
        this.completed.fail(error);
      }
      await sleep(100);
    }
  }

  private track(job: Promise<void>): void {
    this.inFlight.add(job);
    void job.finally(() => this.inFlight.delete(job));
  }

  /** Claims that arrive while a batch is on its way wait for the next one;
   * the first claim after a quiet spell goes out on the next tick. */
  private queue(claim: Claim): void {
    // Closing: a claim not yet started goes back when the stream closes.
    if (this.closing) return;
    this.pending.push(claim);
    if (!this.flushing) {
      this.flushing = true;
      setImmediate(() => this.track(this.flush()));
    }
  }

  private async flush(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, 500);
      try {
        const { results } = await this.client.completeActions({
          requests: batch.map((claim) => ({ id: claim.action!.id, claimToken: claim.claimToken, resultRef: `bench://${claim.action!.id}` })),
        });
        for (const result of results) {
          if (result.result.case === "action") this.completed.add();
          else this.completed.fail(new Error(result.result.value?.message ?? "no result"));
        }
      } catch (error) {
        for (let i = 0; i < batch.length; i++) this.completed.fail(error);
      }
    }
    this.flushing = false;
  }

  private async handle(claim: Claim): Promise<void> {
    const id = claim.action!.id;
    try {
      await this.client.ackClaim({ id, claimToken: claim.claimToken });
      await this.client.completeAction({ id, claimToken: claim.claimToken, resultRef: `bench://${id}` });
      this.completed.add();
    } catch (error) {
      this.completed.fail(error);
    }
  }

  /** Finishes the claims in hand, then closes the stream. In that order:
   * closing first would release the claims whose completion is on its
   * way (they are not acknowledged yet), and those completions would then
   * be refused, as a real worker's would. */
  async close(): Promise<void> {
    this.closing = true;
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    this.stop.abort();
    await this.loop;
  }
}

export function enqueueRequest(n: number, payload: Record<string, number> = {}) {
  return { actionType: BENCH_TYPE, createdBy: PRODUCER, targetRef: `item-${n}`, payload: { n, ...payload } };
}

/** Producers, each on its own connection, enqueueing one action per awaited
 * call until stopped. */
export class Producers {
  private running = true;
  private readonly loops: Promise<void>[];
  private next = 0;

  constructor(
    address: string,
    count: number,
    readonly enqueued: Counter,
  ) {
    this.loops = Array.from({ length: count }, () => this.produce(connect(address)));
  }

  private async produce(client: ActionqClient): Promise<void> {
    while (this.running) {
      try {
        await client.enqueueAction(enqueueRequest(this.next++));
        this.enqueued.add();
      } catch (error) {
        this.enqueued.fail(error);
        await sleep(50);
      }
    }
  }

  async close(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

/** Enqueues `total` actions in EnqueueActions batches of `batch`, with
 * `concurrency` calls in flight over as many connections; returns the
 * elapsed ms. */
export async function bulkEnqueue(address: string, total: number, concurrency = 4, batch = 500): Promise<number> {
  const clients = Array.from({ length: concurrency }, () => connect(address));
  const started = performance.now();
  let next = 0;
  await Promise.all(
    clients.map(async (client) => {
      while (next < total) {
        const first = next;
        next = Math.min(total, next + batch);
        const requests = Array.from({ length: next - first }, (_, i) => enqueueRequest(first + i));
        for (let attempt = 1; ; attempt++) {
          try {
            const { results } = await client.enqueueActions({ requests });
            const refused = results.find((r) => r.result.case !== "ok");
            if (refused) throw new Error(`bulk enqueue refused an item: ${JSON.stringify(refused.result.value)}`);
            break;
          } catch (error) {
            if (attempt >= 5) throw error;
            await sleep(100 * attempt);
          }
        }
      }
    }),
  );
  return performance.now() - started;
}
