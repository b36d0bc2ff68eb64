// Benchmark runner for graphile-worker (a peer system, run in-process).
//
//   <node >= 22.18> bench/peers/graphile-worker.mjs --scenario <name> --url <postgres url>
//       --schema <fresh schema> [--size N] [--duration-ms N]
//
// Prints exactly one JSON line on stdout:
//   {"system":"graphile-worker","scenario":"drain","metrics":{...},"notes":"..."}
// Everything else (progress, library warnings) goes to stderr. The schema is
// created by graphile-worker's migrations and dropped at the end.
import { performance } from "node:perf_hooks";
import { Logger, makeWorkerUtils, run, runMigrations } from "graphile-worker";
import {
  SMALL_BACKLOG,
  WARMUP_MS,
  cpuOfBest,
  cpuPerJob,
  durationMs,
  pct,
  peer,
  q,
  round,
  runPeer,
  schema,
  size,
  sleep,
  startMeter,
  steadyWindow,
  url,
  waitCount,
} from "./common.mjs";

const SYSTEM = "graphile-worker";
const TASK = "bench";
const WORKERS = 4;

const { progress, emit } = peer(SYSTEM);

const logger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") progress(`${level}: ${message}`);
});

// Configurations. "default" is the library as shipped (one get_job and one
// complete_job query per job, LISTEN/NOTIFY wake-ups). The batched ones are the
// library's documented batching options (worker.graphile.org/docs/performance):
// a pool-level local queue plus batched completion. The docs' own benchmark uses
// localQueue.size 500 with completeJobBatchDelay 0 and failJobBatchDelay 0;
// `concurrency + 1` is the docs' suggested starting point for the queue size.
const CONFIGS = {
  default: {},
  lq5_batch0: { localQueue: { size: WORKERS + 1 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 },
  lq500_batch0: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 },
};


let admin; // pg.Pool for measurement queries and the final DROP SCHEMA
let utils; // WorkerUtils (addJob/addJobs)

async function startWorkers(configName, onJob) {
  return run({
    connectionString: url,
    schema,
    concurrency: WORKERS,
    noHandleSignals: true,
    logger,
    maxPoolSize: 10,
    taskList: { [TASK]: onJob },
    preset: { worker: { ...CONFIGS[configName] } },
  });
}

async function pendingJobs() {
  const { rows } = await admin.query(`select count(*)::int as n from ${q(schema)}._private_jobs`);
  return rows[0].n;
}

// Waits until the table holds no job (completions are committed), polling every 5 ms.
async function waitEmpty(timeoutMs = 600_000) {
  const deadline = performance.now() + timeoutMs;
  while ((await pendingJobs()) > 0) {
    if (performance.now() > deadline) throw new Error("timed out waiting for the queue to empty");
    await sleep(5);
  }
  return performance.now();
}



// One bulk add_jobs call made on the server from generate_series, in chunks.
async function bulkAddSql(n, chunk = 100_000) {
  for (let done = 0; done < n; ) {
    const k = Math.min(chunk, n - done);
    await admin.query(
      `select count(*) from ${q(schema)}.add_jobs(array(
         select row($1::text, json_build_object('i', g), null, null, null, null, null, null)::${q(schema)}.job_spec
         from generate_series(1, $2::int) g))`,
      [TASK, k],
    );
    done += k;
    if (n >= 100_000) progress(`backlog: inserted ${done}/${n}`);
  }
}

// ---------------------------------------------------------------- scenarios

async function drainOnce(configName, n) {
  const specs = Array.from({ length: n }, (_, i) => ({ identifier: TASK, payload: { i } }));
  const enqueueMeter = await startMeter();
  const e0 = performance.now();
  await utils.addJobs(specs);
  const enqueueMs = performance.now() - e0;
  const enqueueWindow = await enqueueMeter.stop();
  let done = 0;
  const meter = await startMeter();
  const t0 = performance.now();
  const runner = await startWorkers(configName, async () => {
    done++;
  });
  try {
    await waitCount(() => done, n);
    const t1 = await waitEmpty();
    const window = await meter.stop();
    return {
      rate: n / ((t1 - t0) / 1000),
      enqueueRate: n / (enqueueMs / 1000),
      cpu: { ...cpuPerJob(window, n, { suffix: `_${configName}` }), ...cpuPerJob(enqueueWindow, n, { prefix: "enqueue_", suffix: `_${configName}` }) },
    };
  } finally {
    await runner.stop();
  }
}

