// The actionq runner: starts `actionq serve` on the bench schema as a child
// process, drives it over gRPC with grpc-js (or the generated Connect
// client, BENCH_CLIENT=connect; workers on StreamClaims that complete their
// claims), and prints one JSON result line. See bench/README.md for what each scenario measures.
import { setMaxListeners } from "node:events";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import pg from "pg";
import { type ActionqClient, ActionqServerProcess, CLIENT, connect } from "../lib/actionq-server.js";
import { Counter, IDLE_TYPE, Producers, StreamWorker, bulkEnqueue, enqueueRequest, rateFromFirst } from "../lib/actionq-load.js";
import { insertApprovedBacklog, insertFinishedHistory } from "../lib/actionq-backlog.js";
import { cpuPerAction, WindowMeter } from "../lib/meter.js";
import { backendsOf, rssMb } from "../lib/proc.js";
import { type Metrics, type RunnerArgs, type Series, emit, parseRunnerArgs, progress } from "../lib/protocol.js";
import { latencySummary } from "../lib/stats.js";
import { measureSustained } from "../lib/sustained.js";

/** `--target floor` runs the same load against the RPC floor
 * (bench/lib/rpc-floor-server.ts) instead of actionq; `--target baseline`
 * runs actionq with handoff and claim batches off. */
const FLOOR_SCENARIOS = ["drain", "steady", "latency"];
let SYSTEM = "actionq";
/** Workers in the drain, steady, backlog and tail scenarios, and how many
 * claims each may hold at once. */
const WORKERS = 4;
const WORKER_IN_FLIGHT = 64;
const PRODUCERS = 4;
const WARMUP_MS = 2000;
/** BENCH_ACTIONQ_FINISH=each: AckClaim then CompleteAction per claim,
 * instead of the claims in hand completed together by CompleteActions. */
const FINISH = process.env.BENCH_ACTIONQ_FINISH === "each" ? "each" : "batch";

interface Context {
  args: RunnerArgs;
  server: ActionqServerProcess;
  db: pg.Pool;
  notes: string[];
  series?: Series;
}

function workers(ctx: Context, count: number, completed: Counter, prefix = "bench"): StreamWorker[] {
  return Array.from({ length: count }, (_, i) =>
    new StreamWorker(ctx.server.address, { name: `worker:${prefix}-${i}`, maxInFlight: WORKER_IN_FLIGHT, finish: FINISH }, completed).start(),
  );
}

async function closeAll(items: { close(): Promise<void> }[]): Promise<void> {
  await Promise.all(items.map((item) => item.close()));
}

/** Steady load (producers awaiting each enqueue, workers completing) for a
 * warm-up and a measured window; returns rates and CPU per action of the
 * window. `during` runs while the window is open (for sampling). */
async function steadyLoad(
  ctx: Context,
  options: { workers: number; durationMs: number; during?: (open: () => boolean) => Promise<void> },
): Promise<Metrics & { rate: number; enqueue_rate: number }> {
  const completed = new Counter();
  const enqueued = new Counter();
  const crew = workers(ctx, options.workers, completed);
  const producers = new Producers(ctx.server.address, PRODUCERS, enqueued);
  await sleep(WARMUP_MS);
  const meter = await WindowMeter.start(ctx.db, ctx.args.url, ctx.server.pid);
  const [done0, enq0] = [completed.value, enqueued.value];
  let open = true;
  const sampling = options.during?.(() => open);
  await sleep(options.durationMs);
  open = false;
  const [done1, enq1] = [completed.value, enqueued.value];
  const window = await meter.stop();
  await producers.close();
  await closeAll(crew);
  await sampling;
  if (completed.errors + enqueued.errors > 0)
    ctx.notes.push(`errors: ${completed.errors + enqueued.errors} (last: ${completed.lastError ?? enqueued.lastError})`);
  const seconds = window.wallMs / 1000;
  return {
    rate: (done1 - done0) / seconds,
    enqueue_rate: (enq1 - enq0) / seconds,
    ...cpuPerAction(window, done1 - done0),
  };
}

