// What the two peer runners share: the runner protocol (flags in, one JSON
// line out), a few measuring helpers, and the run itself (the scenarios a
// library in-process cannot have are skipped; the schema is dropped before
// and after; a failure prints its cause on stderr and exits 1 without a
// result line, as the other runners do).
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import pg from "pg";

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

/**
 * Steady load: 4 producers each awaiting `addOne()` in a loop while the
 * library's workers run; `completed()` reads their count. Returns the
 * completion and enqueue rates of the window after the warm-up.
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
  const c0 = completed();
  const e0 = enqueued;
  const t0 = performance.now();
  await sleep(durationMs);
  const secs = (performance.now() - t0) / 1000;
  const rate = (completed() - c0) / secs;
  const enqueueRate = (enqueued - e0) / secs;
  stop = true;
  await Promise.all(producers);
  return { rate, enqueueRate };
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
    const admin = new pg.Pool({ connectionString: url, max: 2 });
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
