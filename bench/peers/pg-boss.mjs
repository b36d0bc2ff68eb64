// Benchmark runner for pg-boss (a peer system, run in-process).
//
//   <node >= 22.12> bench/peers/pg-boss.mjs --scenario <name> --url <postgres url>
//       --schema <fresh schema> [--size N] [--duration-ms N]
//
// Prints exactly one JSON line on stdout:
//   {"system":"pg-boss","scenario":"drain","metrics":{...},"notes":"..."}
// Everything else (progress, library warnings) goes to stderr. pg-boss creates
// the schema on start(); the runner drops it at the end.
import { performance } from "node:perf_hooks";
import { PgBoss } from "pg-boss";
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

const SYSTEM = "pg-boss";
const WORKERS = 4;
const MIN_POLL_S = 0.5; // pg-boss rejects polling intervals below 0.5 s

const { progress, emit } = peer(SYSTEM);


let admin; // pg.Pool for measurement queries and the final DROP SCHEMA
const bosses = [];

// One pg-boss instance. Cron scheduling and the supervisor (maintenance,
// queue stats, monitoring) are off: the runs are short and they only add
// background queries. `listen` turns on the LISTEN/NOTIFY listener.
async function startBoss({ listen = false } = {}) {
  const boss = new PgBoss({
    connectionString: url,
    schema,
    max: 10,
    schedule: false,
    supervise: false,
    useListenNotify: listen,
  });
  boss.on("error", (e) => progress(`error: ${e?.message ?? e}`));
  boss.on("warning", (w) => progress(`warning: ${w?.message ?? JSON.stringify(w)}`));
  await boss.start();
  bosses.push(boss);
  return boss;
}

async function stopBoss(boss) {
  await boss.stop({ graceful: true, close: true, timeout: 10_000 });
  bosses.splice(bosses.indexOf(boss), 1);
}

// Worker configurations. All use localConcurrency 4 (four polling workers in
// this process) and a batch handler: pg-boss hands the handler an array and
// completes the whole batch with one statement when it resolves.
// burstWhenBatchFull: fetch again at once while fetches come back full instead
// of waiting out the polling interval (pg-boss 12's documented knob for draining).
const WORK = {
  b100_burst: { batchSize: 100, localConcurrency: WORKERS, pollingIntervalSeconds: MIN_POLL_S, burstWhenBatchFull: true },
  b500_burst: { batchSize: 500, localConcurrency: WORKERS, pollingIntervalSeconds: MIN_POLL_S, burstWhenBatchFull: true },
  b100_poll: { batchSize: 100, localConcurrency: WORKERS, pollingIntervalSeconds: MIN_POLL_S },
};

async function pendingJobs(queue) {
  const { rows } = await admin.query(
    `select count(*)::int as n from ${q(schema)}.job where name = $1 and state in ('created', 'retry', 'active')`,
    [queue],
  );
  return rows[0].n;
}

// Waits until the queue has no created/retry/active job (completions committed).
async function waitEmpty(queue, timeoutMs = 600_000) {
  const deadline = performance.now() + timeoutMs;
  while ((await pendingJobs(queue)) > 0) {
    if (performance.now() > deadline) throw new Error("timed out waiting for the queue to empty");
    await sleep(5);
  }
  return performance.now();
}


async function bulkInsert(boss, queue, n, chunk = 10_000) {
  for (let done = 0; done < n; ) {
    const k = Math.min(chunk, n - done);
    await boss.insert(
      queue,
      Array.from({ length: k }, (_, i) => ({ data: { i: done + i } })),
    );
    done += k;
    if (n >= 100_000 && done % 100_000 === 0) progress(`backlog: inserted ${done}/${n}`);
  }
}

// ---------------------------------------------------------------- scenarios