async function drain(ctx: Context): Promise<Metrics> {
  const size = ctx.args.size ?? 20_000;
  progress(`actionq drain: enqueueing ${size} actions (EnqueueActions batches of 500)`);
  const enqueueMeter = await WindowMeter.start(ctx.db, ctx.args.url, ctx.server.pid);
  const enqueueMs = await bulkEnqueue(ctx.server.address, size);
  const enqueueWindow = await enqueueMeter.stop();
  progress(`actionq drain: enqueued in ${(enqueueMs / 1000).toFixed(1)} s; draining with ${WORKERS} streaming workers`);
  const completed = new Counter();
  const meter = await WindowMeter.start(ctx.db, ctx.args.url, ctx.server.pid);
  const crew = workers(ctx, WORKERS, completed);
  await completed.reach(size, 600_000);
  const window = await meter.stop();
  await closeAll(crew);
  ctx.notes.push(
    `bulk enqueue: EnqueueActions batches of 500; ${WORKERS} workers x max_in_flight ${WORKER_IN_FLIGHT}, ${FINISH === "batch" ? "claims in hand completed together by CompleteActions" : "AckClaim + CompleteAction per claim (BENCH_ACTIONQ_FINISH=each)"}`,
  );
  return {
    rate: size / (window.wallMs / 1000),
    enqueue_rate: size / (enqueueMs / 1000),
    ...cpuPerAction(window, size),
    ...cpuPerAction(enqueueWindow, size, "enqueue_"),
  };
}

async function steady(ctx: Context): Promise<Metrics> {
  const durationMs = ctx.args.durationMs ?? 10_000;
  progress(`actionq steady: ${PRODUCERS} producers, ${WORKERS} workers, ${WARMUP_MS} ms warm-up + ${durationMs} ms`);
  ctx.notes.push(`${PRODUCERS} producers (one awaited EnqueueAction each), ${WORKERS} workers x max_in_flight ${WORKER_IN_FLIGHT}`);
  return steadyLoad(ctx, { workers: WORKERS, durationMs });
}

async function latency(ctx: Context): Promise<Metrics> {
  const durationMs = ctx.args.durationMs ?? 10_000;
  const ratePerSecond = 20;
  // The first second is a warm-up whose samples are dropped.
  const warmup = ratePerSecond;
  const count = warmup + Math.max(1, Math.round((durationMs / 1000) * ratePerSecond));
  const sentAt = new Map<number, number>();
  const samples: number[] = [];
  const enqueueTimes: number[] = [];
  const received = new Counter();
  const completed = new Counter();
  const worker = new StreamWorker(
    ctx.server.address,
    {
      name: "worker:bench-latency",
      maxInFlight: 4,
      onClaim: (claim, receivedAt) => {
        const seq = Number((claim.action!.payload as { seq?: number }).seq);
        const start = sentAt.get(seq);
        if (start !== undefined && seq >= warmup) samples.push(receivedAt - start);
        received.add();
      },
    },
    completed,
  ).start();
  const producer = connect(ctx.server.address);
  // Let the stream open and go idle.
  await sleep(1000);
  progress(`actionq latency: ${count} actions at ${ratePerSecond}/s into an idle stream`);
  const meter = await WindowMeter.start(ctx.db, ctx.args.url, ctx.server.pid);
  const t0 = performance.now();
  for (let seq = 0; seq < count; seq++) {
    const due = t0 + (seq * 1000) / ratePerSecond;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const start = performance.now();
    sentAt.set(seq, start);
    await producer.enqueueAction(enqueueRequest(seq, { seq }));
    if (seq >= warmup) enqueueTimes.push(performance.now() - start);
  }
  await received.reach(count, 30_000);
  await completed.reach(count, 30_000);
  const window = await meter.stop();
  await worker.close();
  const summary = latencySummary(samples);
  const enqueue = latencySummary(enqueueTimes);
  ctx.notes.push(
    `${count - warmup} actions (after ${warmup} of warm-up), one at a time at ${ratePerSecond}/s; enqueue call start -> claim message received by the worker; CPU per action over all ${count}`,
  );
  return {
    p50_ms: summary.p50_ms,
    p99_ms: summary.p99_ms,
    max_ms: summary.max_ms,
    enqueue_rpc_p50_ms: enqueue.p50_ms,
    enqueue_rpc_p99_ms: enqueue.p99_ms,
    ...cpuPerAction(window, count),
  };
}

