// The sustained scenario's clock and arithmetic, shared by the runners: a
// drain of a preloaded backlog sampled at fixed intervals, and the rates of
// its first and last fifth, of its worst window, and their ratios.
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type pg from "pg";
import { Counter } from "./actionq-load.js";
import { WindowMeter, cpuPerAction } from "./meter.js";
import type { Metrics } from "./protocol.js";

/** Samples per run: every 5 s of a 5-minute run. */
const SAMPLES = 60;
/** Samples per window for the worst-window rate: 10 s of a 5-minute run. */
const WINDOW_SAMPLES = 2;
/** Samples in the first and last "minute": a fifth of the run. */
const SPAN_SAMPLES = SAMPLES / 5;

export interface Sample {
  /** Since the first completion. */
  ms: number;
  /** Completed since the first completion. */
  completed: number;
}

export interface DrainTrace {
  samples: Sample[];
  /** The backlog ran out before the duration did; the last sample is when. */
  ranOut: boolean;
  durationMs: number;
}

/** Samples `completed` every `durationMs` / 60 from the first completion
 * until `durationMs` have passed or `available` are done. */
export async function traceDrain(completed: Counter, available: number, durationMs: number): Promise<DrainTrace> {
  await completed.reach(1, 120_000);
  const startedAt = performance.now();
  const base = completed.value;
  const sampleMs = durationMs / SAMPLES;
  let ranOut = false;
  const exhausted = completed.reach(available, durationMs * 2 + 600_000).then(
    () => {
      ranOut = true;
    },
    () => {},
  );
  const samples: Sample[] = [{ ms: 0, completed: 0 }];
  for (let k = 1; k <= SAMPLES && !ranOut; k++) {
    await Promise.race([sleep(Math.max(0, startedAt + k * sampleMs - performance.now())), exhausted]);
    samples.push({ ms: performance.now() - startedAt, completed: completed.value - base });
  }
  return { samples, ranOut, durationMs };
}

function rate(from: Sample, to: Sample): number | null {
  return to.ms > from.ms ? (to.completed - from.completed) / ((to.ms - from.ms) / 1000) : null;
}

/** The scenario's figures, and the per-window rates as a series. When the
 * backlog ran out, the last (partial) interval is left out: every rate is
 * over time that had work throughout. */
export function sustainedFigures(trace: DrainTrace): { metrics: Metrics; series: Record<string, number[]>; notes: string } {
  const worked = trace.ranOut ? trace.samples.slice(0, -1) : trace.samples;
  const last = worked.length - 1;
  const windows: number[] = [];
  for (let i = 0; i + WINDOW_SAMPLES <= last; i += WINDOW_SAMPLES) windows.push(rate(worked[i]!, worked[i + WINDOW_SAMPLES]!)!);
  const first = last > 0 ? rate(worked[0]!, worked[Math.min(SPAN_SAMPLES, last)]!) : null;
  const lastSpan = last > 0 ? rate(worked[Math.max(0, last - SPAN_SAMPLES)]!, worked[last]!) : null;
  const min = windows.length > 0 ? Math.min(...windows) : null;
  const ratio = (x: number | null) => (x === null || first === null || first === 0 ? null : x / first);
  const end = trace.samples[trace.samples.length - 1]!;
  const spanS = (trace.durationMs * SPAN_SAMPLES) / SAMPLES / 1000;
  const windowS = (trace.durationMs * WINDOW_SAMPLES) / SAMPLES / 1000;
  const notes = [
    `clock from the first completion; completed count sampled every ${(trace.durationMs / SAMPLES / 1000).toFixed(2)} s; first/last "minute" = first/last ${spanS.toFixed(0)} s, windows of ${windowS.toFixed(1)} s`,
  ];
  if (trace.ranOut) {
    const workedS = worked[last]!.ms / 1000;
    notes.push(
      `BACKLOG RAN OUT after ${(end.ms / 1000).toFixed(1)} s of ${(trace.durationMs / 1000).toFixed(0)} s; rates are over the first ${workedS.toFixed(1)} s only` +
        (last < 2 * SPAN_SAMPLES ? " (first and last spans overlap)" : ""),
    );
  }
  return {
    metrics: {
      first_minute_rate: first,
      last_minute_rate: lastSpan,
      min_window_rate: min,
      sustained_ratio: ratio(lastSpan),
      min_window_ratio: ratio(min),
      mean_rate: rate(trace.samples[0]!, end),
      completed: end.completed,
      worked_s: worked[last]!.ms / 1000,
      ran_out: trace.ranOut ? 1 : 0,
    },
    series: {
      sample_s: trace.samples.map((s) => Math.round(s.ms) / 1000),
      completed: trace.samples.map((s) => s.completed),
      window_rate: windows.map((r) => Math.round(r)),
    },
    notes: notes.join("; "),
  };
}

