// Delivers claimed actions to the claim streams of this process. Streams
// with the same filters form a group; a group claims for all its free slots
// in one statement when woken (by a NOTIFY, a freed slot, or the backstop
// poll), and goes quiet when the queue has nothing for it. No stream holds a
// database connection.
import type { Logger } from "pino";
import type { ActionStore, HandoffSlot } from "../store/actions.js";
import type { Committed } from "../store/commits.js";
import type { ActionRow } from "../store/rows.js";
import { ClaimSession, Group, type Held, type SessionOptions } from "./claim-session.js";
import { RepeatedWarning } from "./repeated-warning.js";

export type { ClaimSession, SentMessage, SessionOptions, StreamMessage } from "./claim-session.js";

/** Largest number of actions one claim statement asks for. */
const MAX_BATCH = 500;

export class ClaimDispatcher {
  private readonly groups = new Map<string, Group>();
  private readonly sessions = new Map<string, ClaimSession>();
  /** action id -> the local session holding it. */
  private readonly holders = new Map<string, ClaimSession>();
  private readonly pumps = new Set<Promise<void>>();
  private timers: NodeJS.Timeout[] = [];
  private shuttingDown = false;
  private readonly claimFailed: RepeatedWarning;
  private readonly resyncFailed: RepeatedWarning;

  constructor(
    private readonly store: ActionStore,
    private readonly settings: { ackTimeoutMs: number; heartbeatMs: number; pollIntervalMs: number; maxStreamAgeMs: number; handoff: boolean },
    private readonly log: Logger,
  ) {
    this.claimFailed = new RepeatedWarning(log, "claiming for streams failed; will retry on the next wakeup");
    this.resyncFailed = new RepeatedWarning(log, "could not resync claim streams");
  }

  /** Heartbeats, the backstop poll for a NOTIFY that never came, and the
   * resync for a claim whose end was never heard of. */
  start(): void {
    const { heartbeatMs, pollIntervalMs } = this.settings;
    this.timers = [
      setInterval(() => this.heartbeat(), Math.max(10, heartbeatMs / 2)),
      setInterval(() => this.wakeAll(), pollIntervalMs),
      setInterval(() => void this.resync(), Math.max(pollIntervalMs, 30_000)),
    ];
    for (const timer of this.timers) timer.unref();
  }

  get openStreams(): number {
    return this.sessions.size;
  }

  /** The workers of the streams with room for more whose group found
   * nothing to claim when it last looked, one entry a stream: worker
   * capacity standing idle, and the streams an enqueue may hand its
   * action to (offerHandoff). */
  get waitingWorkers(): string[] {
    const waiting: string[] = [];
    for (const session of this.sessions.values()) if (session.group.exhausted && session.freeSlots > 0) waiting.push(session.options.worker);
    return waiting;
  }

  open(options: SessionOptions): ClaimSession {
    const key = JSON.stringify([[...options.filter.actionTypes].sort(), [...options.filter.projects].sort()]);
    let group = this.groups.get(key);
    if (!group) {
      group = new Group(key, options.filter);
      this.groups.set(key, group);
    }
    const session = new ClaimSession(options, group);
    group.sessions.add(session);
    this.sessions.set(session.id, session);
    if (this.shuttingDown) {
      session.push({ kind: "drain", reason: "server is shutting down", cause: "shutdown" });
      session.end();
    } else if (options.holding.length > 0) {
      session.adopting = true;
      void this.adopt(session);
    } else {
      // A new stream is a reason to look, even if the group was idle.
      group.exhausted = false;
      this.schedule(group);
    }
    return session;
  }

  /** Counts the claims a reconnecting worker still holds against its new
   * stream: they move to this stream (so their end frees its slot), and
   * only then does the stream get new work. */
  private async adopt(session: ClaimSession): Promise<void> {
    try {
      const rows = await this.store.adoptClaims(session.id, session.options.worker, session.options.holding);
      if (!session.closed) {
        for (const row of rows) {
          session.held.set(row.id, { attempt: row.attempt, acked: true, ackTimer: undefined });
          this.holders.set(row.id, session);
        }
      }
    } catch (error) {
      // Not counting them only risks sending more work than asked for.
      this.log.warn({ err: (error as Error).message, session: session.id }, "could not adopt the claims a worker holds");
    }
    session.adopting = false;
    session.group.exhausted = false;
    this.schedule(session.group);
  }