async function serverConnections(ctx: Context): Promise<number> {
  return (await backendsOf(ctx.db, ctx.server.pid, ctx.args.url)).length;
}

async function streams(ctx: Context): Promise<Metrics> {
  const idleCount = ctx.args.size ?? 1000;
  const durationMs = ctx.args.durationMs ?? 10_000;
  const busy = 10;
  const rssBefore = rssMb(ctx.server.pid);
  progress(`actionq streams: opening ${idleCount} idle claim streams, one connection each`);
  const idle: StreamWorker[] = [];
  const nobody = new Counter();
  for (let i = 0; i < idleCount; i++) {
    idle.push(new StreamWorker(ctx.server.address, { name: `worker:idle-${i}`, maxInFlight: 1, actionTypes: [IDLE_TYPE] }, nobody).start());
    if (i % 50 === 49) await sleep(20);
  }
  await waitForGauge(ctx, "actionq_claim_streams", idleCount, 120_000);
  await sleep(1000);
  const rssIdle = rssMb(ctx.server.pid);
  progress(`actionq streams: ${idleCount} open (server RSS ${rssIdle?.toFixed(0)} MB); load on ${busy} busy streams`);
  let rssMax = rssIdle ?? 0;
  let connectionsMax = await serverConnections(ctx);
  const load = await steadyLoad(ctx, {
    workers: busy,
    durationMs,
    during: async (open) => {
      while (open()) {
        rssMax = Math.max(rssMax, rssMb(ctx.server.pid) ?? 0);
        connectionsMax = Math.max(connectionsMax, await serverConnections(ctx));
        await sleep(250);
      }
    },
  });
  await closeAll(idle);
  ctx.notes.push(
    `${idleCount} idle streams (filter action_types=[${IDLE_TYPE}], own connection each) + ${busy} busy workers and ${PRODUCERS} producers; RSS and connections are the maxima sampled under load`,
  );
  return {
    rss_mb: rssMax,
    pg_connections: connectionsMax,
    rate: load.rate,
    rss_mb_before_streams: rssBefore,
    rss_mb_streams_idle: rssIdle,
    server_cpu_ms_per_action: load.server_cpu_ms_per_action ?? null,
  };
}

async function waitForGauge(ctx: Context, name: string, atLeast: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await ctx.server.metric(name);
    if (value >= atLeast) return;
    if (Date.now() > deadline) throw new Error(`${name} reached only ${value} of ${atLeast} within ${timeoutMs} ms`);
    await sleep(200);
  }
}

/** Claims with 4 workers for `durationMs`, or until `available` are done
 * (the backlog ran out); actions/s. */
async function claimRate(ctx: Context, durationMs: number, available: number): Promise<number> {
  const completed = new Counter();
  const crew = workers(ctx, WORKERS, completed);
  return rateFromFirst(completed, durationMs, available, () => closeAll(crew));
}

async function claimable(ctx: Context): Promise<number> {
  const { rows } = await ctx.db.query<{ n: number }>("SELECT count(*)::int AS n FROM actions WHERE status = 'approved' AND NOT deferred");
  return rows[0]!.n;
}