async function drain() {
  const n = size ?? 20_000;
  const boss = await startBoss();
  const metrics = {};
  let best;
  for (const name of ["b100_burst", "b500_burst", "b100_poll"]) {
    const queue = `drain_${name}`;
    await boss.createQueue(queue);
    const enqueueMeter = await startMeter();
    const e0 = performance.now();
    await boss.insert(
      queue,
      Array.from({ length: n }, (_, i) => ({ data: { i } })),
    );
    const enqueueRate = n / ((performance.now() - e0) / 1000);
    const enqueueWindow = await enqueueMeter.stop();
    let done = 0;
    const meter = await startMeter();
    const t0 = performance.now();
    await boss.work(queue, WORK[name], async (jobs) => {
      done += jobs.length;
    });
    await waitCount(() => done, n);
    const t1 = await waitEmpty(queue);
    const window = await meter.stop();
    await boss.offWork(queue, { wait: true });
    Object.assign(metrics, cpuPerJob(window, n, { suffix: `_${name}` }), cpuPerJob(enqueueWindow, n, { prefix: "enqueue_", suffix: `_${name}` }));
    const rate = n / ((t1 - t0) / 1000);
    progress(`drain ${name}: ${rate.toFixed(0)} jobs/s (bulk insert ${enqueueRate.toFixed(0)} jobs/s)`);
    metrics[`rate_${name}`] = Math.round(rate);
    metrics[`enqueue_rate_${name}`] = Math.round(enqueueRate);
    if (!best || rate > metrics[`rate_${best}`]) best = name;
  }
  await stopBoss(boss);
  emit({
    metrics: { rate: metrics[`rate_${best}`], ...cpuOfBest(metrics, best), ...metrics },
    notes:
      `${n} jobs added with one boss.insert(array) call, then drained by work() with localConcurrency ${WORKERS} ` +
      `and a batch handler (each batch completed with one statement); rate = jobs / (work() call -> no created/active job). ` +
      `Configs: b100_burst = batchSize 100 + burstWhenBatchFull; b500_burst = batchSize 500 + burstWhenBatchFull; ` +
      `b100_poll = batchSize 100 without burst (waits out pollingIntervalSeconds ${MIN_POLL_S}, the minimum, between fetches). ` +
      `rate = best (${best}). schedule and supervise off. CPU per job (this process; the PostgreSQL backends of its ` +
      `connections) over the same window, and the best config's unsuffixed.`,
  });
}

async function steady() {
  const metrics = {};
  let best;
  for (const [name, listen] of [
    ["b100_burst_poll", false],
    ["b100_burst_notify", true],
  ]) {
    const boss = await startBoss({ listen });
    const queue = `steady_${name}`;
    await boss.createQueue(queue, { notify: listen });
    let completed = 0;
    await boss.work(queue, WORK.b100_burst, async (jobs) => {
      completed += jobs.length;
    });
    const { rate, enqueueRate, window, jobs } = await steadyWindow(() => boss.send(queue, {}), () => completed);
    await stopBoss(boss);
    progress(`steady ${name}: ${rate.toFixed(0)} completed/s, ${enqueueRate.toFixed(0)} enqueued/s`);
    metrics[`rate_${name}`] = Math.round(rate);
    metrics[`enqueue_rate_${name}`] = Math.round(enqueueRate);
    Object.assign(metrics, cpuPerJob(window, jobs, { suffix: `_${name}` }));
    if (!best || rate > metrics[`rate_${best}`]) best = name;
  }
  emit({
    metrics: { rate: metrics[`rate_${best}`], ...cpuOfBest(metrics, best), ...metrics },
    notes:
      `4 producers each awaiting boss.send in a loop while work() (localConcurrency ${WORKERS}, batchSize 100, ` +
      `burstWhenBatchFull, pollingIntervalSeconds ${MIN_POLL_S}) completes jobs; ${WARMUP_MS} ms warm-up, then ` +
      `${durationMs} ms measured; rate = handler completions/s in the window. Configs: polling only, and with ` +
      `useListenNotify + queue notify:true; rate = best (${best}). CPU per job over the window: this process ` +
      `(workers and producers) and the PostgreSQL backends of its connections.`,
  });
}

async function latencyOnce(listen, work) {
  const boss = await startBoss({ listen });
  const queue = `latency_${listen ? "notify" : "poll"}`;
  await boss.createQueue(queue, { notify: listen });
  const samples = [];
  await boss.work(queue, work, async (jobs) => {
    const now = performance.now();
    for (const job of jobs) if (job.data.m) samples.push(now - job.data.t);
  });
  try {
    await sleep(1_000); // workers started and idle
    const total = WARMUP_MS + durationMs;
    const meter = await startMeter();
    const start = performance.now();
    let sent = 0;
    let sentAll = 0;
    for (let i = 0; ; i++) {
      const due = start + i * 50; // ~20 jobs/s
      if (due - start >= total) break;
      const now = performance.now();
      if (due > now) await sleep(due - now);
      const m = performance.now() - start >= WARMUP_MS;
      const t = performance.now();
      await boss.send(queue, { t, m });
      sentAll++;
      if (m) sent++;
    }
    const deadline = performance.now() + 5_000;
    while (samples.length < sent && performance.now() < deadline) await sleep(10);
    const window = await meter.stop();
    samples.sort((a, b) => a - b);
    return { samples, sent, cpu: cpuPerJob(window, sentAll) };
  } finally {
    await stopBoss(boss);
  }
}

