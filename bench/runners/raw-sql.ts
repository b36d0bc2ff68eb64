// The raw-SQL runner: the lower bound for any PostgreSQL queue on this
// machine. Same scenarios as the actionq runner, run as bare statements
// from this process (see bench/lib/raw-sql-queue.ts). `--batch N` (1 or
// 100) is how many items each statement handles; the system is reported as
// raw-sql/N.
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { Counter, rateFromFirst } from "../lib/actionq-load.js";
import { WindowMeter, cpuPerAction } from "../lib/meter.js";
import { backendsOf } from "../lib/proc.js";
import { type Metrics, type RunnerArgs, type Series, emit, parseRunnerArgs, progress } from "../lib/protocol.js";
import { type ClaimedJob, Wakeups, claim, complete, connectionConfig, enqueue, openClient, readEventsAfter, schemaSql } from "../lib/raw-sql-queue.js";
import { latencySummary } from "../lib/stats.js";
import { measureSustained } from "../lib/sustained.js";

const WORKERS = 4;
const PRODUCERS = 4;
const WARMUP_MS = 2000;
const CHUNK = 250_000;
/** The most rows sustained preloads: about a minute of INSERT here. */
const SUSTAINED_MAX_BACKLOG = 16_000_000;
/** The runner's own bookkeeping connections, not counted as the queue's. */
const METER_APPLICATION = "raw-sql-bench-meter";

interface Context {
  args: RunnerArgs;
  batch: number;
  db: pg.Pool;
  wakeups: Wakeups;
  notes: string[];
  series?: Series;
}

/** A worker on its own connection: claims up to `batch`, completes them in
 * one statement, and waits for a NOTIFY when the queue is empty. */
class Worker {
  private running = true;
  private readonly loop: Promise<void>;

  constructor(
    private readonly ctx: Context,
    private readonly name: string,
    readonly completed: Counter,
    private readonly onClaim?: (jobs: ClaimedJob[], receivedAt: number) => void,
  ) {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    const client = await openClient(this.ctx.args.url, this.ctx.args.schema);
    try {
      while (this.running) {
        const seen = this.ctx.wakeups.readyCount;
        let jobs: ClaimedJob[];
        try {
          jobs = await claim(client, this.ctx.batch, this.name);
        } catch (error) {
          this.completed.fail(error);
          await sleep(50);
          continue;
        }
        if (jobs.length === 0) {
          await this.ctx.wakeups.nextReady(seen, 100);
          continue;
        }
        this.onClaim?.(jobs, performance.now());
        await complete(client, jobs);
        this.completed.add(jobs.length);
      }
    } finally {
      await client.end().catch(() => {});
    }
  }