async function drain() {
  const n = size ?? 20_000;
  const metrics = {};
  let best;
  for (const name of Object.keys(CONFIGS)) {
    const r = await drainOnce(name, n);
    progress(`drain ${name}: ${r.rate.toFixed(0)} jobs/s (bulk enqueue ${r.enqueueRate.toFixed(0)} jobs/s)`);
    metrics[`rate_${name}`] = round(r.rate);
    metrics[`enqueue_rate_${name}`] = round(r.enqueueRate);
    Object.assign(metrics, r.cpu);
    if (!best || r.rate > metrics[`rate_${best}`]) best = name;
  }
  emit({
    metrics: { rate: metrics[`rate_${best}`], ...cpuOfBest(metrics, best), ...metrics },
    notes:
      `${n} jobs added with one WorkerUtils.addJobs call (one add_jobs SQL call), then drained by one run() ` +
      `with concurrency ${WORKERS}; rate = jobs / (run() start -> table empty). Configs: default (no local queue, ` +
      `per-job complete_job); lq5_batch0 = localQueue.size ${WORKERS + 1}, completeJobBatchDelay 0, failJobBatchDelay 0; ` +
      `lq500_batch0 = the docs' performance preset (localQueue.size 500, batch delays 0). rate = best (${best}); ` +
      `CPU per job (this process; the PostgreSQL backends of its connections) over the same window, and the best config's unsuffixed.`,
  });
}

async function steadyOnce(configName) {
  let completed = 0;
  const runner = await startWorkers(configName, async () => {
    completed++;
  });
  const result = await steadyWindow(() => utils.addJob(TASK, {}), () => completed);
  await runner.stop();
  await admin.query(`delete from ${q(schema)}._private_jobs`);
  return result;
}

async function steady() {
  const metrics = {};
  let best;
  for (const name of ["default", "lq5_batch0"]) {
    const r = await steadyOnce(name);
    progress(`steady ${name}: ${r.rate.toFixed(0)} completed/s, ${r.enqueueRate.toFixed(0)} enqueued/s`);
    metrics[`rate_${name}`] = round(r.rate);
    metrics[`enqueue_rate_${name}`] = round(r.enqueueRate);
    Object.assign(metrics, cpuPerJob(r.window, r.jobs, { suffix: `_${name}` }));
    if (!best || r.rate > metrics[`rate_${best}`]) best = name;
  }
  emit({
    metrics: { rate: metrics[`rate_${best}`], ...cpuOfBest(metrics, best), ...metrics },
    notes:
      `4 producers each awaiting WorkerUtils.addJob in a loop while one run() (concurrency ${WORKERS}) completes jobs; ` +
      `${WARMUP_MS} ms warm-up, then ${durationMs} ms measured; rate = handler completions/s in the window. ` +
      `Configs: default and lq5_batch0 (localQueue.size ${WORKERS + 1}, completeJobBatchDelay 0); rate = best (${best}). ` +
      `The docs' localQueue 500 preset is not used here: with a near-empty queue it only locks jobs ahead. ` +
      `CPU per job over the window: this process (workers and producers) and the PostgreSQL backends of its connections.`,
  });
}

async function latency() {
  const samples = [];
  let measuring = false;
  const runner = await startWorkers("default", async (payload) => {
    const d = performance.now() - payload.t;
    if (payload.m) samples.push(d);
  });
  try {
    await sleep(500); // workers idle, LISTEN established
    const total = WARMUP_MS + durationMs;
    const meter = await startMeter();
    const start = performance.now();
    let sent = 0;
    let sentAll = 0;
    for (let i = 0; ; i++) {
      const due = start + i * 50; // ~20 jobs/s
      const now = performance.now();
      if (due - start >= total) break;
      if (due > now) await sleep(due - now);
      measuring = performance.now() - start >= WARMUP_MS;
      const t = performance.now();
      await utils.addJob(TASK, { t, m: measuring });
      sentAll++;
      if (measuring) sent++;
    }
    const deadline = performance.now() + 5_000;
    while (samples.length < sent && performance.now() < deadline) await sleep(10);
    const window = await meter.stop();
    samples.sort((a, b) => a - b);
    emit({
      metrics: {
        p50_ms: round(pct(samples, 0.5), 2),
        p99_ms: round(pct(samples, 0.99), 2),
        max_ms: round(samples[samples.length - 1], 2),
        samples: samples.length,
        ...cpuPerJob(window, sentAll),
      },
      notes:
        `one WorkerUtils.addJob at a time every 50 ms into an idle run() (concurrency ${WORKERS}, default config: ` +
        `LISTEN/NOTIFY wake-ups, pollInterval 2000 ms as fallback); latency = addJob call start -> handler start, ` +
        `same process clock; first ${WARMUP_MS} ms discarded; ${samples.length}/${sent} samples; ` +
        `CPU per job over every job sent, warm-up included (at 20/s, mostly the cost of waiting).`,
    });
  } finally {
    await runner.stop();
  }
}

