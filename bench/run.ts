// `npm run bench`: runs every scenario on actionq, the peer queues and the
// raw-SQL limits against one PostgreSQL, interleaved (A run 1, B run 1, ...,
// A run 2, ...), one child process per (system, scenario, run) on a fresh
// schema, and reports medians with min and max, and actionq's ratios to the
// best peer and to raw SQL. `npm run bench -- --quick` is a smoke run.
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { appendFile, mkdir, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import pg from "pg";
import { type AutovacuumOverride, autovacuumOn, autovacuumSetting } from "./lib/autovacuum.js";
import { BENCH_SCENARIOS, type BenchScenario, type Scenario, runnerScenario } from "./lib/protocol.js";
import { type RunRecord, cpuRows, cpuTable, detailTable, primaryTable, ratios, summarize } from "./lib/report.js";

const benchDir = path.resolve(import.meta.dirname, "..", "..", "bench");
const rootDir = path.dirname(benchDir);
const compiledDir = path.join(rootDir, "dist", "bench");

interface SystemSpec {
  name: string;
  /** The command, without the protocol's arguments; null when unavailable. */
  command: string[] | null;
  unavailable?: string;
}

interface ScenarioSize {
  size?: number;
  durationMs?: number;
  timeoutMs: number;
}

/** What each scenario is given, full and quick. */
const SIZES: Record<"full" | "quick", Record<Scenario, ScenarioSize>> = {
  full: {
    drain: { size: 20_000, timeoutMs: 15 * 60_000 },
    steady: { durationMs: 10_000, timeoutMs: 5 * 60_000 },
    latency: { durationMs: 10_000, timeoutMs: 5 * 60_000 },
    streams: { size: 1000, durationMs: 10_000, timeoutMs: 10 * 60_000 },
    backlog: { size: 1_000_000, durationMs: 10_000, timeoutMs: 60 * 60_000 },
    tail: { size: 100, durationMs: 10_000, timeoutMs: 5 * 60_000 },
    // size: actionq's backlog, and the least raw SQL preloads (it sizes its own from its rate).
    sustained: { size: 1_500_000, durationMs: 300_000, timeoutMs: 25 * 60_000 },
  },
  quick: {
    drain: { size: 2000, timeoutMs: 90_000 },
    steady: { durationMs: 2000, timeoutMs: 90_000 },
    latency: { durationMs: 2000, timeoutMs: 90_000 },
    streams: { size: 200, durationMs: 2000, timeoutMs: 90_000 },
    backlog: { size: 20_000, durationMs: 2000, timeoutMs: 120_000 },
    tail: { size: 100, durationMs: 2000, timeoutMs: 90_000 },
    sustained: { size: 200_000, durationMs: 20_000, timeoutMs: 180_000 },
  },
};

function options() {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      runs: { type: "string" },
      scenarios: { type: "string" },
      systems: { type: "string" },
      url: { type: "string" },
      help: { type: "boolean", default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(
      `npm run bench [-- --quick] [--runs N] [--scenarios drain,steady,...] [--systems actionq,raw-sql/1,...] [--url postgres://...]\n` +
        `  full run: 3 interleaved runs of every scenario; --quick: smaller sizes and 1 run\n` +
        `  database: --url, else $BENCH_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/test\n` +
        `  sustained-autovacuum turns PostgreSQL's autovacuum on (ALTER SYSTEM, superuser) for its runs and back afterwards\n`,
    );
    process.exit(0);
  }
  const quick = values.quick!;
  const runs = Number(values.runs ?? (quick ? 1 : 3));
  if (!Number.isInteger(runs) || runs < 1) throw new Error("--runs must be a positive integer");
  const scenarios = (values.scenarios?.split(",") ?? [...BENCH_SCENARIOS]) as BenchScenario[];
  for (const s of scenarios) if (!BENCH_SCENARIOS.includes(s)) throw new Error(`unknown scenario ${s}; one of ${BENCH_SCENARIOS.join(", ")}`);
  return {
    quick,
    runs,
    scenarios,
    systems: values.systems?.split(","),
    url: values.url ?? process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test",
  };
}

/** The Node 22 binary for the peers, from the other runner's helper. */
async function node22(): Promise<{ path: string | null; why?: string }> {
  const helper = path.join(benchDir, "node22.mjs");
  if (!existsSync(helper)) return { path: null, why: "bench/node22.mjs is missing" };
  try {
    const module = (await import(pathToFileURL(helper).href)) as { node22Path?: () => Promise<string | null> };
    const found = await module.node22Path?.();
    return found ? { path: found } : { path: null, why: "no Node >= 22 binary available (bench/node22.mjs)" };
  } catch (error) {
    return { path: null, why: `bench/node22.mjs failed: ${(error as Error).message}` };
  }
}

async function systems(only: string[] | undefined): Promise<SystemSpec[]> {
  const node = process.execPath;
  const peerNode = await node22();
  const peer = (name: string): SystemSpec => {
    const runner = path.join(benchDir, "peers", `${name}.mjs`);
    if (!existsSync(runner)) return { name, command: null, unavailable: `bench/peers/${name}.mjs is missing` };
    if (!peerNode.path) return { name, command: null, unavailable: peerNode.why! };
    return { name, command: [peerNode.path, runner] };
  };
  const all: SystemSpec[] = [
    { name: "actionq", command: [node, path.join(compiledDir, "runners", "actionq.js")] },
    peer("graphile-worker"),
    peer("pg-boss"),
    { name: "raw-sql/1", command: [node, path.join(compiledDir, "runners", "raw-sql.js"), "--batch", "1"] },
    { name: "raw-sql/100", command: [node, path.join(compiledDir, "runners", "raw-sql.js"), "--batch", "100"] },
    { name: "rpc-floor", command: [node, path.join(compiledDir, "runners", "actionq.js"), "--target", "floor"] },
  ];
  // Only when named: actionq without handoff and claim batches, for a
  // before-and-after in one run.
  const baseline: SystemSpec = { name: "actionq/baseline", command: [node, path.join(compiledDir, "runners", "actionq.js"), "--target", "baseline"] };
  if (!only) return all;
  all.push(baseline);
  for (const name of only) if (!all.some((s) => s.name === name)) throw new Error(`unknown system ${name}; one of ${all.map((s) => s.name).join(", ")}`);
  return all.filter((s) => only.includes(s.name));
}

function freshSchema(system: string, scenario: BenchScenario, run: number): string {
  const slug = system.replace(/[^A-Za-z0-9]+/g, "_");
  return `bench_${slug}_${scenario.replace(/-/g, "_")}_${run}_${randomBytes(3).toString("hex")}`;
}

interface ChildOutcome {
  stdout: string;
  code: number | null;
  signal: string | null;
  stderrTail: string;
  timedOut: boolean;
}

/** Runs one runner, forwarding its stderr (progress) with a prefix. */
function runChild(command: string[], args: string[], timeoutMs: number, prefix: string, log: string): Promise<ChildOutcome> {
  return new Promise((resolve) => {
    const child = spawn(command[0]!, [...command.slice(1), ...args], { cwd: rootDir, stdio: ["ignore", "pipe", "pipe"], env: process.env });
    let stdout = "";
    let stderrTail = "";
    let partial = "";
    let timedOut = false;
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderrTail = (stderrTail + chunk).slice(-4000);
      void appendFile(log, chunk);
      const lines = (partial + chunk).split("\n");
      partial = lines.pop()!;
      for (const line of lines) if (line.trim()) process.stderr.write(`${prefix} ${line}\n`);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGTERM");
      setTimeout(() => child.kill("SIGKILL"), 10_000).unref();
    }, timeoutMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ stdout, code, signal, stderrTail, timedOut });
    });
  });
}

