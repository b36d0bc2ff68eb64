// Turns the runs into figures: per system, scenario and metric the median,
// min and max over the runs, and actionq's medians as ratios to the best
// peer and to the raw-SQL limits; printed as Markdown tables.
import type { Scenario } from "./protocol.js";
import { median } from "./stats.js";

export const PEERS = ["graphile-worker", "pg-boss"];
/** References: the raw-SQL lifecycle, and the RPC floor (the bench's
 * clients against a server that does no work, see rpc-floor-server.ts). */
export const LIMITS = ["raw-sql/1", "raw-sql/100", "rpc-floor"];
export const SUBJECT = "actionq";

/** The figures each scenario is about, and which way is better. A figure
 * that is already a ratio of a system to itself (`perSystem`) is shown for
 * each system but not divided across systems. */
export const PRIMARY: Record<Scenario, { metric: string; higherIsBetter: boolean; unit: string; perSystem?: boolean }[]> = {
  drain: [{ metric: "rate", higherIsBetter: true, unit: "actions/s" }],
  steady: [{ metric: "rate", higherIsBetter: true, unit: "actions/s" }],
  latency: [
    { metric: "p50_ms", higherIsBetter: false, unit: "ms" },
    { metric: "p99_ms", higherIsBetter: false, unit: "ms" },
    { metric: "max_ms", higherIsBetter: false, unit: "ms" },
  ],
  streams: [
    { metric: "rss_mb", higherIsBetter: false, unit: "MB" },
    { metric: "pg_connections", higherIsBetter: false, unit: "" },
    { metric: "rate", higherIsBetter: true, unit: "actions/s" },
  ],
  backlog: [
    { metric: "rate_1k", higherIsBetter: true, unit: "actions/s" },
    { metric: "rate_1m", higherIsBetter: true, unit: "actions/s" },
    { metric: "rate_1m_5m_history", higherIsBetter: true, unit: "actions/s" },
  ],
  tail: [
    { metric: "lag_p99_ms_1", higherIsBetter: false, unit: "ms" },
    { metric: "lag_p99_ms_100", higherIsBetter: false, unit: "ms" },
  ],
  sustained: [
    { metric: "first_minute_rate", higherIsBetter: true, unit: "actions/s" },
    { metric: "last_minute_rate", higherIsBetter: true, unit: "actions/s" },
    { metric: "min_window_rate", higherIsBetter: true, unit: "actions/s" },
    { metric: "sustained_ratio", higherIsBetter: true, unit: "last ÷ first minute, own", perSystem: true },
    { metric: "min_window_ratio", higherIsBetter: true, unit: "worst window ÷ first minute, own", perSystem: true },
  ],
};

export interface RunRecord {
  system: string;
  scenario: Scenario;
  run: number;
  schema: string;
  wallSeconds: number;
  metrics?: Record<string, number | null>;
  /** Figures over time, kept as the runner sent them. */
  series?: Record<string, number[]>;
  notes?: string;
  skipped?: string;
  error?: string;
}

export interface Figure {
  scenario: Scenario;
  metric: string;
  system: string;
  median: number | null;
  min: number | null;
  max: number | null;
  runs: number;
}

export interface Ratio {
  scenario: Scenario;
  metric: string;
  higherIsBetter: boolean;
  /** False for a system's ratio to itself: the divisions are then null. */
  compared: boolean;
  actionq: number | null;
  bestPeer: { system: string; value: number } | null;
  vsBestPeer: number | null;
  vsRaw: Record<string, number | null>;
}

/** Median, min and max of every metric of every (system, scenario). */
export function summarize(records: RunRecord[]): Figure[] {
  const groups = new Map<string, { scenario: Scenario; system: string; metric: string; values: number[] }>();
  for (const record of records) {
    for (const [metric, value] of Object.entries(record.metrics ?? {})) {
      const key = `${record.scenario}\u0000${record.system}\u0000${metric}`;
      let group = groups.get(key);
      if (!group) {
        group = { scenario: record.scenario, system: record.system, metric, values: [] };
        groups.set(key, group);
      }
      if (typeof value === "number" && Number.isFinite(value)) group.values.push(value);
    }
  }
  return [...groups.values()].map(({ scenario, system, metric, values }) => ({
    scenario,
    system,
    metric,
    median: median(values),
    min: values.length > 0 ? Math.min(...values) : null,
    max: values.length > 0 ? Math.max(...values) : null,
    runs: values.length,
  }));
}

function figureOf(figures: Figure[], scenario: Scenario, system: string, metric: string): Figure | undefined {
  return figures.find((f) => f.scenario === scenario && f.system === system && f.metric === metric);
}