  async close(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

class Producers {
  private running = true;
  private readonly loops: Promise<void>[];
  private next = 0;

  constructor(
    private readonly ctx: Context,
    count: number,
    readonly enqueued: Counter,
  ) {
    this.loops = Array.from({ length: count }, () => this.produce());
  }

  private async produce(): Promise<void> {
    const client = await openClient(this.ctx.args.url, this.ctx.args.schema);
    try {
      while (this.running) {
        await enqueue(
          client,
          Array.from({ length: this.ctx.batch }, () => ({ n: this.next++ })),
        );
        this.enqueued.add(this.ctx.batch);
      }
    } finally {
      await client.end().catch(() => {});
    }
  }

  async close(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

function workers(ctx: Context, count: number, completed: Counter): Worker[] {
  return Array.from({ length: count }, (_, i) => new Worker(ctx, `worker:raw-${i}`, completed));
}

async function steadyLoad(ctx: Context, workerCount: number, durationMs: number, during?: (open: () => boolean) => Promise<void>) {
  const completed = new Counter();
  const enqueued = new Counter();
  const crew = workers(ctx, workerCount, completed);
  const producers = new Producers(ctx, PRODUCERS, enqueued);
  await sleep(WARMUP_MS);
  const meter = await WindowMeter.start(ctx.db, ctx.args.url, null);
  const [done0, enq0] = [completed.value, enqueued.value];
  let open = true;
  const sampling = during?.(() => open);
  await sleep(durationMs);
  open = false;
  const [done1, enq1] = [completed.value, enqueued.value];
  const window = await meter.stop();
  await producers.close();
  await Promise.all(crew.map((w) => w.close()));
  await sampling;
  const seconds = window.wallMs / 1000;
  return { rate: (done1 - done0) / seconds, enqueue_rate: (enq1 - enq0) / seconds, ...cpuPerAction(window, done1 - done0) };
}

async function bulkEnqueue(ctx: Context, total: number): Promise<number> {
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: PRODUCERS }, async () => {
      const client = await openClient(ctx.args.url, ctx.args.schema);
      try {
        while (next < total) {
          const n = Math.min(ctx.batch, total - next);
          const first = next;
          next += n;
          await enqueue(
            client,
            Array.from({ length: n }, (_, i) => ({ n: first + i })),
          );
        }
      } finally {
        await client.end();
      }
    }),
  );
  return performance.now() - started;
}

async function drain(ctx: Context): Promise<Metrics> {
  const size = ctx.args.size ?? 20_000;
  const enqueueMs = await bulkEnqueue(ctx, size);
  const completed = new Counter();
  const meter = await WindowMeter.start(ctx.db, ctx.args.url, null);
  const crew = workers(ctx, WORKERS, completed);
  await completed.reach(size, 600_000);
  const window = await meter.stop();
  await Promise.all(crew.map((w) => w.close()));
  ctx.notes.push(`${PRODUCERS} connections enqueue ${ctx.batch} per statement; ${WORKERS} worker connections claim and complete ${ctx.batch} per statement`);
  return { rate: size / (window.wallMs / 1000), enqueue_rate: size / (enqueueMs / 1000), ...cpuPerAction(window, size) };
}

async function steady(ctx: Context): Promise<Metrics> {
  ctx.notes.push(`${PRODUCERS} producers awaiting each statement of ${ctx.batch}, ${WORKERS} workers`);
  return steadyLoad(ctx, WORKERS, ctx.args.durationMs ?? 10_000);
}

async function latency(ctx: Context): Promise<Metrics> {
  const durationMs = ctx.args.durationMs ?? 10_000;
  const ratePerSecond = 20;
  const warmup = ratePerSecond;
  const count = warmup + Math.max(1, Math.round((durationMs / 1000) * ratePerSecond));
  const sentAt = new Map<number, number>();
  const samples: number[] = [];
  const completed = new Counter();
  const worker = new Worker(ctx, "worker:raw-latency", completed, (jobs, receivedAt) => {
    for (const job of jobs) {
      const seq = Number(job.payload.seq);
      const start = sentAt.get(seq);
      if (start !== undefined && seq >= warmup) samples.push(receivedAt - start);
    }
  });
  const producer = await openClient(ctx.args.url, ctx.args.schema);
  await sleep(1000);
  const meter = await WindowMeter.start(ctx.db, ctx.args.url, null);
  const t0 = performance.now();
  for (let seq = 0; seq < count; seq++) {
    const wait = t0 + (seq * 1000) / ratePerSecond - performance.now();
    if (wait > 0) await sleep(wait);
    sentAt.set(seq, performance.now());
    await enqueue(producer, [{ n: seq, seq }]);
  }
  await completed.reach(count, 30_000);
  const window = await meter.stop();
  await worker.close();
  await producer.end();
  ctx.notes.push(
    `${count - warmup} items (after ${warmup} of warm-up) at ${ratePerSecond}/s; the worker waits on LISTEN/NOTIFY when idle; CPU per item over all ${count}`,
  );
  const { p50_ms, p99_ms, max_ms } = latencySummary(samples);
  return { p50_ms, p99_ms, max_ms, ...cpuPerAction(window, count) };
}

async function streams(ctx: Context): Promise<Metrics> {
  const busy = 10;
  let connectionsMax = 0;
  const load = await steadyLoad(ctx, busy, ctx.args.durationMs ?? 10_000, async (open) => {
    while (open()) {
      const backends = await backendsOf(ctx.db, process.pid, ctx.args.url);
      connectionsMax = Math.max(connectionsMax, backends.filter((b) => b.applicationName !== METER_APPLICATION).length);
      await sleep(250);
    }
  });
  ctx.notes.push(
    `no server: idle waiters would be in-process callbacks on the one LISTEN connection, so there is no RSS to compare; ${busy} busy worker connections + ${PRODUCERS} producers + 1 LISTEN`,
  );
  return { rss_mb: null, pg_connections: connectionsMax, rate: load.rate };
}

async function insertBacklog(ctx: Context, total: number, status: "ready" | "completed", scenario = "backlog"): Promise<void> {
  const client = await openClient(ctx.args.url, ctx.args.schema);
  try {
    const started = Date.now();
    for (let done = 0; done < total; ) {
      const n = Math.min(CHUNK, total - done);
      await client.query(
        status === "ready"
          ? `INSERT INTO jobs (job_type, payload, status) SELECT 'bench_noop', jsonb_build_object('n', g), 'ready' FROM generate_series(1, $1::int) g`
          : `INSERT INTO jobs (job_type, payload, status, claimed_by, result_ref, finished_at)
             SELECT 'bench_noop', jsonb_build_object('n', g), 'completed', 'worker:history', 'bench://history/' || g, now() FROM generate_series(1, $1::int) g`,
        [n],
      );
      done += n;
      if (total > CHUNK) progress(`raw-sql ${scenario}: inserted ${done}/${total} ${status} jobs (${((Date.now() - started) / 1000).toFixed(0)} s)`);
    }
    await client.query("VACUUM ANALYZE jobs");
  } finally {
    await client.end();
  }
}

/** Claims with 4 workers for `durationMs`, or until `available` are done; items/s. */
async function claimRate(ctx: Context, durationMs: number, available: number): Promise<number> {
  const completed = new Counter();
  const crew = workers(ctx, WORKERS, completed);
  return rateFromFirst(completed, durationMs, available, () => Promise.all(crew.map((w) => w.close())));
}

async function ready(ctx: Context): Promise<number> {
  const { rows } = await ctx.db.query<{ n: number }>("SELECT count(*)::int AS n FROM jobs WHERE status = 'ready'");
  return rows[0]!.n;
}

async function backlog(ctx: Context): Promise<Metrics> {
  const large = ctx.args.size ?? 1_000_000;
  const durationMs = ctx.args.durationMs ?? 10_000;
  // A first 1,000, not measured, as for actionq.
  await insertBacklog(ctx, 1000, "ready");
  await claimRate(ctx, 600_000, 1000);
  await insertBacklog(ctx, 1000, "ready");
  const rate_1k = await claimRate(ctx, 600_000, 1000);
  await insertBacklog(ctx, large, "ready");
  const rate_1m = await claimRate(ctx, durationMs, await ready(ctx));
  await insertBacklog(ctx, large * 5, "completed");
  const left = await ready(ctx);
  if (left < large) await insertBacklog(ctx, large - left, "ready");
  const rate_1m_5m_history = await claimRate(ctx, durationMs, await ready(ctx));
  ctx.notes.push(
    `preloaded with INSERT ... SELECT generate_series (no events for preloaded rows): 1000 drained unmeasured, 1000, then ${large} ready, then ${large * 5} completed (backlog topped up to ${large} first)`,
  );
  return { rate_1k, rate_1m, rate_1m_5m_history };
}

/** The best rate over half-second intervals of a short drain of a fresh
 * backlog: the most a run could drain per second. */
async function peakRate(ctx: Context, rows: number, durationMs: number): Promise<number> {
  await insertBacklog(ctx, rows, "ready", "sustained");
  const completed = new Counter();
  const crew = workers(ctx, WORKERS, completed);
  await completed.reach(1, 60_000);
  let best = 0;
  let [at, count] = [performance.now(), completed.value];
  const until = at + durationMs;
  while (performance.now() < until && completed.value < rows) {
    await sleep(500);
    const [now, value] = [performance.now(), completed.value];
    best = Math.max(best, (value - count) / ((now - at) / 1000));
    [at, count] = [now, value];
  }
  await Promise.all(crew.map((w) => w.close()));
  await ctx.db.query("TRUNCATE jobs, events RESTART IDENTITY");
  return best;
}

/** actionq's sustained drain on bare SQL. The backlog is sized from a short
 * calibration drain (then truncated) so that even the peak rate cannot
 * finish it within the duration, up to SUSTAINED_MAX_BACKLOG. */
async function sustained(ctx: Context): Promise<Metrics> {
  const floor = ctx.args.size ?? 1_500_000;
  const durationMs = ctx.args.durationMs ?? 300_000;
  const calibrationMs = Math.min(5000, Math.max(1000, durationMs / 10));
  const peak = await peakRate(ctx, Math.min(floor, 500_000), calibrationMs);
  const size = Math.min(SUSTAINED_MAX_BACKLOG, Math.max(floor, Math.ceil((peak * durationMs * 1.5) / 1000)));
  progress(`raw-sql sustained: peak ${peak.toFixed(0)}/s in a ${calibrationMs / 1000} s calibration; preloading ${size}`);
  const preloadStarted = performance.now();
  await insertBacklog(ctx, size, "ready", "sustained");
  const preloadS = (performance.now() - preloadStarted) / 1000;
  const measured = await measureSustained({
    db: ctx.db,
    url: ctx.args.url,
    serverPid: null,
    table: "jobs",
    available: size,
    durationMs,
    startWorkers: (completed) => workers(ctx, WORKERS, completed),
    report: (message) => progress(`raw-sql sustained: ${message}`),
  });
  ctx.notes.push(
    `backlog sized from a ${calibrationMs / 1000} s calibration drain (peak ${peak.toFixed(0)}/s over 0.5 s, then truncated): ${size} ready jobs preloaded (at least ${floor}, at most ${SUSTAINED_MAX_BACKLOG}); ` +
      `${WORKERS} workers claim and complete ${ctx.batch} per statement for ${durationMs / 1000} s; ${measured.notes}`,
  );
  ctx.series = measured.series;
  return { ...measured.metrics, preload_s: preloadS, calibration_peak_rate: peak };
}

async function tail(ctx: Context): Promise<Metrics> {
  const durationMs = ctx.args.durationMs ?? 10_000;
  const counts = [1, ctx.args.size ?? 100];
  const metrics: Metrics = {};
  const reader = await openClient(ctx.args.url, ctx.args.schema);
  for (const [index, subscribers] of counts.entries()) {
    const key = index === 0 ? "1" : "100";
    let cursor = (await reader.query<{ max: string }>("SELECT coalesce(max(id), 0)::text AS max FROM events")).rows[0]!.max;
    const lags: number[] = [];
    let measuring = false;
    let reading = false;
    let again = false;
    // One reader fans each batch out to every subscriber, as actionq's hub does.
    const read = async () => {
      if (reading) {
        again = true;
        return;
      }
      reading = true;
      try {
        do {
          again = false;
          const rows = await readEventsAfter(reader, cursor);
          if (rows.length === 0) continue;
          cursor = rows[rows.length - 1]!.id;
          for (let s = 0; s < subscribers; s++) {
            const now = Date.now();
            if (measuring) for (const row of rows) lags.push(now - row.created_ms);
          }
          if (rows.length === 1000) again = true;
        } while (again);
      } finally {
        reading = false;
      }
    };
    const onEvents = () => void read();
    ctx.wakeups.on("events", onEvents);
    let measuredMs = 1;
    const load = await steadyLoad(ctx, WORKERS, durationMs + WARMUP_MS, async (open) => {
      await sleep(WARMUP_MS);
      const from = performance.now();
      measuring = true;
      while (open()) await sleep(20);
      measuring = false;
      measuredMs = performance.now() - from;
    });
    ctx.wakeups.off("events", onEvents);
    const summary = latencySummary(lags);
    metrics[`lag_p99_ms_${key}`] = summary.p99_ms;
    metrics[`lag_p50_ms_${key}`] = summary.p50_ms;
    metrics[`rate_${key}`] = load.rate;
    metrics[`events_received_per_s_${key}`] = summary.count / (measuredMs / 1000);
  }
  await reader.end();
  ctx.notes.push(`one LISTEN-woken reader fans events out to ${counts.join(" and ")} in-process subscribers; not gapless (no horizon check)`);
  return metrics;
}

const SCENARIOS: Record<string, (ctx: Context) => Promise<Metrics>> = { drain, steady, latency, streams, backlog, tail, sustained };

async function main(): Promise<void> {
  const args = parseRunnerArgs(process.argv.slice(2), ["batch"]);
  const batch = Number(args.extra.batch ?? "1");
  if (!Number.isInteger(batch) || batch < 1) throw new Error("--batch must be a positive integer");
  const system = `raw-sql/${batch}`;
  const db = new pg.Pool({ ...connectionConfig(args.url, args.schema), application_name: METER_APPLICATION, max: 2 });
  db.on("error", () => {});
  for (const sql of schemaSql(args.schema)) await db.query(sql);
  const wakeups = await Wakeups.open(args.url, args.schema);
  const ctx: Context = { args, batch, db, wakeups, notes: [] };
  try {
    const metrics = await SCENARIOS[args.scenario]!(ctx);
    emit({ system, scenario: args.scenario, metrics, ...(ctx.series && { series: ctx.series }), notes: ctx.notes.join("; ") });
  } finally {
    await wakeups.close();
    await db.end();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`raw-sql runner failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