function parseResult(outcome: ChildOutcome): Pick<RunRecord, "metrics" | "series" | "notes" | "skipped" | "error"> {
  const line = outcome.stdout
    .trim()
    .split("\n")
    .reverse()
    .find((l) => l.trim().startsWith("{"));
  if (line) {
    try {
      const parsed = JSON.parse(line) as { metrics?: Record<string, unknown>; series?: Record<string, unknown>; notes?: string; skipped?: string };
      if (parsed.skipped) return { skipped: parsed.skipped };
      if (parsed.metrics) {
        const metrics: Record<string, number | null> = {};
        for (const [k, v] of Object.entries(parsed.metrics)) metrics[k] = typeof v === "number" && Number.isFinite(v) ? v : null;
        const series: Record<string, number[]> = {};
        for (const [k, v] of Object.entries(parsed.series ?? {})) if (Array.isArray(v) && v.every((x) => typeof x === "number")) series[k] = v as number[];
        return { metrics, ...(Object.keys(series).length > 0 && { series }), notes: parsed.notes };
      }
    } catch {
      // fall through to the error below
    }
  }
  const how = outcome.timedOut ? "timed out" : `exited with ${outcome.code ?? outcome.signal}`;
  return { error: `${how}; stderr: ${outcome.stderrTail.trim().split("\n").slice(-5).join(" / ")}` };
}