  /** The stream is gone: forget it and release what it never acknowledged. */
  async close(session: ClaimSession, reason: string): Promise<void> {
    if (!this.sessions.has(session.id)) return;
    session.end();
    this.sessions.delete(session.id);
    session.group.sessions.delete(session);
    if (session.group.sessions.size === 0 && !session.group.running) this.groups.delete(session.group.key);
    const unacked: string[] = [];
    for (const [id, held] of session.held) {
      clearTimeout(held.ackTimer);
      if (this.holders.get(id) === session) this.holders.delete(id);
      if (!held.acked) unacked.push(id);
    }
    session.held.clear();
    if (unacked.length > 0) {
      try {
        const released = await this.store.releaseUnacked(session.id, null, "server:dispatcher", reason);
        if (released.length > 0)
          this.log.debug({ session: session.id, worker: session.options.worker, released: released.length, reason }, "released unacknowledged claims");
      } catch (error) {
        // The sweeper releases them once their delivery deadline passes.
        this.log.warn({ err: (error as Error).message, session: session.id }, "could not release unacknowledged claims; the sweeper will");
      }
    }
  }

  /** After a commit on this server: a claim that ended frees its stream's
   * slot, an acknowledgement or sign of life stops the delivery timer, a
   * resume wakes every stream, a break-glass wakes the streams of its type. Commits on other servers arrive as NOTIFY
   * (onClaimEnded, onClaimable, wakeAll). */
  committed(change: Committed): void {
    switch (change.kind) {
      case "claimed":
        // A claim for a stream of this process, by a claim statement or a
        // handoff at enqueue: push it. Others (ClaimAction, streams closed
        // since) are not ours to deliver; their claimers release them.
        this.onClaimed(change.action);
        return;
      case "completed":
      case "failed":
      case "retry_scheduled":
      case "rejected":
      case "cancelled":
      case "released":
      case "timed_out":
        this.onClaimEnded(change.action.id, change.action.attempt);
        return;
      case "acked":
      case "extended":
        this.onAcked(change.action.id, change.action.attempt);
        return;
      case "progressed":
        this.onAcked(change.actionId, change.attempt);
        return;
      case "resumed":
        this.wakeAll();
        return;
      case "break_glass":
        // A held action may be claimable now, inside its closed window.
        if (change.action.status === "approved" && !change.action.deferred) this.onClaimable(change.action.action_type);
        return;
    }
  }

  private onClaimed(action: ActionRow): void {
    if (action.claim_session === null) return;
    const session = this.sessions.get(action.claim_session);
    if (!session || session.closed) return;
    const held = session.held.get(action.id);
    if (held && held.attempt === action.attempt) return;
    this.deliver(session, action);
  }

  /** A slot on a stream of this process that waits for work and accepts
   * this action, for the enqueue to hand the action to (see HandoffSlot):
   * the stream's group found the queue empty when it last looked. The
   * slot is held until `settle`. */
  offerHandoff(actionType: string, project: string): HandoffSlot | undefined {
    if (this.shuttingDown || !this.settings.handoff) return undefined;
    for (const group of this.groups.values()) {
      if (!group.exhausted || !group.accepts(actionType)) continue;
      if (group.filter.projects.length > 0 && !group.filter.projects.includes(project)) continue;
      const sessions = [...group.sessions];
      const start = group.rotation++ % Math.max(1, sessions.length);
      const session = [...sessions.slice(start), ...sessions.slice(0, start)].find((candidate) => candidate.freeSlots > 0);
      if (!session) continue;
      session.reserved++;
      let settled = false;
      return {
        session: session.id,
        worker: session.options.worker,
        leaseMs: session.options.leaseMs,
        actionTypes: group.filter.actionTypes,
        projects: group.filter.projects,
        settle: (handed) => {
          if (settled) return;
          settled = true;
          session.reserved--;
          // The stream closed between the offer and the commit: what it was
          // handed goes back to the queue at once.
          if (handed && (session.closed || !this.sessions.has(session.id))) void this.releaseOrphans([handed]);
          else if (!handed) {
            // Not handed: work may be ready before it (a notification still
            // on its way), so look.
            group.exhausted = false;
            this.schedule(group);
          }
        },
      };
    }
    return undefined;
  }

