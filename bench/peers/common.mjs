// What the two peer runners share: the runner protocol (flags in, one JSON
// line out), a few measuring helpers, and the run itself (the scenarios a
// library in-process cannot have are skipped; the schema is dropped before
// and after; a failure prints its cause on stderr and exits 1 without a
// result line, as the other runners do).
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import pg from "pg";
// The same /proc readings as the actionq and raw-SQL runners (compiled by
// `npm run prebench` into dist/bench/).
import { CpuMeter, backendsOf } from "../../dist/bench/lib/proc.js";

export const WARMUP_MS = 1_000;
/** Backlogs up to this size are drained whole. */
export const SMALL_BACKLOG = 10_000;

// Keep stdout for the single result line.
console.log = console.info = console.warn = console.debug = console.error;

const { values: args } = parseArgs({
  options: {
    scenario: { type: "string" },
    url: { type: "string" },
    schema: { type: "string" },
    size: { type: "string" },
    "duration-ms": { type: "string" },
    server: { type: "string" }, // part of the shared protocol; unused by in-process peers
  },
  strict: true,
});
export const scenario = args.scenario;
export const url = args.url;
export const schema = args.schema;
export const size = args.size ? Number(args.size) : undefined;
export const durationMs = args["duration-ms"] ? Number(args["duration-ms"]) : 10_000;

/** The measurement pool's application_name: its backends (counting rows,
 * finding backends) are the bench's, not the library's, and are not metered. */
const ADMIN_APPLICATION = "actionq-bench-peer-admin";
let adminPool;

/** Quotes an identifier. */
export const q = (id) => `"${id.replaceAll('"', '""')}"`;
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves once `count()` reaches `target` (checked every 2 ms). */
export async function waitCount(count, target, timeoutMs = 600_000) {
  const deadline = performance.now() + timeoutMs;
  while (count() < target) {
    if (performance.now() > deadline) throw new Error(`timed out at ${count()}/${target} jobs`);
    await sleep(2);
  }
}

/** The PostgreSQL backends serving this process's connections, but for
 * the measurement pool's. */
async function libraryBackends() {
  const backends = await backendsOf(adminPool, process.pid, url);
  return backends.filter((b) => b.applicationName !== ADMIN_APPLICATION).map((b) => b.pid);
}

/**
 * Starts metering a window, as bench/lib/meter.ts does for the other
 * runners: the CPU time of this process (the library, its workers and, in
 * steady and latency, its producers: an in-process library has no separate
 * load generator) and of the PostgreSQL backends serving the library's
 * connections (those opened during the window count from their birth).
 * `stop()` returns { wallMs, workerCpuMs, pgCpuMs }.
 */
export async function startMeter() {
  const startedAt = performance.now();
  const cpu = process.cpuUsage();
  const backends = new CpuMeter();
  backends.track(await libraryBackends());
  return {
    async stop() {
      backends.track(await libraryBackends(), true);
      const used = process.cpuUsage(cpu);
      return { wallMs: performance.now() - startedAt, workerCpuMs: (used.user + used.system) / 1000, pgCpuMs: backends.read() };
    },
  };
}

/** CPU ms per job of a metered window, named as the other runners name
 * theirs (`<prefix>worker_cpu_ms_per_action<suffix>`, `..pg_cpu..`). */
export function cpuPerJob(window, jobs, { prefix = "", suffix = "" } = {}) {
  const per = (ms) => (jobs > 0 ? ms / jobs : null);
  return {
    [`${prefix}worker_cpu_ms_per_action${suffix}`]: per(window.workerCpuMs),
    [`${prefix}pg_cpu_ms_per_action${suffix}`]: per(window.pgCpuMs),
  };
}

/** The CPU figures of the configuration whose rate is reported, unsuffixed,
 * from `metrics` holding each configuration's with suffix `_<config>`. */
export function cpuOfBest(metrics, best) {
  const out = {};
  for (const [key, value] of Object.entries(metrics)) {
    if (key.includes("_cpu_ms_per_action_") && key.endsWith(`_${best}`)) out[key.slice(0, -best.length - 1)] = value;
  }
  return out;
}

/**
 * Steady load: 4 producers each awaiting `addOne()` in a loop while the
 * library's workers run; `completed()` reads their count. Returns the
 * completion and enqueue rates of the window after the warm-up, and its
 * metered CPU (`window`, see startMeter) with the jobs completed in it.
 */
export async function steadyWindow(addOne, completed) {
  let stop = false;
  let enqueued = 0;
  const producer = async () => {
    while (!stop) {
      await addOne();
      enqueued++;
    }
  };
  const producers = Array.from({ length: 4 }, producer);
  await sleep(WARMUP_MS);
  const meter = await startMeter();
  const c0 = completed();
  const e0 = enqueued;
  const t0 = performance.now();
  await sleep(durationMs);
  const secs = (performance.now() - t0) / 1000;
  const jobs = completed() - c0;
  const enqueueRate = (enqueued - e0) / secs;
  const window = await meter.stop();
  stop = true;
  await Promise.all(producers);
  return { rate: jobs / secs, enqueueRate, window, jobs };
}

export function pct(sorted, p) {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i];
}

export function round(x, digits = 0) {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * Runs the scenario named on the command line and exits.
 * `setup(admin)` prepares the library after the schema is dropped; `teardown()`
 * releases it before the schema is dropped again. `admin` is a small pool for
 * measurement queries.
 */
export function runPeer(system, { scenarios, setup = async () => {}, teardown = async () => {} }) {
  const { progress, emit } = peer(system);
  async function main() {
    if (scenario === "streams") return emit({ skipped: "in-process library: no streams" });
    if (scenario === "tail") return emit({ skipped: "in-process library: no gapless ordered tail of completed work" });
    if (scenario === "sustained")
      return emit({ skipped: "not implemented for the peers yet: needs a multi-million-job preload per library and a 5-minute drain per configuration" });
    if (!scenarios[scenario]) throw new Error(`unknown scenario: ${scenario}`);
    if (!url || !schema) throw new Error("--url and --schema are required");
    const admin = new pg.Pool({ connectionString: url, max: 2, application_name: ADMIN_APPLICATION });
    adminPool = admin;
    try {
      await admin.query(`drop schema if exists ${q(schema)} cascade`);
      await setup(admin);
      await scenarios[scenario]();
    } finally {
      try {
        await teardown();
      } catch {}
      try {
        await admin.query(`drop schema if exists ${q(schema)} cascade`);
      } catch (e) {
        progress(`could not drop schema ${schema}: ${e.message}`);
      }
      await admin.end();
    }
  }
  main().then(
    () => process.exit(0),
    (err) => {
      progress(`runner failed: ${err?.stack ?? String(err)}`);
      process.exit(1);
    },
  );
}

/** Progress lines on stderr, and the one result line on stdout. */
export function peer(system) {
  return {
    progress: (msg) => process.stderr.write(`[${system}] ${msg}\n`),
    emit: (obj) => process.stdout.write(`${JSON.stringify({ system, scenario, ...obj })}\n`),
  };
}
