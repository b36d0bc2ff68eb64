// Turns the runs into figures: per system, scenario and metric the median,
// min and max over the runs, and actionq's medians as ratios to the best
// peer and to the raw-SQL limits; printed as Markdown tables.
import { type BenchScenario, runnerScenario } from "./protocol.js";
import { median } from "./stats.js";

export const PEERS = ["graphile-worker", "pg-boss"];
/** References: the raw-SQL lifecycle, and the RPC floor (the bench's
 * clients against a server that does no work, see rpc-floor-server.ts). */
export const LIMITS = ["raw-sql/1", "raw-sql/100", "rpc-floor"];
export const SUBJECT = "actionq";

/** The figures each scenario is about, and which way is better. A figure
 * that is already a ratio of a system to itself (`perSystem`) is shown for
 * each system but not divided across systems. */
type Primary = { metric: string; higherIsBetter: boolean; unit: string; perSystem?: boolean }[];
const SUSTAINED: Primary = [
  { metric: "first_minute_rate", higherIsBetter: true, unit: "actions/s" },
  { metric: "last_minute_rate", higherIsBetter: true, unit: "actions/s" },
  { metric: "min_window_rate", higherIsBetter: true, unit: "actions/s" },
  { metric: "sustained_ratio", higherIsBetter: true, unit: "last ÷ first minute, own", perSystem: true },
  { metric: "min_window_ratio", higherIsBetter: true, unit: "worst window ÷ first minute, own", perSystem: true },
];
export const PRIMARY: Record<BenchScenario, Primary> = {
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
  sustained: SUSTAINED,
  "sustained-autovacuum": SUSTAINED,
};

export interface RunRecord {
  system: string;
  scenario: BenchScenario;
  run: number;
  schema: string;
  wallSeconds: number;
  metrics?: Record<string, number | null>;
  /** Figures over time, kept as the runner sent them. */
  series?: Record<string, number[]>;
  notes?: string;
  skipped?: string;
  error?: string;
  /** PostgreSQL's autovacuum setting when the run started. */
  autovacuum?: string;
}

export interface Figure {
  scenario: BenchScenario;
  metric: string;
  system: string;
  median: number | null;
  min: number | null;
  max: number | null;
  runs: number;
}

export interface Ratio {
  scenario: BenchScenario;
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
  const groups = new Map<string, { scenario: BenchScenario; system: string; metric: string; values: number[] }>();
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

function figureOf(figures: Figure[], scenario: BenchScenario, system: string, metric: string): Figure | undefined {
  return figures.find((f) => f.scenario === scenario && f.system === system && f.metric === metric);
}

export function ratios(figures: Figure[], scenarios: BenchScenario[]): Ratio[] {
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

/** A scenario as the tables name it: the sustained ones say which autovacuum
 * setting their runs had. */
export function scenarioLabel(records: RunRecord[], scenario: BenchScenario): string {
  if (runnerScenario(scenario) !== "sustained") return scenario;
  const settings = [...new Set(records.filter((r) => r.scenario === scenario && r.metrics && r.autovacuum).map((r) => r.autovacuum))];
  return settings.length > 0 ? `${scenario} (autovacuum ${settings.join("/")})` : scenario;
}

/** The main table: one row per scenario figure, one column per system, then
 * actionq's ratios. */
export function primaryTable(records: RunRecord[], figures: Figure[], systems: string[], scenarios: BenchScenario[]): string {
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
        scenarioLabel(records, scenario),
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

/** The other metrics actionq and the raw-SQL runs report (enqueue rates,
 * vacuum, ...; CPU per action has its own table), medians only. */
export function detailTable(records: RunRecord[], figures: Figure[], scenarios: BenchScenario[], systems: string[]): string {
  const shown = systems.filter((s) => s === SUBJECT || LIMITS.includes(s));
  const rows = [`| scenario | metric | ${shown.join(" | ")} |`, `|---|---|${shown.map(() => "--:").join("|")}|`];
  for (const scenario of scenarios) {
    const primary = new Set(PRIMARY[scenario].map((p) => p.metric));
    const metrics = [
      ...new Set(
        figures.filter((f) => f.scenario === scenario && shown.includes(f.system) && !primary.has(f.metric) && !CPU_METRIC.test(f.metric)).map((f) => f.metric),
      ),
    ];
    for (const metric of metrics) {
      rows.push(
        `| ${scenarioLabel(records, scenario)} | ${metric} | ${shown.map((system) => cell(figureOf(figures, scenario, system, metric), undefined)).join(" | ")} |`,
      );
    }
  }
  return rows.join("\n");
}

const CPU_METRIC = /_cpu_ms_per_action/;

/** Where the CPU of a system goes per action (job, for the peers), in ms:
 * the server process (actionq, the RPC floor), the peer's own process (the
 * library, its workers and its in-process producers), the PostgreSQL
 * backends serving them, and the clients (actionq and the floor: the
 * runner's workers and producers, the load generator; raw SQL: its workers
 * and producers, which are the queue). */
export interface CpuRow {
  scenario: BenchScenario;
  /** "run" for the scenario's window, "bulk enqueue" for drain's enqueue phase. */
  phase: "run" | "bulk enqueue";
  system: string;
  server: number | null;
  worker: number | null;
  pg: number | null;
  clients: number | null;
  /** The sum of the medians reported. */
  total: number | null;
}

const CPU_COLUMNS = { server: "server", worker: "worker", pg: "pg", clients: "client" } as const;

export function cpuRows(figures: Figure[], scenarios: BenchScenario[], systems: string[]): CpuRow[] {
  const rows: CpuRow[] = [];
  for (const scenario of scenarios) {
    for (const [phase, prefix] of [
      ["run", ""],
      ["bulk enqueue", "enqueue_"],
    ] as const) {
      for (const system of systems) {
        const value = (name: string) => figureOf(figures, scenario, system, `${prefix}${name}_cpu_ms_per_action`)?.median ?? null;
        const row = {
          scenario,
          phase,
          system,
          server: value(CPU_COLUMNS.server),
          worker: value(CPU_COLUMNS.worker),
          pg: value(CPU_COLUMNS.pg),
          clients: value(CPU_COLUMNS.clients),
        };
        const parts = [row.server, row.worker, row.pg, row.clients].filter((v): v is number => v !== null);
        if (parts.length === 0) continue;
        rows.push({ ...row, total: parts.reduce((a, b) => a + b, 0) });
      }
    }
  }
  return rows;
}

/** CPU ms per action: a few hundredths of a ms matter here. */
function cpuNumber(value: number | null): string {
  return value === null || value >= 10 ? formatNumber(value) : value.toFixed(3);
}

/** CPU per action by scenario and system, medians. */
export function cpuTable(records: RunRecord[], figures: Figure[], scenarios: BenchScenario[], systems: string[]): string {
  const rows = ["| scenario | system | server | peer process | PostgreSQL | clients | total |", "|---|---|--:|--:|--:|--:|--:|"];
  for (const row of cpuRows(figures, scenarios, systems)) {
    const scenario = `${scenarioLabel(records, row.scenario)}${row.phase === "run" ? "" : `, ${row.phase}`}`;
    rows.push(`| ${scenario} | ${row.system} | ${[row.server, row.worker, row.pg, row.clients, row.total].map(cpuNumber).join(" | ")} |`);
  }
  return rows.join("\n");
}
