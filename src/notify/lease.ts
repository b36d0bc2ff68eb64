// One endpoint's lease (migration 012): the row says which sender may
// deliver to the endpoint, until when. Taken and renewed in single
// statements, so it works through a transaction pooler, where a
// session-level advisory lock would not stay with its session. The holder
// renews it in the background while it sends or waits, and counts it lost
// on its own clock before the database could give it to another replica.
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { performance } from "node:perf_hooks";
import { type EndpointState, type Queryable, releaseEndpointLease, renewEndpointLease, takeEndpointLease } from "../store/webhooks.js";

/** How long a lease lasts unrenewed: a replica that dies holding an
 * endpoint delays its notifications by at most this (plus a poll). */
export const LEASE_MS = 10_000;
/** Renewed this often while held. */
const RENEW_MS = LEASE_MS / 3;
/** Given up this long before the database would let it go, for timers
 * that fire late and a statement that started late. */
const MARGIN_MS = 2000;

export class EndpointLease {
  /** Unique to this sender of this process. */
  readonly holder = `${hostname()}:${process.pid}:${randomUUID()}`;
  /** On performance.now()'s clock; 0 when not held. */
  private validUntil = 0;
  private lost = new AbortController();
  private renewTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private renewing = false;

  constructor(
    private readonly name: string,
    private readonly connection: () => Promise<Queryable>,
    private readonly onLost: (why: string) => void,
  ) {}

  get held(): boolean {
    return performance.now() < this.validUntil;
  }

  /** Aborted when the lease is lost: what was sent under it must stop. */
  get signal(): AbortSignal {
    return this.lost.signal;
  }

  /** Takes the lease if nobody else holds it; the endpoint's state when
   * taken. */
  async take(db: Queryable): Promise<EndpointState | undefined> {
    const started = performance.now();
    const state = await takeEndpointLease(db, this.name, this.holder, LEASE_MS);
    if (!state) return undefined;
    if (this.lost.signal.aborted) this.lost = new AbortController();
    this.extend(started);
    clearInterval(this.renewTimer);
    this.renewTimer = setInterval(() => void this.renew(), RENEW_MS);
    this.renewTimer.unref();
    return state;
  }

  private extend(started: number): void {
    // The database counts from its now(), which is later than `started`.
    this.validUntil = started + LEASE_MS - MARGIN_MS;
    clearTimeout(this.expiryTimer);
    this.expiryTimer = setTimeout(() => this.lose("its lease ran out before it could be renewed"), this.validUntil - performance.now());
    this.expiryTimer.unref();
  }

  private async renew(): Promise<void> {
    if (this.renewing || !this.held) return;
    this.renewing = true;
    try {
      const started = performance.now();
      const db = await this.connection();
      if (await renewEndpointLease(db, this.name, this.holder, LEASE_MS)) {
        if (this.validUntil > 0) this.extend(started);
      } else {
        this.lose("another server took its lease");
      }
    } catch {
      // The database is away: the expiry timer gives the lease up in time.
    } finally {
      this.renewing = false;
    }
  }

  /** Counts the lease as lost (a guarded write found another holder). */
  lose(why: string): void {
    if (this.validUntil === 0) return;
    this.validUntil = 0;
    clearInterval(this.renewTimer);
    clearTimeout(this.expiryTimer);
    this.lost.abort();
    this.onLost(why);
  }

  /** Lets another replica take the endpoint at once (a clean stop). */
  async release(db: Queryable | undefined): Promise<void> {
    const held = this.validUntil > 0;
    this.validUntil = 0;
    clearInterval(this.renewTimer);
    clearTimeout(this.expiryTimer);
    if (held && db) await releaseEndpointLease(db, this.name, this.holder);
  }
}
