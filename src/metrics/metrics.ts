// What the server counts and measures, for Prometheus. Rates and latencies
// are recorded where they happen; the queue's depth and age, the open
// streams, the pool and the LISTEN connection are read when scraped.
import type pg from "pg";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { ActionRow } from "../store/rows.js";

export interface MetricSources {
  /** Live actions (pending, approved, claimed) by status and type. */
  liveCounts(): Promise<{ status: string; action_type: string; n: string }[]>;
  /** Approved actions no pause holds back, and the oldest one's approval. */
  claimable(): Promise<{ n: string; oldestAt: Date | null }>;
  claimStreams(): number;
  watchers(): number;
  listening(): boolean;
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
    this.enqueued = new Counter({ name: "actionq_actions_enqueued_total", help: "Actions created, by type and the status they landed in.", labelNames: ["action_type", "status"], registers });
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

    // One scrape reads the database once for the three queue gauges.
    let reading: Promise<void> | undefined;
    const readQueue = () =>
      (reading ??= (async () => {
        try {
          const [live, head] = await Promise.all([sources.liveCounts(), sources.claimable()]);
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
    const claimable = new Gauge({ name: "actionq_claimable_actions", help: "Approved actions that no pause holds back.", registers, collect: readQueue });
    const oldest = new Gauge({
      name: "actionq_oldest_claimable_age_seconds",
      help: "How long the oldest claimable action has waited since its approval; 0 when none.",
      registers,
      collect: readQueue,
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
  }

  rpcDone(method: string, code: string, seconds: number): void {
    this.rpcs.inc({ method, code });
    this.rpcSeconds.observe({ method, code }, seconds);
  }

  onSlowConsumerCut(method: string): void {
    this.streamsCut.inc({ method });
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