async function backlog(ctx: Context): Promise<Metrics> {
  const large = ctx.args.size ?? 1_000_000;
  const history = large * 5;
  const durationMs = ctx.args.durationMs ?? 10_000;
  const metrics: Metrics = {};

  const report = (m: string) => progress(`actionq backlog: ${m}`);
  // A first 1,000, not measured, so that no figure pays for a cold server.
  await insertApprovedBacklog(ctx.db, 1000, report);
  await claimRate(ctx, 600_000, 1000);
  await insertApprovedBacklog(ctx.db, 1000, report);
  metrics.rate_1k = await claimRate(ctx, 600_000, 1000);
  report(`1k -> ${metrics.rate_1k.toFixed(0)}/s`);

  await insertApprovedBacklog(ctx.db, large, report);
  metrics.rate_1m = await claimRate(ctx, durationMs, await claimable(ctx));
  report(`${large} waiting -> ${metrics.rate_1m.toFixed(0)}/s`);

  const historyStarted = performance.now();
  await insertFinishedHistory(ctx.db, history, report);
  metrics.history_insert_s = (performance.now() - historyStarted) / 1000;
  // Top the backlog up again to its size before measuring.
  const left = await claimable(ctx);
  if (left < large) await insertApprovedBacklog(ctx.db, large - left, report);
  metrics.rate_1m_5m_history = await claimRate(ctx, durationMs, await claimable(ctx));
  report(`+ ${history} finished -> ${metrics.rate_1m_5m_history.toFixed(0)}/s`);

  ctx.notes.push(
    `backlog preloaded with INSERT ... SELECT generate_series into actions (triggers off, no events for preloaded rows): 1000 drained unmeasured to warm the server, 1000, then ${large} approved, then ${history} completed (backlog topped up to ${large} first); ${WORKERS} workers for ${durationMs} ms each (1k: until drained)`,
  );
  return metrics;
}

/** A backlog the workers cannot finish, drained for the whole duration:
 * does the rate hold as claimed rows pile up behind the ready index's head? */
async function sustained(ctx: Context): Promise<Metrics> {
  const size = ctx.args.size ?? 1_500_000;
  const durationMs = ctx.args.durationMs ?? 300_000;
  const report = (m: string) => progress(`actionq sustained: ${m}`);
  const preloadStarted = performance.now();
  await insertApprovedBacklog(ctx.db, size, report);
  const preloadS = (performance.now() - preloadStarted) / 1000;
  const available = await claimable(ctx);
  report(`${available} approved actions preloaded in ${preloadS.toFixed(0)} s; draining with ${WORKERS} workers for ${durationMs / 1000} s`);
  const measured = await measureSustained({
    db: ctx.db,
    url: ctx.args.url,
    serverPid: ctx.server.pid,
    table: "actions",
    available,
    durationMs,
    startWorkers: (completed) => workers(ctx, WORKERS, completed),
    report,
  });
  ctx.notes.push(
    `${available} approved actions preloaded as in backlog; ${WORKERS} workers x max_in_flight ${WORKER_IN_FLIGHT} drain for ${durationMs / 1000} s; ${measured.notes}`,
  );
  ctx.series = measured.series;
  return { ...measured.metrics, preload_s: preloadS };
}

async function tail(ctx: Context): Promise<Metrics> {
  const durationMs = ctx.args.durationMs ?? 10_000;
  const counts = [1, ctx.args.size ?? 100];
  const metrics: Metrics = {};
  for (const [index, subscribers] of counts.entries()) {
    const key = index === 0 ? "1" : "100";
    const { rows } = await ctx.db.query<{ max: string }>("SELECT coalesce(max(id), 0)::text AS max FROM events");
    const afterId = BigInt(rows[0]!.max);
    const lags: number[] = [];
    let measuring = false;
    let measuredFrom = 0;
    let measuredMs = 1;
    const stop = new AbortController();
    setMaxListeners(0, stop.signal);
    const watchers = Array.from({ length: subscribers }, () => watch(connect(ctx.server.address), afterId, stop.signal, (lag) => measuring && lags.push(lag)));
    await waitForGauge(ctx, "actionq_event_watchers", subscribers, 60_000);
    progress(`actionq tail: ${subscribers} WatchEvents subscribers during steady load`);
    const load = await steadyLoad(ctx, {
      workers: WORKERS,
      durationMs: durationMs + WARMUP_MS,
      during: async (open) => {
        // The steady window has begun; measure after a warm-up of its own.
        await sleep(WARMUP_MS);
        measuredFrom = performance.now();
        measuring = true;
        while (open()) await sleep(20);
        measuring = false;
        measuredMs = performance.now() - measuredFrom;
      },
    });
    stop.abort();
    await Promise.allSettled(watchers);
    const summary = latencySummary(lags);
    metrics[`lag_p99_ms_${key}`] = summary.p99_ms;
    metrics[`lag_p50_ms_${key}`] = summary.p50_ms;
    metrics[`rate_${key}`] = load.rate;
    metrics[`events_received_per_s_${key}`] = summary.count / (measuredMs / 1000);
  }
  ctx.notes.push(
    `subscribers ${counts.join(" and ")}, each on its own connection, ${watchBatch() > 0 ? `max_batch ${watchBatch()}` : "one event per message"}, during steady load (${PRODUCERS} producers, ${WORKERS} workers); lag = receive time - event create_time (PostgreSQL now() of the writing transaction)`,
  );
  return metrics;
}