async function backlogOnce(configName, n) {
  let started = 0;
  let tFirst = 0;
  let wStart = 0;
  let wEnd = 0;
  let cStart = 0;
  let cEnd = 0;
  const runner = await startWorkers(configName, async () => {
    if (started++ === 0) tFirst = performance.now();
  });
  try {
    if (n <= SMALL_BACKLOG) {
      // Small backlog: time to claim and complete all of it.
      await waitCount(() => started, n);
      const t1 = await waitEmpty();
      return n / ((t1 - tFirst) / 1000);
    }
    // Large backlog: claims per second over a window after a warm-up; the
    // backlog stays near n throughout.
    await waitCount(() => started, 1);
    await sleep(Math.max(0, tFirst + WARMUP_MS - performance.now()));
    cStart = started;
    wStart = performance.now();
    await sleep(durationMs);
    cEnd = started;
    wEnd = performance.now();
    return (cEnd - cStart) / ((wEnd - wStart) / 1000);
  } finally {
    await runner.stop();
  }
}

async function backlog() {
  const big = size ?? 1_000_000;
  const configs = ["default", "lq500_batch0"];
  const metrics = {};
  const best = {};
  for (const [label, n] of [
    ["1k", 1_000],
    ["1m", big],
  ]) {
    for (const name of configs) {
      // A large backlog is only sampled over a window, so its rows serve both
      // configs; a small one is drained whole and is inserted again per config.
      if (n <= SMALL_BACKLOG || name === configs[0]) {
        await admin.query(`delete from ${q(schema)}._private_jobs`);
        const t = performance.now();
        await bulkAddSql(n);
        await admin.query(`analyze ${q(schema)}._private_jobs`);
        progress(`backlog ${label}: ${n} jobs inserted in ${((performance.now() - t) / 1000).toFixed(1)} s`);
      }
      const rate = await backlogOnce(name, n);
      progress(`backlog ${label} ${name}: ${rate.toFixed(0)} claims/s`);
      metrics[`rate_${label}_${name}`] = round(rate);
      if (!best[label] || rate > metrics[`rate_${label}_${best[label]}`]) best[label] = name;
    }
  }
  emit({
    metrics: {
      rate_1k: metrics[`rate_1k_${best["1k"]}`],
      rate_1m: metrics[`rate_1m_${best["1m"]}`],
      ...metrics,
      backlog_large: big,
    },
    notes:
      `backlog inserted with add_jobs (the library's bulk SQL function) from generate_series in chunks of 100k, then ANALYZE; ` +
      `workers: one run(), concurrency ${WORKERS}. rate_1k = 1000 jobs / (first handler start -> table empty). ` +
      (big > SMALL_BACKLOG
        ? `rate_1m = handler starts/s over ${durationMs} ms after ${WARMUP_MS} ms warm-up with ${big} jobs waiting. `
        : `rate_1m: only ${big} jobs (--size), drained whole like rate_1k. `) +
      `Configs default and lq500_batch0 (docs performance preset); each figure is the best (1k: ${best["1k"]}, 1m: ${best["1m"]}). ` +
      `rate_1m_5m_history not measured (graphile-worker deletes completed jobs, so there is no history table to grow).`,
  });
}

// ---------------------------------------------------------------- helpers

runPeer(SYSTEM, {
  scenarios: { drain, steady, latency, backlog },
  async setup(pool) {
    admin = pool;
    await runMigrations({ connectionString: url, schema, logger });
    utils = await makeWorkerUtils({ connectionString: url, schema, logger });
  },
  async teardown() {
    await utils?.release();
  },
});
