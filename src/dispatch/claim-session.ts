// One claim stream (ClaimSession: its outbox of claims, heartbeats and
// drains, and the claims it holds) and a group of streams with the same
// filters (Group), which the dispatcher claims for together.
import { randomUUID } from "node:crypto";
import type { ClaimFilter } from "../store/actions.js";
import type { ActionRow } from "../store/rows.js";

export type StreamMessage = { kind: "claim"; action: ActionRow } | { kind: "heartbeat" } | { kind: "drain"; reason: string; cause: "shutdown" | "max_age" };

/** What the stream sends: the outbox's messages, with consecutive claims
 * merged into one batch for a worker that asked for batches. */
export type SentMessage = StreamMessage | { kind: "claims"; actions: ActionRow[] };

export interface SessionOptions {
  worker: string;
  filter: ClaimFilter;
  maxInFlight: number;
  leaseMs: number;
  /** Acknowledged claims the worker brings from an earlier stream. */
  holding: { id: string; token: string }[];
  /** Send claims in batches of up to this many; 0 sends them one by one. */
  maxBatch: number;
}

/** A claim a stream holds. The action's `attempt` identifies the claim:
 * the same action claimed again (even by the same stream) is a new one. */
export interface Held {
  attempt: number;
  acked: boolean;
  ackTimer: NodeJS.Timeout | undefined;
}

export class ClaimSession {
  readonly id = randomUUID();
  readonly held = new Map<string, Held>();
  private readonly outbox: StreamMessage[] = [];
  private wake: (() => void) | undefined;
  closed = false;
  /** True until the claims the worker brought are counted. */
  adopting = false;
  readonly openedAt = Date.now();
  lastSent = this.openedAt;

  constructor(
    readonly options: SessionOptions,
    readonly group: Group,
  ) {}

  /** Slots promised to a claim statement or a handoff still in flight. */
  reserved = 0;

  get freeSlots(): number {
    return this.closed || this.adopting ? 0 : Math.max(0, this.options.maxInFlight - this.held.size - this.reserved);
  }

  push(message: StreamMessage): void {
    if (this.closed) return;
    if (message.kind === "heartbeat" && this.outbox.length > 0) return;
    this.outbox.push(message);
    this.wake?.();
  }

  /** Ends the message sequence after what is already queued. */
  end(): void {
    this.closed = true;
    this.wake?.();
  }

  async *messages(signal: AbortSignal): AsyncGenerator<SentMessage> {
    const onAbort = () => this.wake?.();
    signal.addEventListener("abort", onAbort);
    const { maxBatch } = this.options;
    try {
      for (;;) {
        const next = this.outbox.shift();
        if (next) {
          this.lastSent = Date.now();
          if (next.kind === "claim" && maxBatch > 0) {
            // The claims queued now, which one claim statement delivered
            // together; nothing waits for a batch to fill.
            const actions = [next.action];
            while (actions.length < maxBatch && this.outbox[0]?.kind === "claim") actions.push((this.outbox.shift() as { action: ActionRow }).action);
            yield { kind: "claims", actions };
            continue;
          }
          yield next;
          if (next.kind === "drain") return;
          continue;
        }
        if (this.closed || signal.aborted) return;
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }
}

export class Group {
  readonly sessions = new Set<ClaimSession>();
  /** Claims are being made for this group right now. */
  running = false;
  /** Something happened during the current claim that may mean more work. */
  dirty = false;
  /** The last claim found less than it asked for, and nothing has woken the
   * group since. */
  exhausted = false;
  /** Which stream is served first next time, so that none starves when
   * there is less work than room. */
  rotation = 0;

  constructor(
    readonly key: string,
    readonly filter: ClaimFilter,
  ) {}

  accepts(actionType: string): boolean {
    return this.filter.actionTypes.length === 0 || this.filter.actionTypes.includes(actionType);
  }
}