async function latency() {
  const metrics = {};
  const res = {};
  for (const [name, listen] of [
    ["poll", false],
    ["notify", true],
  ]) {
    const { samples, sent, cpu } = await latencyOnce(listen, WORK.b100_burst);
    res[name] = {
      p50_ms: round(pct(samples, 0.5), 2),
      p99_ms: round(pct(samples, 0.99), 2),
      max_ms: round(samples[samples.length - 1], 2),
      samples: samples.length,
      sent,
      ...cpu,
    };
    progress(`latency ${name}: ${JSON.stringify(res[name])}`);
    for (const [k, v] of Object.entries(res[name])) metrics[`${name}_${k}`] = v;
  }
  const best = res.notify.p50_ms <= res.poll.p50_ms ? "notify" : "poll";
  emit({
    metrics: {
      p50_ms: res[best].p50_ms,
      p99_ms: res[best].p99_ms,
      max_ms: res[best].max_ms,
      worker_cpu_ms_per_action: res[best].worker_cpu_ms_per_action,
      pg_cpu_ms_per_action: res[best].pg_cpu_ms_per_action,
      ...metrics,
    },
    notes:
      `one boss.send at a time every 50 ms into idle workers (work(): localConcurrency ${WORKERS}, batchSize 100, ` +
      `burstWhenBatchFull, so a poll takes every job waiting; with batchSize 1 four workers polling every 0.5 s ` +
      `serve only 8 jobs/s and the queue grows); ` +
      `latency = send call start -> handler start, same process clock; first ${WARMUP_MS} ms discarded. ` +
      `poll = polling only at pollingIntervalSeconds ${MIN_POLL_S} (the lowest pg-boss accepts), so four workers polling ` +
      `independently; notify = useListenNotify + queue notify:true (LISTEN/NOTIFY wake-ups, pg-boss >= 12.x, polling kept ` +
      `as a backstop). p50/p99/max = ${best} (lower p50), and its CPU per job over every job sent, warm-up ` +
      `included (at 20/s, mostly the cost of waiting and polling).`,
  });
}

async function backlog() {
  const big = size ?? 1_000_000;
  const configs = ["b100_burst", "b500_burst"];
  const boss = await startBoss();
  const metrics = {};
  const best = {};
  for (const [label, n] of [
    ["1k", 1_000],
    ["1m", big],
  ]) {
    for (const name of configs) {
      // A large backlog is only sampled over a window, so its rows serve both
      // configs; a small one is drained whole, on a queue of its own per config.
      const small = n <= SMALL_BACKLOG;
      const queue = small ? `backlog_${label}_${name}` : `backlog_${label}`;
      if (small || name === configs[0]) {
        await boss.createQueue(queue);
        const t = performance.now();
        await bulkInsert(boss, queue, n);
        await admin.query(`analyze ${q(schema)}.job`);
        progress(`backlog ${label}: ${n} jobs inserted in ${((performance.now() - t) / 1000).toFixed(1)} s`);
      }
      let started = 0;
      let tFirst = 0;
      await boss.work(queue, WORK[name], async (jobs) => {
        if (started === 0) tFirst = performance.now();
        started += jobs.length;
      });
      let rate;
      if (small) {
        await waitCount(() => started, n);
        const t1 = await waitEmpty(queue);
        rate = n / ((t1 - tFirst) / 1000);
      } else {
        await waitCount(() => started, 1);
        await sleep(Math.max(0, tFirst + WARMUP_MS - performance.now()));
        const c0 = started;
        const w0 = performance.now();
        await sleep(durationMs);
        rate = (started - c0) / ((performance.now() - w0) / 1000);
      }
      await boss.offWork(queue, { wait: true });
      progress(`backlog ${label} ${name}: ${rate.toFixed(0)} claims/s`);
      metrics[`rate_${label}_${name}`] = Math.round(rate);
      if (!best[label] || rate > metrics[`rate_${label}_${best[label]}`]) best[label] = name;
    }
  }
  await stopBoss(boss);
  emit({
    metrics: {
      rate_1k: metrics[`rate_1k_${best["1k"]}`],
      rate_1m: metrics[`rate_1m_${best["1m"]}`],
      ...metrics,
      backlog_large: big,
    },
    notes:
      `backlog inserted with boss.insert(array) in chunks of 10k, then ANALYZE; workers: work() with ` +
      `localConcurrency ${WORKERS}, batch handler, burstWhenBatchFull. rate_1k = jobs / (first batch handed to a ` +
      `handler -> no created/active job left). ` +
      (big > SMALL_BACKLOG
        ? `rate_1m = jobs handed to handlers per second over ${durationMs} ms after ${WARMUP_MS} ms warm-up with ${big} jobs waiting. `
        : `rate_1m: only ${big} jobs (--size), drained whole like rate_1k. `) +
      `Configs batchSize 100 and 500; each figure is the best (1k: ${best["1k"]}, 1m: ${best["1m"]}). ` +
      `rate_1m_5m_history not measured.`,
  });
}

// ---------------------------------------------------------------- helpers

runPeer(SYSTEM, {
  scenarios: { drain, steady, latency, backlog },
  async setup(pool) {
    admin = pool;
  },
  async teardown() {
    for (const boss of [...bosses]) {
      try {
        await boss.stop({ graceful: false, close: true, timeout: 1_000 });
      } catch {}
    }
  },
});