export function ratios(figures: Figure[], scenarios: Scenario[]): Ratio[] {
  const out: Ratio[] = [];
  for (const scenario of scenarios) {
    for (const { metric, higherIsBetter, perSystem = false } of PRIMARY[scenario]) {
      const actionq = figureOf(figures, scenario, SUBJECT, metric)?.median ?? null;
      let bestPeer: Ratio["bestPeer"] = null;
      for (const system of PEERS) {
        const value = figureOf(figures, scenario, system, metric)?.median;
        if (value === null || value === undefined) continue;
        if (!bestPeer || (higherIsBetter ? value > bestPeer.value : value < bestPeer.value)) bestPeer = { system, value };
      }
      const divide = (other: number | null | undefined) =>
        perSystem || actionq === null || other === null || other === undefined || other === 0 ? null : actionq / other;
      out.push({
        scenario,
        metric,
        higherIsBetter,
        compared: !perSystem,
        actionq,
        bestPeer,
        vsBestPeer: divide(bestPeer?.value),
        vsRaw: Object.fromEntries(LIMITS.map((system) => [system, divide(figureOf(figures, scenario, system, metric)?.median)])),
      });
    }
  }
  return out;
}

export function formatNumber(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  const abs = Math.abs(value);
  if (abs >= 1000) return Math.round(value).toLocaleString("en-US");
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function cell(figure: Figure | undefined, skipped: string | undefined): string {
  if (!figure || figure.median === null) return skipped ? "skipped" : "–";
  if (figure.runs <= 1 || figure.min === figure.max) return formatNumber(figure.median);
  return `${formatNumber(figure.median)} (${formatNumber(figure.min)}–${formatNumber(figure.max)})`;
}

function ratioCell(ratio: number | null): string {
  return ratio === null ? "–" : `${ratio >= 10 ? ratio.toFixed(0) : ratio.toFixed(2)}×`;
}

/** The main table: one row per scenario figure, one column per system, then
 * actionq's ratios. */
export function primaryTable(records: RunRecord[], figures: Figure[], systems: string[], scenarios: Scenario[]): string {
  const rows: string[] = [];
  const header = ["scenario", "figure", ...systems, "actionq ÷ best peer", ...LIMITS.filter((s) => systems.includes(s)).map((s) => `actionq ÷ ${s}`)];
  rows.push(`| ${header.join(" | ")} |`);
  rows.push(`|${header.map((_, i) => (i < 2 ? "---" : "--:")).join("|")}|`);
  const allRatios = ratios(figures, scenarios);
  for (const scenario of scenarios) {
    for (const { metric, unit, higherIsBetter } of PRIMARY[scenario]) {
      const ratio = allRatios.find((r) => r.scenario === scenario && r.metric === metric)!;
      const skippedFor = (system: string) => records.find((r) => r.system === system && r.scenario === scenario && r.skipped)?.skipped;
      const label = `${metric}${unit ? ` (${unit}${higherIsBetter ? ", higher better" : ", lower better"})` : ""}`;
      const peer = ratio.bestPeer && ratio.compared ? `${ratioCell(ratio.vsBestPeer)} (${ratio.bestPeer.system})` : "–";
      const cells = [
        scenario,
        label,
        ...systems.map((system) => cell(figureOf(figures, scenario, system, metric), skippedFor(system))),
        peer,
        ...LIMITS.filter((s) => systems.includes(s)).map((s) => ratioCell(ratio.vsRaw[s] ?? null)),
      ];
      rows.push(`| ${cells.join(" | ")} |`);
    }
  }
  return rows.join("\n");
}

/** The other metrics actionq and the raw-SQL runs report (CPU per action,
 * enqueue rates, ...), medians only. */
export function detailTable(figures: Figure[], scenarios: Scenario[], systems: string[]): string {
  const shown = systems.filter((s) => s === SUBJECT || LIMITS.includes(s));
  const rows = [`| scenario | metric | ${shown.join(" | ")} |`, `|---|---|${shown.map(() => "--:").join("|")}|`];
  for (const scenario of scenarios) {
    const primary = new Set(PRIMARY[scenario].map((p) => p.metric));
    const metrics = [...new Set(figures.filter((f) => f.scenario === scenario && shown.includes(f.system) && !primary.has(f.metric)).map((f) => f.metric))];
    for (const metric of metrics) {
      rows.push(`| ${scenario} | ${metric} | ${shown.map((system) => cell(figureOf(figures, scenario, system, metric), undefined)).join(" | ")} |`);
    }
  }
  return rows.join("\n");
}