  /** An action of this type became claimable somewhere. */
  onClaimable(actionType: string): void {
    for (const group of this.groups.values()) {
      if (!group.accepts(actionType)) continue;
      group.dirty = true;
      group.exhausted = false;
      this.schedule(group);
    }
  }

  /** A claim of this action ended (finished, released, timed out or
   * cancelled), wherever that happened. Only the claim with this attempt:
   * news of an earlier claim must not touch a later one. */
  onClaimEnded(actionId: string, attempt: number): void {
    const session = this.holders.get(actionId);
    const held = session?.held.get(actionId);
    if (!session || !held || held.attempt !== attempt) return;
    clearTimeout(held.ackTimer);
    session.held.delete(actionId);
    this.holders.delete(actionId);
    this.schedule(session.group);
  }

  /** The worker acknowledged this claim (through this process). */
  onAcked(actionId: string, attempt: number): void {
    const held = this.holders.get(actionId)?.held.get(actionId);
    if (!held || held.attempt !== attempt) return;
    held.acked = true;
    clearTimeout(held.ackTimer);
    held.ackTimer = undefined;
  }

  /** Notifications may have been missed: look again everywhere. */
  wakeAll(): void {
    for (const group of this.groups.values()) {
      group.exhausted = false;
      this.schedule(group);
    }
  }

  private schedule(group: Group): void {
    if (this.shuttingDown) return;
    if (group.running) {
      group.dirty = true;
      return;
    }
    if (group.exhausted) return;
    if (![...group.sessions].some((session) => session.freeSlots > 0)) return;
    group.running = true;
    // Start on the next microtask: a commit that ended several claims (a
    // CompleteActions batch) reports them one by one, synchronously, and
    // the statement should ask for all the slots they freed, not one.
    const pump = Promise.resolve()
      .then(() => this.pump(group))
      .finally(() => {
        group.running = false;
        this.pumps.delete(pump);
        if (group.sessions.size === 0) this.groups.delete(group.key);
        else if (group.dirty && !group.exhausted) this.schedule(group);
      });
    this.pumps.add(pump);
  }

  private async pump(group: Group): Promise<void> {
    while (!this.shuttingDown) {
      group.dirty = false;
      const sessions = [...group.sessions];
      if (sessions.length === 0) return;
      // Start with a different stream each round so no stream starves when
      // there is less work than free slots.
      const start = group.rotation++ % sessions.length;
      const order = [...sessions.slice(start), ...sessions.slice(0, start)];
      const slots: ClaimSession[] = [];
      for (let round = 0; slots.length < MAX_BATCH; round++) {
        let added = false;
        for (const session of order) {
          if (session.freeSlots > round && slots.length < MAX_BATCH) {
            slots.push(session);
            added = true;
          }
        }
        if (!added) break;
      }
      if (slots.length === 0) return;

      // The slots are promised to this statement until it ends, so that a
      // handoff meanwhile cannot take one of them too.
      for (const session of slots) session.reserved++;
      let claimed: ActionRow[];
      try {
        // Each claim reaches its stream on the commit (committed()).
        claimed = await this.store.claim(
          group.filter,
          slots.map((session) => ({ session: session.id, worker: session.options.worker, leaseMs: session.options.leaseMs })),
        );
      } catch (error) {
        this.claimFailed.warn({ err: (error as Error).message });
        return;
      } finally {
        for (const session of slots) session.reserved--;
      }
      const orphans = claimed.filter((action) => {
        const session = this.sessions.get(action.claim_session!);
        return !session || session.closed;
      });
      if (orphans.length > 0) await this.releaseOrphans(orphans);
      if (claimed.length < slots.length) {
        // Less work than room. Look again only if something was notified
        // while the statement ran.
        if (!group.dirty) {
          group.exhausted = true;
          return;
        }
      }
    }
  }

  private deliver(session: ClaimSession, action: ActionRow): void {
    // An earlier claim of this action whose end we have not heard of yet.
    const earlier = this.holders.get(action.id)?.held.get(action.id);
    if (earlier) this.onClaimEnded(action.id, earlier.attempt);
    const held: Held = { attempt: action.attempt, acked: false, ackTimer: undefined };
    held.ackTimer = setTimeout(() => void this.ackExpired(session, action.id, held), this.settings.ackTimeoutMs);
    held.ackTimer.unref();
    session.held.set(action.id, held);
    this.holders.set(action.id, session);
    session.push({ kind: "claim", action });
  }

