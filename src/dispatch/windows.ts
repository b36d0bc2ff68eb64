// Keeps the change windows' closed intervals in PostgreSQL and wakes the
// claim streams when one ends. Every server runs one: it writes the set
// when it loads or reloads the policy, extends it periodically, and sleeps
// until the next end of a closed interval (read from the table, by the
// database's clock, so replicas and clock skew agree), when held actions
// become claimable: no sweep and no NOTIFY is needed for that.
import type { Logger } from "pino";
import type { PolicyHolder } from "../policy/policy.js";
import { closedIntervals, globToLike } from "../policy/windows.js";
import type { WindowStore } from "../store/windows.js";

const DAY_MS = 86_400_000;
/** How far ahead the intervals are written. */
export const WINDOW_HORIZON_MS = 14 * DAY_MS;
/** How often the set is extended. */
const REFRESH_MS = 3_600_000;

export class WindowKeeper {
  private wakeTimer: NodeJS.Timeout | undefined;
  private timers: NodeJS.Timeout[] = [];
  private stopped = false;
  private rearming: Promise<void> | undefined;
  /** A reload's windows could not be written yet: retried on each poll. */
  private forcePending = false;

  constructor(
    private readonly store: WindowStore,
    private readonly policy: PolicyHolder,
    /** Wakes every claim stream of this process. */
    private readonly wake: () => void,
    private readonly pollIntervalMs: number,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.write(true);
    await this.rearm();
    // The backstop: intervals written by another replica, or a timer
    // armed before they changed.
    this.timers = [
      setInterval(() => void this.write(false).catch(() => {}), REFRESH_MS),
      setInterval(
        () => {
          if (this.forcePending) void this.policyChanged();
          else void this.rearm();
        },
        Math.max(this.pollIntervalMs, 1000),
      ),
    ];
    for (const timer of this.timers) timer.unref();
  }

  /** The policy in force changed (load or reload): its windows replace the
   * set in force, on every server. */
  async policyChanged(): Promise<void> {
    try {
      await this.write(true);
      this.forcePending = false;
    } catch {
      // The policy is in force here already; its windows follow.
      this.forcePending = true;
      return;
    }
    this.wake();
    await this.rearm();
  }

  /** Another server may have changed the set. */
  poke(): void {
    void this.rearm();
  }

  private async write(force: boolean): Promise<void> {
    const { version, policy } = this.policy.current;
    const now = Date.now();
    const horizonEnd = new Date(now + WINDOW_HORIZON_MS);
    const intervals = closedIntervals(
      policy.windows.filter((window) => window.effect === "hold_claims"),
      new Date(now),
      horizonEnd,
    ).map(({ window, start, end }) => ({
      windowName: window.name,
      start,
      end,
      actionTypes: window.action_types?.map(globToLike) ?? null,
      projects: window.projects?.map(globToLike) ?? null,
      riskLevels: window.risk_levels ?? null,
    }));
    try {
      const { written, inForce } = await this.store.replace(version, intervals, horizonEnd, { force, minHorizon: new Date(now + WINDOW_HORIZON_MS / 2) });
      if (written) this.log.debug({ policy: version, intervals: intervals.length }, "change window intervals written");
      else this.log.warn({ policy: version, inForce }, "the change windows in force are another policy version's; the replicas' policies differ");
    } catch (error) {
      this.log.warn({ err: (error as Error).message }, "could not write the change window intervals; will retry");
      if (force) throw error;
    }
  }

  /** Sleeps until the next end of a closed interval. */
  private rearm(): Promise<void> {
    this.rearming ??= (async () => {
      try {
        const inMs = await this.store.nextOpeningInMs();
        if (this.stopped) return;
        clearTimeout(this.wakeTimer);
        this.wakeTimer = undefined;
        if (inMs === null) return;
        // A timer cannot wait longer than 2^31-1 ms; the backstop re-arms.
        this.wakeTimer = setTimeout(() => this.opened(), Math.min(Math.max(0, inMs) + 5, 2 ** 31 - 1));
        this.wakeTimer.unref();
      } catch (error) {
        this.log.warn({ err: (error as Error).message }, "could not read the next change window opening");
      } finally {
        this.rearming = undefined;
      }
    })();
    return this.rearming;
  }

  private opened(): void {
    this.wakeTimer = undefined;
    if (this.stopped) return;
    this.log.debug("a change window opened; waking claim streams");
    this.wake();
    void this.rearm();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.wakeTimer);
    for (const timer of this.timers) clearInterval(timer);
  }
}
