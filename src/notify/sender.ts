// One endpoint's sender: takes the endpoint's lease (one sender across all
// replicas), reads the endpoint's state with it, and sends the outbox
// to it in event-id order, one request at a time, passing what it does not
// want and retrying a failure with capped exponential backoff for as long
// as it takes. The state it writes (cursor, attempts, next attempt) is what
// another replica resumes from if this one dies; every write of it
// requires the lease, so a sender that lost it writes nothing.
import type { Logger } from "pino";
import { type EndpointState, advanceEndpoint, endpointFailed, endpointState, ensureEndpoints, pendingNotifications } from "../store/webhooks.js";
import { send } from "./delivery.js";
import { kindOf } from "./kinds.js";
import { EndpointLease } from "./lease.js";
import type { Notifier, Serial } from "./notifier.js";
import { type Endpoint, wants } from "./webhooks-file.js";

const BATCH = 100;

/** A guarded write found that another sender holds the lease. */
class LeaseLost extends Error {}

/** The loop that sends one endpoint's notifications. */
export class Sender {
  private readonly abort = new AbortController();
  private running: Promise<void> | undefined;
  private readonly lease: EndpointLease;
  /** Whether the fields below were read from the database under the lease. */
  private loaded = false;
  private cursor = "0";
  private attempts = 0;
  private nextAttemptAt = 0;
  private failingSince: Date | null = null;
  private poked = false;
  private wake: (() => void) | undefined;

  constructor(
    private readonly notifier: Notifier,
    public endpoint: Endpoint,
    private readonly log: Logger,
  ) {
    this.lease = new EndpointLease(
      endpoint.name,
      () => notifier.connection(),
      (why) => this.log.warn({ why }, "this server no longer sends webhooks for this endpoint"),
    );
  }

  start(): void {
    this.running = this.run();
  }

  poke(): void {
    this.poked = true;
    this.wake?.();
  }

  private get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  /** Waits `ms`, or less when stopped or (if `pokeable`) poked. */
  private sleep(ms: number, pokeable: boolean): Promise<void> {
    if (this.stopped || (pokeable && this.poked)) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.abort.signal.removeEventListener("abort", done);
        if (this.wake === done) this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.abort.signal.addEventListener("abort", done, { once: true });
      if (pokeable) this.wake = done;
    });
  }

  private async run(): Promise<void> {
    const { pollIntervalMs } = this.notifier.options;
    let db: Serial | undefined;
    while (!this.stopped) {
      try {
        db = await this.notifier.connection();
        if (!this.lease.held) {
          this.loaded = false;
          const state = await this.takeLease(db);
          if (!state) {
            // Another replica sends for this endpoint; look again later, in
            // case it goes away.
            await this.sleep(pollIntervalMs, false);
            continue;
          }
          this.load(state);
          this.loaded = true;
          this.log.info({ cursor: this.cursor }, "sending webhooks for this endpoint from this server");
        } else if (!this.loaded) {
          const state = await endpointState(db, this.endpoint.name);
          if (!state) throw new Error("the endpoint's row is gone");
          this.load(state);
          this.loaded = true;
        }
        const wait = this.nextAttemptAt - Date.now();
        if (wait > 0) {
          await this.sleep(wait, false);
          continue;
        }
        this.poked = false;
        const batch = await pendingNotifications(db, this.cursor, BATCH);
        const full = batch.length === BATCH;
        if (!(await this.sendBatch(db, batch))) continue;
        if (!full) await this.sleep(pollIntervalMs, true);
      } catch (error) {
        if (this.stopped) break;
        if (error instanceof LeaseLost) {
          this.lease.lose("another server took its lease");
          continue;
        }
        this.log.warn({ err: (error as Error).message }, "webhook sender failed; trying again in a second");
        // What is in memory may be ahead of what was written: read it again.
        this.loaded = false;
        await this.sleep(1000, false);
      }
    }
    await this.lease.release(db).catch(() => {});
  }

  /** The lease and the endpoint's state, or undefined when another replica
   * holds it. A new endpoint's row is written first. */
  private async takeLease(db: Serial): Promise<EndpointState | undefined> {
    const state = await this.lease.take(db);
    if (state || (await endpointState(db, this.endpoint.name))) return state;
    await ensureEndpoints(db, [this.endpoint.name]);
    return this.lease.take(db);
  }

  private load(state: EndpointState): void {
    this.cursor = state.cursor;
    this.attempts = state.attempts;
    this.nextAttemptAt = state.next_attempt_at.getTime();
    this.failingSince = state.failing_since;
  }

  /** Sends what the endpoint wants of the batch, in order, and passes what
   * it does not want. False when a delivery failed (the next attempt is
   * scheduled) or the sender stopped. */
  private async sendBatch(db: Serial, batch: Awaited<ReturnType<typeof pendingNotifications>>): Promise<boolean> {
    let passed = this.cursor;
    for (const { event, action } of batch) {
      if (this.stopped) return false;
      const endpoint = this.endpoint;
      const kind = kindOf(event);
      if (!kind || !wants(endpoint, kind, action)) {
        passed = event.id;
        continue;
      }
      if (passed !== this.cursor) await this.advance(db, passed, false);
      // Nothing goes out without the lease, and a request still in flight
      // when it is lost is cut, so that the next holder's sends never
      // overtake one of this sender's.
      if (!this.lease.held) throw new LeaseLost();
      const outcome = await send(endpoint, { kind, event, action }, AbortSignal.any([this.abort.signal, this.lease.signal]));
      if (this.stopped && !outcome.ok) return false;
      if (!outcome.ok && this.lease.signal.aborted) throw new LeaseLost();
      if (outcome.ok) {
        this.notifier.options.onOutcome(endpoint.name, "delivered");
        if (this.attempts > 0) this.log.info({ event: event.id, attempts: this.attempts + 1 }, "webhook endpoint recovered");
        await this.advance(db, event.id, true);
        passed = event.id;
        continue;
      }
      this.notifier.options.onOutcome(endpoint.name, outcome.timedOut ? "timeout" : outcome.status === null ? "network_error" : "http_error");
      const { initialMs, maxMs } = this.notifier.current.retry;
      // Exponential, capped, with jitter down to half, so that replicas
      // and endpoints do not retry in step.
      const delay = Math.min(maxMs, initialMs * 2 ** Math.min(this.attempts, 30)) * (0.5 + Math.random() / 2);
      const state = await endpointFailed(db, endpoint.name, this.lease.holder, delay, outcome.error);
      if (!state) throw new LeaseLost();
      this.attempts = state.attempts;
      this.failingSince = state.failing_since;
      this.nextAttemptAt = Date.now() + delay;
      // Never given up: the notification is retried at the capped backoff
      // until the endpoint takes it, and every failure says so.
      this.log.warn(
        {
          event: event.id,
          kind,
          attempts: this.attempts,
          err: outcome.error,
          failing_since: this.failingSince.toISOString(),
          retry_in_ms: Math.round(delay),
        },
        "webhook delivery failed; will retry",
      );
      return false;
    }
    if (passed !== this.cursor) await this.advance(db, passed, false);
    return true;
  }

  private async advance(db: Serial, cursor: string, delivered: boolean): Promise<void> {
    if (!(await advanceEndpoint(db, this.endpoint.name, this.lease.holder, cursor, delivered))) throw new LeaseLost();
    this.cursor = cursor;
    this.attempts = 0;
    this.failingSince = null;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
  }
}