  private async ackExpired(session: ClaimSession, actionId: string, held: Held): Promise<void> {
    if (session.held.get(actionId) !== held || held.acked) return;
    held.ackTimer = undefined;
    try {
      const released = await this.store.releaseUnacked(session.id, [{ id: actionId, attempt: held.attempt }], "server:dispatcher", "ack_timeout");
      if (released.length > 0) {
        // The release's commit ends the claim here (committed()).
        this.log.info({ action: actionId, worker: session.options.worker }, "released a claim that was not acknowledged in time");
      } else {
        // Acknowledged through another server, or already finished; the
        // NOTIFY for its end frees the slot.
        held.acked = true;
      }
    } catch (error) {
      this.log.warn({ err: (error as Error).message, action: actionId }, "could not release an unacknowledged claim; the sweeper will");
    }
  }

  private async releaseOrphans(actions: ActionRow[]): Promise<void> {
    const bySession = new Map<string, { id: string; attempt: number }[]>();
    for (const action of actions) {
      bySession.set(action.claim_session!, [...(bySession.get(action.claim_session!) ?? []), { id: action.id, attempt: action.attempt }]);
    }
    for (const [session, claims] of bySession) {
      await this.store.releaseUnacked(session, claims, "server:dispatcher", "stream_closed").catch((error: Error) => {
        this.log.warn({ err: error.message, session }, "could not release claims of a closed stream; the sweeper will");
      });
    }
  }

  /** Without notifications (no LISTEN connection): look for work for every
   * stream, and for claims that ended on another replica, which only a
   * notification would have told us of. */
  poll(): void {
    this.wakeAll();
    if (this.holders.size > 0) void this.resync();
  }

  private resyncing: Promise<void> | undefined;

  /** Drops local claims that are no longer CLAIMED in the database (ended
   * while a notification was lost, or ended elsewhere with no LISTEN). One
   * at a time: a poll that comes while one runs has nothing to add. */
  resync(): Promise<void> {
    this.resyncing ??= this.compareHeld().finally(() => (this.resyncing = undefined));
    return this.resyncing;
  }

  private async compareHeld(): Promise<void> {
    const before = new Map<string, { session: ClaimSession; held: Held }>();
    for (const session of this.sessions.values()) for (const [id, held] of session.held) before.set(id, { session, held });
    if (before.size === 0) return;
    try {
      const still = await this.store.stillHeld([...before].map(([id, { session, held }]) => ({ id, session: session.id, attempt: held.attempt })));
      for (const [id, { session, held }] of before) {
        // Skip claims delivered again since the query: it saw an older state.
        if (!still.has(id) && session.held.get(id) === held) this.onClaimEnded(id, held.attempt);
      }
    } catch (error) {
      this.resyncFailed.warn({ err: (error as Error).message });
    }
  }

  /** Heartbeats for quiet streams, and a graceful end for old ones: a
   * worker that reconnects may land on another replica, so load spreads
   * even when workers hold streams for days. */
  private heartbeat(): void {
    const now = Date.now();
    const quietSince = now - this.settings.heartbeatMs;
    const bornBefore = now - this.settings.maxStreamAgeMs;
    for (const session of this.sessions.values()) {
      if (session.closed) continue;
      if (session.openedAt <= bornBefore) {
        session.push({ kind: "drain", reason: "the stream reached its maximum age; reconnect", cause: "max_age" });
        session.end();
      } else if (session.lastSent <= quietSince) {
        session.push({ kind: "heartbeat" });
      }
    }
  }

  /** Stops handing out work: every stream gets a Drain and ends; what was
   * not acknowledged goes back to the queue. */
  async shutdown(): Promise<void> {
    this.shuttingDown = true;
    for (const timer of this.timers) clearInterval(timer);
    await Promise.allSettled([...this.pumps]);
    const sessions = [...this.sessions.values()];
    for (const session of sessions) {
      session.push({ kind: "drain", reason: "server is shutting down", cause: "shutdown" });
      session.end();
    }
    await Promise.allSettled(sessions.map((session) => this.close(session, "shutdown")));
  }
}