/** Whether vacuum could keep up with a table: its dead tuples, how many times
 * autovacuum has processed it, and whether autovacuum is on at all. */
export async function vacuumState(db: pg.Pool, table: string): Promise<{ deadTuples: number; autovacuums: number; autovacuum: string }> {
  const { rows } = await db.query<{ dead: string; autovacuums: string; autovacuum: string }>(
    `SELECT n_dead_tup::text AS dead, autovacuum_count::text AS autovacuums, current_setting('autovacuum') AS autovacuum
     FROM pg_stat_user_tables WHERE relid = $1::regclass`,
    [table],
  );
  const row = rows[0];
  return { deadTuples: Number(row?.dead ?? 0), autovacuums: Number(row?.autovacuums ?? 0), autovacuum: row?.autovacuum ?? "unknown" };
}

/** The measured part of the scenario, the same for every runner: starts the
 * workers on a preloaded backlog of `available` in `table`, samples the
 * drain for `durationMs`, and returns the figures, the series and a note
 * (with the vacuum state and the errors during the drain). */
export async function measureSustained(options: {
  db: pg.Pool;
  url: string;
  serverPid: number | null;
  table: string;
  available: number;
  durationMs: number;
  startWorkers: (completed: Counter) => { close(): Promise<void> }[];
  report: (message: string) => void;
}): Promise<{ metrics: Metrics; series: Record<string, number[]>; notes: string }> {
  const before = await vacuumState(options.db, options.table);
  const completed = new Counter();
  const meter = await WindowMeter.start(options.db, options.url, options.serverPid);
  const crew = options.startWorkers(completed);
  const trace = await traceDrain(completed, options.available, options.durationMs);
  const window = await meter.stop();
  // Claims still in hand when a stream closes are released by the server, so
  // their completions may fail then; only errors during the drain count.
  const { errors, lastError } = completed;
  await Promise.all(crew.map((worker) => worker.close()));
  const after = await vacuumState(options.db, options.table);
  const figures = sustainedFigures(trace);
  options.report(
    `first ${figures.metrics.first_minute_rate?.toFixed(0)}/s, last ${figures.metrics.last_minute_rate?.toFixed(0)}/s, worst window ${figures.metrics.min_window_rate?.toFixed(0)}/s`,
  );
  const notes = [
    figures.notes,
    `autovacuum=${after.autovacuum}, ${after.autovacuums - before.autovacuums} autovacuum run(s) on ${options.table} during the drain, ${after.deadTuples} dead tuples at the end`,
    ...(errors > 0 ? [`errors during the drain: ${errors} (last: ${lastError})`] : []),
  ];
  return {
    metrics: {
      ...figures.metrics,
      backlog: options.available,
      autovacuum_runs: after.autovacuums - before.autovacuums,
      dead_tuples_end: after.deadTuples,
      ...cpuPerAction(window, completed.value),
    },
    series: figures.series,
    notes: notes.join("; "),
  };
}