async function machine(db: pg.Client, peerNode: string | null) {
  const { rows: version } = await db.query<{ version: string }>("SELECT version()");
  const settings = [
    "shared_buffers",
    "max_connections",
    "synchronous_commit",
    "fsync",
    "wal_level",
    "max_wal_size",
    "work_mem",
    "checkpoint_timeout",
    "effective_io_concurrency",
    "autovacuum",
  ];
  const { rows } = await db.query<{ name: string; setting: string; unit: string | null }>("SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1)", [
    settings,
  ]);
  return {
    date: new Date().toISOString(),
    host: os.hostname(),
    nproc: os.availableParallelism(),
    cpu: os.cpus()[0]?.model ?? "unknown",
    memGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    loadavg: os.loadavg(),
    node: process.version,
    peerNode: peerNode ? execFileSync(peerNode, ["--version"], { encoding: "utf8" }).trim() : null,
    postgres: version[0]!.version,
    postgresSettings: Object.fromEntries(rows.map((r) => [r.name, r.unit ? `${r.setting} ${r.unit}` : r.setting])),
  };
}

async function main(): Promise<void> {
  const opts = options();
  const sizes = SIZES[opts.quick ? "quick" : "full"];
  const specs = await systems(opts.systems);
  const db = new pg.Client({ connectionString: opts.url, application_name: "actionq-bench-harness" });
  await db.connect();
  const resultsDir = path.join(benchDir, "results");
  await mkdir(resultsDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const jsonFile = path.join(resultsDir, `${stamp}.json`);
  const logFile = path.join(resultsDir, `${stamp}.log`);
  const host = await machine(db, (await node22()).path);
  const started = Date.now();
  process.stderr.write(
    `bench: ${opts.quick ? "quick" : "full"} run, ${opts.runs} run(s) of ${opts.scenarios.join(", ")} on ${specs.map((s) => s.name).join(", ")}\n` +
      `bench: ${host.nproc} CPUs, ${host.memGiB} GiB, load ${host.loadavg.map((l) => l.toFixed(2)).join(" ")}; ${host.postgres.split(" on ")[0]}\n`,
  );
  for (const spec of specs) if (!spec.command) process.stderr.write(`bench: ${spec.name} skipped: ${spec.unavailable}\n`);

  const records: RunRecord[] = [];
  for (const scenario of opts.scenarios) {
    const size = sizes[runnerScenario(scenario)];
    let override: AutovacuumOverride | undefined;
    if (scenario === "sustained-autovacuum") {
      const outcome = await autovacuumOn(opts.url);
      if ("skipped" in outcome) {
        process.stderr.write(`bench: ${scenario} skipped: ${outcome.skipped}\n`);
        for (const spec of specs) records.push({ system: spec.name, scenario, run: 1, schema: "", wallSeconds: 0, skipped: outcome.skipped });
        continue;
      }
      override = outcome;
      process.stderr.write(`bench: ${scenario}: autovacuum on (was ${outcome.previous}; set back afterwards)\n`);
    }
    try {
      await runScenario(scenario, size);
    } finally {
      await override?.restore();
    }
  }

  async function runScenario(scenario: BenchScenario, size: ScenarioSize): Promise<void> {
    for (let run = 1; run <= opts.runs; run++) {
      for (const spec of specs) {
        const base = { system: spec.name, scenario, run };
        if (!spec.command) {
          if (run === 1) records.push({ ...base, schema: "", wallSeconds: 0, skipped: spec.unavailable });
          continue;
        }
        const schema = freshSchema(spec.name, scenario, run);
        const args = ["--scenario", runnerScenario(scenario), "--url", opts.url, "--schema", schema];
        if (size.size !== undefined) args.push("--size", String(size.size));
        if (size.durationMs !== undefined) args.push("--duration-ms", String(size.durationMs));
        const prefix = `  [${scenario} ${run}/${opts.runs} ${spec.name}]`;
        await appendFile(logFile, `\n=== ${spec.name} ${scenario} run ${run} schema ${schema}\n`);
        const autovacuum = await autovacuumSetting(db);
        const t0 = Date.now();
        const outcome = await runChild(spec.command, args, size.timeoutMs, prefix, logFile);
        const wallSeconds = (Date.now() - t0) / 1000;
        await db
          .query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
          .catch((error: Error) => process.stderr.write(`${prefix} could not drop ${schema}: ${error.message}\n`));
        const record: RunRecord = { ...base, schema, wallSeconds, autovacuum, ...parseResult(outcome) };
        records.push(record);
        const summary = record.metrics
          ? Object.entries(record.metrics)
              .slice(0, 4)
              .map(([k, v]) => `${k}=${v === null ? "–" : Math.round(v * 100) / 100}`)
              .join(" ")
          : (record.skipped ?? record.error);
        process.stderr.write(`${prefix} ${record.metrics ? "ok" : record.skipped ? "skipped" : "FAILED"} in ${wallSeconds.toFixed(0)} s: ${summary}\n`);
      }
      // Interim results, so that an interrupted run keeps what it measured.
      await writeFile(jsonFile, JSON.stringify({ machine: host, options: opts, records, partial: true }, null, 2));
    }
  }

  const figures = summarize(records);
  const names = specs.map((s) => s.name);
  const result = {
    machine: { ...host, loadavgEnd: os.loadavg() },
    options: { ...opts, sizes },
    elapsedSeconds: (Date.now() - started) / 1000,
    records,
    figures,
    ratios: ratios(figures, opts.scenarios),
    cpuPerAction: cpuRows(figures, opts.scenarios, names),
  };
  await writeFile(jsonFile, JSON.stringify(result, null, 2));
  await db.end();

  const skips = records
    .filter((r) => r.skipped || r.error)
    .map((r) => `- ${r.system} ${r.scenario}${r.error ? ` run ${r.run} FAILED: ${r.error}` : `: skipped (${r.skipped})`}`);
  const notes = [...new Map(records.filter((r) => r.notes && r.run === 1).map((r) => [`${r.system} ${r.scenario}`, r.notes!])).entries()].map(
    ([k, v]) => `- ${k}: ${v}`,
  );
  process.stdout.write(
    `\n## actionq bench, ${opts.quick ? "quick" : "full"} run, ${host.date}\n\n` +
      `Median of ${opts.runs} interleaved run(s) (min–max in brackets). Ratios are actionq ÷ other on the medians: above 1 is better for rates, below 1 is better for ms, MB and connections.\n\n` +
      `${primaryTable(records, figures, names, opts.scenarios)}\n\n` +
      `### CPU per action (ms, medians)\n\n${cpuTable(records, figures, opts.scenarios, names)}\n\n` +
      `### Details (medians)\n\n${detailTable(records, figures, opts.scenarios, names)}\n` +
      (skips.length > 0 ? `\n### Skipped or failed\n\n${[...new Set(skips)].join("\n")}\n` : "") +
      (notes.length > 0 ? `\n### Notes from the runners\n\n${notes.join("\n")}\n` : "") +
      `\nMachine: ${host.nproc} CPUs (${host.cpu}), ${host.memGiB} GiB, Node ${host.node} (actionq, raw SQL) and ${host.peerNode ?? "none"} (peers); ${host.postgres.split(",")[0]}; ` +
      `${Object.entries(host.postgresSettings)
        .map(([k, v]) => `${k}=${v}`)
        .join(", ")}; load average at start ${host.loadavg.map((l) => l.toFixed(2)).join(" ")}, at end ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(" ")}.\n` +
      `Elapsed ${(result.elapsedSeconds / 60).toFixed(1)} min. JSON: ${path.relative(rootDir, jsonFile)}\n`,
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
