// The runner protocol shared by every system's runner: the arguments the
// harness passes, and the one JSON line a runner prints on stdout.
import { parseArgs } from "node:util";

export const SCENARIOS = ["drain", "steady", "latency", "streams", "backlog", "tail", "sustained"] as const;
export type Scenario = (typeof SCENARIOS)[number];

/** Variants the harness runs as one of the runners' scenarios under another
 * database setting; the runners never see these names. */
export const VARIANTS = { "sustained-autovacuum": "sustained" } as const satisfies Record<string, Scenario>;
export type BenchScenario = Scenario | keyof typeof VARIANTS;
export const BENCH_SCENARIOS: readonly BenchScenario[] = [...SCENARIOS, ...(Object.keys(VARIANTS) as (keyof typeof VARIANTS)[])];

/** The runners' scenario a harness scenario runs. */
export function runnerScenario(scenario: BenchScenario): Scenario {
  return scenario in VARIANTS ? VARIANTS[scenario as keyof typeof VARIANTS] : (scenario as Scenario);
}

export interface RunnerArgs {
  scenario: Scenario;
  url: string;
  schema: string;
  size: number | undefined;
  durationMs: number | undefined;
  server: string | undefined;
  /** Extra options a runner may take beyond the shared protocol. */
  extra: Record<string, string | undefined>;
}

export type Metrics = Record<string, number | null>;

/** Figures over time (e.g. per-window rates), kept in the JSON beside the
 * metrics but not summarized; optional, so older runners need not send it. */
export type Series = Record<string, number[]>;

export type RunnerResult =
  | { system: string; scenario: string; metrics: Metrics; series?: Series; notes?: string }
  | { system: string; scenario: string; skipped: string };

function positiveInt(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer, got ${JSON.stringify(value)}`);
  return n;
}

export function parseRunnerArgs(argv: string[], extraOptions: string[] = []): RunnerArgs {
  const { values } = parseArgs({
    args: argv,
    options: {
      scenario: { type: "string" },
      url: { type: "string" },
      schema: { type: "string" },
      size: { type: "string" },
      "duration-ms": { type: "string" },
      server: { type: "string" },
      ...Object.fromEntries(extraOptions.map((name) => [name, { type: "string" as const }])),
    },
    strict: true,
  });
  const scenario = values.scenario as string | undefined;
  if (!scenario || !(SCENARIOS as readonly string[]).includes(scenario)) throw new Error(`--scenario must be one of ${SCENARIOS.join(", ")}`);
  if (!values.url) throw new Error("--url is required");
  if (!values.schema || !/^[A-Za-z_][A-Za-z0-9_]{0,47}$/.test(values.schema as string)) throw new Error("--schema must be a plain identifier");
  const extra: Record<string, string | undefined> = {};
  for (const name of extraOptions) extra[name] = (values as Record<string, unknown>)[name] as string | undefined;
  return {
    scenario: scenario as Scenario,
    url: values.url as string,
    schema: values.schema as string,
    size: positiveInt("size", values.size as string | undefined),
    durationMs: positiveInt("duration-ms", values["duration-ms"] as string | undefined),
    server: values.server as string | undefined,
    extra,
  };
}

/** Prints the result line and exits; progress and diagnostics go to stderr. */
export function emit(result: RunnerResult): never {
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

export function progress(message: string): void {
  process.stderr.write(`${message}\n`);
}
