// What the server counts and measures, for Prometheus. Rates and latencies
// are recorded where they happen; the queue's depth and age, the open
// streams, the pool and the LISTEN connection are read when scraped.
import type pg from "pg";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { WebhookBacklog } from "../notify/notifier.js";
import type { Committed } from "../store/commits.js";
import type { ActionRow } from "../store/rows.js";

export interface MetricSources {
  /** Live actions (pending, approved, claimed) by status and type. */
  liveCounts(): Promise<{ status: string; action_type: string; n: string }[]>;
  /** Approved actions no pause or change window holds back, and the
   * oldest one's approval. */
  claimable(): Promise<{ n: string; oldestAt: Date | null }>;
  /** Approved actions each closed change window holds back. */
  heldByWindow(): Promise<Map<string, bigint>>;
  claimStreams(): number;
  /** Claim streams with room for more that found nothing to claim. */
  waitingStreams(): number;
  watchers(): number;
  listening(): boolean;
  /** How this server hears of other replicas' commits right now. */
  wakeupMode(): "listen" | "poll";
  /** Per webhook endpoint: notifications not yet sent, the oldest one's
   * time, and the failed attempts at the one in front. */
  webhookBacklog(): Promise<WebhookBacklog[]>;
  pool: pg.Pool;
}