/** Watchers ask for events in batches of up to this many (WatchEvents
 * max_batch); BENCH_WATCH_BATCH=0 gets one event per message. */
function watchBatch(): number {
  const value = Number(process.env.BENCH_WATCH_BATCH ?? "500");
  return Number.isInteger(value) && value >= 0 ? value : 500;
}

async function watch(client: ActionqClient, afterId: bigint, signal: AbortSignal, onLag: (ms: number) => void): Promise<void> {
  const lagOf = (event: { createTime?: Timestamp }) => event.createTime && onLag(Date.now() - timestampMs(event.createTime));
  try {
    for await (const message of client.watchEvents({ afterId, maxBatch: watchBatch() }, { signal })) {
      if (message.kind.case === "event") lagOf(message.kind.value);
      else if (message.kind.case === "events") for (const event of message.kind.value.events) lagOf(event);
    }
  } catch (error) {
    if (!signal.aborted) throw error;
  }
}

const SCENARIOS: Record<string, (ctx: Context) => Promise<Metrics>> = { drain, steady, latency, streams, backlog, tail, sustained };

async function main(): Promise<void> {
  const args = parseRunnerArgs(process.argv.slice(2), ["target"]);
  const floor = args.extra.target === "floor";
  if (floor) SYSTEM = "rpc-floor";
  else if (args.extra.target === "baseline") {
    // actionq without what issue 18 added on the claim path: no handoff at
    // enqueue, one claim per stream message. Run beside actionq, it gives
    // before and after in the same run.
    SYSTEM = "actionq/baseline";
    process.env.BENCH_ACTIONQ_HANDOFF = "off";
    process.env.BENCH_ACTIONQ_CLAIM_BATCHES = "off";
    process.env.BENCH_WATCH_BATCH = "0";
  } else if (args.extra.target !== undefined) throw new Error(`--target must be floor or baseline, not ${args.extra.target}`);
  if (args.server)
    return emit({ system: SYSTEM, scenario: args.scenario, skipped: "--server is not supported: the runner measures the server process it starts" });
  if (floor && !FLOOR_SCENARIOS.includes(args.scenario)) {
    return emit({ system: SYSTEM, scenario: args.scenario, skipped: `the RPC floor is measured in ${FLOOR_SCENARIOS.join(", ")} only` });
  }
  const server = floor ? await ActionqServerProcess.startFloor() : await ActionqServerProcess.start(args.url, args.schema);
  const db = new pg.Pool({ connectionString: args.url, max: 4, application_name: "actionq-bench", options: `-c search_path="${args.schema}"` });
  db.on("error", () => {});
  const ctx: Context = { args, server, db, notes: [] };
  try {
    const metrics = await SCENARIOS[args.scenario]!(ctx);
    await server.stop();
    await db.end();
    emit({ system: SYSTEM, scenario: args.scenario, metrics, ...(ctx.series && { series: ctx.series }), notes: [`client ${CLIENT}`, ...ctx.notes].join("; ") });
  } catch (error) {
    progress(`actionq server output (last part):\n${server.recentOutput}`);
    await server.stop().catch(() => {});
    await db.end().catch(() => {});
    throw error;
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`actionq runner failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