/** Queueing and working times run from milliseconds to hours. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600];
const RPC_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class Metrics {
  readonly registry = new Registry();
  private readonly rpcs: Counter<"method" | "code">;
  private readonly rpcSeconds: Histogram<"method" | "code">;
  private readonly enqueued: Counter<"action_type" | "status">;
  private readonly claimed: Counter<"action_type">;
  private readonly finished: Counter<"action_type" | "outcome">;
  private readonly enqueueToClaim: Histogram<"action_type">;
  private readonly claimToComplete: Histogram<"action_type">;
  private readonly streamsCut: Counter<"method">;
  private readonly webhookDeliveries: Counter<"endpoint" | "outcome">;
  private readonly poolWait: Histogram;
  private readonly scheduleTicks: Counter<"outcome">;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.rpcs = new Counter({ name: "actionq_rpcs_total", help: "RPCs handled, by method and status code.", labelNames: ["method", "code"], registers });
    this.rpcSeconds = new Histogram({
      name: "actionq_rpc_duration_seconds",
      help: "Time from the start of an RPC to its end (for streams, to the stream's end).",
      labelNames: ["method", "code"],
      buckets: RPC_BUCKETS,
      registers,
    });
    this.enqueued = new Counter({
      name: "actionq_actions_enqueued_total",
      help: "Actions created, by type and the status they landed in.",
      labelNames: ["action_type", "status"],
      registers,
    });
    this.scheduleTicks = new Counter({
      name: "actionq_schedule_ticks_total",
      help: "Schedule ticks acted on by this server, by outcome (enqueued, skipped_overlap, skipped_catch_up, buffered, failed).",
      labelNames: ["outcome"],
      registers,
    });
    this.streamsCut = new Counter({
      name: "actionq_slow_consumer_streams_cut_total",
      help: "Server streams reset because their client stopped reading (ACTIONQ_SLOW_CONSUMER_SECONDS), by method.",
      labelNames: ["method"],
      registers,
    });
    this.claimed = new Counter({ name: "actionq_claims_total", help: "Claims handed to workers, by action type.", labelNames: ["action_type"], registers });
    this.finished = new Counter({
      name: "actionq_claims_finished_total",
      help: "Claims ended by their worker, by action type and outcome (completed, failed, retry_scheduled, rejected).",
      labelNames: ["action_type", "outcome"],
      registers,
    });
    this.enqueueToClaim = new Histogram({
      name: "actionq_enqueue_to_claim_seconds",
      help: "From enqueue to the first claim of an action.",
      labelNames: ["action_type"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.claimToComplete = new Histogram({
      name: "actionq_claim_to_complete_seconds",
      help: "From a claim to the completion of the action under it.",
      labelNames: ["action_type"],
      buckets: LATENCY_BUCKETS,
      registers,
    });

    // Registered before the queue gauges: prom-client collects in order, and
    // their queries would otherwise count as callers waiting for the pool.
    new Gauge({
      name: "actionq_db_pool_connections",
      help: "PostgreSQL pool connections: total, idle, and callers waiting for one.",
      labelNames: ["state"],
      registers,
      collect() {
        this.set({ state: "total" }, sources.pool.totalCount);
        this.set({ state: "idle" }, sources.pool.idleCount);
        this.set({ state: "waiting" }, sources.pool.waitingCount);
      },
    });

    new Gauge({
      name: "actionq_db_pool_max_connections",
      help: "The pool's size (ACTIONQ_POOL_SIZE): total at this value with callers waiting is a saturated pool.",
      registers,
      collect() {
        this.set(sources.pool.options.max ?? 0);
      },
    });
    this.poolWait = new Histogram({
      name: "actionq_db_pool_wait_seconds",
      help: "Time a statement waited for a pool connection: about 0 when one was idle; opening a new one when the pool grows counts too.",
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });

    // One scrape reads the database once for the queue gauges.
    let reading: Promise<void> | undefined;
    const readQueue = () =>
      (reading ??= (async () => {
        try {
          const [live, head, held] = await Promise.all([sources.liveCounts(), sources.claimable(), sources.heldByWindow()]);
          heldGauge.reset();
          for (const [window, n] of held) heldGauge.set({ window }, Number(n));
          depth.reset();
          for (const row of live) depth.set({ status: row.status, action_type: row.action_type }, Number(row.n));
          claimable.set(Number(head.n));
          oldest.set(head.oldestAt ? Math.max(0, (Date.now() - head.oldestAt.getTime()) / 1000) : 0);
        } finally {
          setImmediate(() => (reading = undefined));
        }
      })());
    const depth: Gauge<"status" | "action_type"> = new Gauge({
      name: "actionq_actions",
      help: "Live actions by status (pending, approved, claimed) and type.",
      labelNames: ["status", "action_type"],
      registers,
      collect: readQueue,
    });
    const claimable = new Gauge({
      name: "actionq_claimable_actions",
      help: "Approved actions that no pause and no closed change window holds back.",
      registers,
      collect: readQueue,
    });
    const heldGauge: Gauge<"window"> = new Gauge({
      name: "actionq_window_held_actions",
      help: "Approved actions a closed hold_claims change window holds back, by window.",
      labelNames: ["window"],
      registers,
      collect: readQueue,
    });
    const oldest = new Gauge({
      name: "actionq_oldest_claimable_age_seconds",
      help: "How long the oldest claimable action has waited since its approval; 0 when none.",
      registers,
      collect: readQueue,
    });

    this.webhookDeliveries = new Counter({
      name: "actionq_webhook_deliveries_total",
      help: "Webhook requests sent by this server, by endpoint and outcome (delivered, http_error, timeout, network_error).",
      labelNames: ["endpoint", "outcome"],
      registers,
    });
    // One scrape reads the endpoints' state once for the three webhook gauges.
    let readingHooks: Promise<void> | undefined;
    const readWebhooks = () =>
      (readingHooks ??= (async () => {
        try {
          const rows = await sources.webhookBacklog();
          backlog.reset();
          oldestUndelivered.reset();
          failing.reset();
          for (const row of rows) {
            backlog.set({ endpoint: row.endpoint }, row.n);
            oldestUndelivered.set({ endpoint: row.endpoint }, row.oldest ? Math.max(0, (Date.now() - row.oldest.getTime()) / 1000) : 0);
            failing.set({ endpoint: row.endpoint }, row.attempts);
          }
        } finally {
          setImmediate(() => (readingHooks = undefined));
        }
      })());
    const backlog: Gauge<"endpoint"> = new Gauge({
      name: "actionq_webhook_backlog",
      help: "Notifications of the kinds a webhook endpoint wants that it has not been sent yet (project and type filters are applied when sending).",
      labelNames: ["endpoint"],
      registers,
      collect: readWebhooks,
    });
    const oldestUndelivered: Gauge<"endpoint"> = new Gauge({
      name: "actionq_webhook_oldest_undelivered_age_seconds",
      help: "Age of the oldest notification a webhook endpoint has not been sent yet; 0 when none.",
      labelNames: ["endpoint"],
      registers,
      collect: readWebhooks,
    });
    const failing: Gauge<"endpoint"> = new Gauge({
      name: "actionq_webhook_consecutive_failures",
      help: "Failed attempts in a row at a webhook endpoint's next notification; 0 while it takes them. Deliveries are retried for ever: alert on this.",
      labelNames: ["endpoint"],
      registers,
      collect: readWebhooks,
    });

    new Gauge({
      name: "actionq_claim_streams",
      help: "Open StreamClaims streams on this server.",
      registers,
      collect() {
        this.set(sources.claimStreams());
      },
    });
    new Gauge({
      name: "actionq_claim_streams_waiting",
      help: "Open StreamClaims streams on this server with room for more claims whose last look found nothing to claim: worker capacity standing idle.",
      registers,
      collect() {
        this.set(sources.waitingStreams());
      },
    });
    new Gauge({
      name: "actionq_event_watchers",
      help: "Open WatchEvents streams on this server.",
      registers,
      collect() {
        this.set(sources.watchers());
      },
    });
    new Gauge({
      name: "actionq_listen_connected",
      help: "1 while this server's LISTEN connection to PostgreSQL is up.",
      registers,
      collect() {
        this.set(sources.listening() ? 1 : 0);
      },
    });
    new Gauge({
      name: "actionq_wakeup_mode",
      help: "How this server hears of other replicas' commits: 1 at listen (its LISTEN connection is up) or at poll (no direct LISTEN connection, or it is lost: it polls every ACTIONQ_FALLBACK_POLL_SECONDS).",
      labelNames: ["mode"],
      registers,
      collect() {
        const mode = sources.wakeupMode();
        this.set({ mode: "listen" }, mode === "listen" ? 1 : 0);
        this.set({ mode: "poll" }, mode === "poll" ? 1 : 0);
      },
    });
  }

  rpcDone(method: string, code: string, seconds: number): void {
    this.rpcs.inc({ method, code });
    this.rpcSeconds.observe({ method, code }, seconds);
  }

  /** A statement got its pool connection after this long. */
  onPoolWait(seconds: number): void {
    this.poolWait.observe(seconds);
  }

  onWebhookDelivery(endpoint: string, outcome: string): void {
    this.webhookDeliveries.inc({ endpoint, outcome });
  }

  /** Schedule ticks acted on, once their transaction committed. */
  onScheduleTicks(tally: ReadonlyMap<string, number>): void {
    for (const [outcome, n] of tally) this.scheduleTicks.inc({ outcome }, n);
  }

  onSlowConsumerCut(method: string): void {
    this.streamsCut.inc({ method });
  }

  /** After a commit: count what moved. */
  committed(change: Committed): void {
    if (!("action" in change)) return;
    const row = change.action;
    switch (change.kind) {
      case "enqueued":
        this.onEnqueued(row);
        return;
      case "claimed":
        this.onClaimed(row);
        return;
      case "completed":
        this.onFinished(row, "completed", row.claimed_since ?? null);
        return;
      case "failed":
      case "retry_scheduled":
        this.onFinished(row, change.kind, null);
        return;
      case "rejected":
        // A worker's rejection ends a claim; an approver's does not.
        if (change.from === "claimed") this.onFinished(row, "rejected", null);
        return;
    }
  }

  onEnqueued(row: ActionRow): void {
    this.enqueued.inc({ action_type: row.action_type, status: row.status });
  }

  onClaimed(row: ActionRow): void {
    this.claimed.inc({ action_type: row.action_type });
    if (row.attempt === 1 && row.claimed_at) this.enqueueToClaim.observe({ action_type: row.action_type }, seconds(row.created_at, row.claimed_at));
  }

  /** `claimedAt`: when the claim that ended began, if known. */
  onFinished(row: ActionRow, outcome: "completed" | "failed" | "retry_scheduled" | "rejected", claimedAt: Date | null): void {
    this.finished.inc({ action_type: row.action_type, outcome });
    if (outcome === "completed" && claimedAt) this.claimToComplete.observe({ action_type: row.action_type }, seconds(claimedAt, row.updated_at));
  }
}

function seconds(from: Date, to: Date): number {
  return Math.max(0, (to.getTime() - from.getTime()) / 1000);
}
