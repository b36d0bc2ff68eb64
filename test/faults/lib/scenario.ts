// What every fault scenario shares: quick server timers, a fresh schema on
// the run's PostgreSQL, in-process workers whose records land in one list,
// and the teardown that leaves no process, schema or directory behind.
import type pg from "pg";
import { onTestFailed } from "vitest";
import { type ExecutionRecord, Worker, type WorkerOptions } from "../worker.mjs";
import { databaseUrl, dropSchema, freshSchema } from "../../support/database.js";
import { type Report, pool, summary } from "./check.js";
import { Producer, type ProducerOptions } from "./load.js";
import { ServerProcess, cleanupDirs, crashedServer, killAll } from "./processes.js";

/** Server settings for the scenarios: every timer short, so that a fault
 * shows its consequences within seconds. */
export const FAULT_ENV: Record<string, string> = {
  ACTIONQ_HEARTBEAT_SECONDS: "0.5",
  ACTIONQ_POLL_INTERVAL_SECONDS: "1",
  ACTIONQ_SWEEP_INTERVAL_SECONDS: "0.5",
  ACTIONQ_ACK_TIMEOUT_SECONDS: "3",
  ACTIONQ_KEEPALIVE_SECONDS: "2",
  ACTIONQ_SHUTDOWN_GRACE_SECONDS: "3",
  ACTIONQ_POOL_SIZE: "5",
  ACTIONQ_RETRY_BACKOFF_SECONDS: "0.2",
};

/** Call first in a scenario: if it fails, it still prints its summary
 * line, saying why. */
export function summaryOnFailure(scenario: string): void {
  const started = Date.now();
  onTestFailed(({ task }) => {
    const why = (task.result?.errors?.[0]?.message ?? "unknown").split("\n")[0];
    console.log(`FAULT ${scenario}: FAILED after ${((Date.now() - started) / 1000).toFixed(1)}s: ${why}`);
  });
}

export function serverEnv(url: string, schema: string, extra: Record<string, string> = {}): Record<string, string> {
  return { ...FAULT_ENV, ACTIONQ_URL: url, ACTIONQ_SCHEMA: schema, ACTIONQ_LISTEN: "127.0.0.1:0", ...extra };
}

/** Workers in this process, recording into one list. */
export class Crew {
  readonly records: ExecutionRecord[] = [];
  readonly workers: Worker[] = [];

  add(options: Omit<WorkerOptions, "record">): Worker {
    const worker = new Worker({ ...options, record: (record) => this.records.push(record) }).start();
    this.workers.push(worker);
    return worker;
  }

  async stop(timeoutMs = 30_000): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.stop(timeoutMs)));
    this.workers.length = 0;
  }

  /** Executions finished so far. */
  get finished(): number {
    return this.records.filter((record) => record.ev === "done").length;
  }
}

/** Resolves once `condition` holds; fails after `timeoutMs`, or at once
 * when a server of the scenario died on its own. */
export async function until(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    const crash = crashedServer();
    if (crash) throw new Error(`while waiting for ${what}: ${crash}`);
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Awaits `work`, failing at once if a server of the scenario crashes meanwhile. */
export async function unlessCrashed<T>(work: Promise<T>, what: string): Promise<T> {
  let settled = false;
  const watch = (async () => {
    while (!settled) {
      const crash = crashedServer();
      if (crash) throw new Error(`while waiting for ${what}: ${crash}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return undefined as T;
  })();
  try {
    return await Promise.race([work, watch]);
  } finally {
    settled = true;
  }
}

/** Internal errors logged by these servers, and those that died on their
 * own: each is a problem for the scenario's report. */
export function serverProblems(servers: ServerProcess[]): string[] {
  return servers.flatMap((server) => [
    ...server.internalErrors.map((line) => `${server.name} logged an internal error: ${JSON.stringify(line).slice(0, 600)}`),
    ...(server.crash ? [`${server.name} crashed: ${server.crash}`] : []),
  ]);
}

/** The teardown of every scenario, also after a failure. Servers that
 * crashed are reported first, so that a failure says why. */
export async function teardown(crew: Crew | undefined, extra: (() => Promise<unknown>)[] = [], servers: ServerProcess[] = []): Promise<void> {
  for (const server of servers) if (server.crash) console.error(`${server.name} crashed: ${server.crash}`);
  await crew?.stop(3000).catch(() => {});
  await killAll();
  for (const step of extra) await step().catch(() => {});
  await cleanupDirs();
}

/** What every scenario sets up and tears down the same way: its summary
 * line on failure, the clock, the in-process crew, the servers and
 * producers it starts, and the steps that clean up after it whatever
 * happened. A file calls `afterEach(endScenario)` and each test
 * `beginScenario(...)`. */
export class Scenario {
  readonly started = Date.now();
  readonly crew = new Crew();
  readonly servers: ServerProcess[] = [];
  readonly producers: Producer[] = [];
  private readonly steps: (() => Promise<unknown>)[] = [];

  constructor(readonly name: string) {
    summaryOnFailure(name);
  }

  /** A fresh schema on `url` (the run's PostgreSQL unless given) and a pool
   * on it, both gone at the end. */
  database(label: string, url = databaseUrl()): { url: string; schema: string; db: pg.Pool } {
    const schema = freshSchema(label);
    const db = pool(url, schema);
    this.atEnd(
      () => db.end(),
      () => dropSchema(url, schema),
    );
    return { url, schema, db };
  }

  /** Starts a server and keeps it for serverProblems() and the teardown. */
  async server(name: string, env: Record<string, string>, timeoutMs?: number): Promise<ServerProcess> {
    const server = await ServerProcess.start(name, env, timeoutMs);
    this.servers.push(server);
    return server;
  }

  /** Starts a producer, closed at the end. */
  produce(options: ProducerOptions): Producer {
    const producer = new Producer(options);
    this.producers.push(producer);
    return producer;
  }

  /** Steps for the teardown, run in order after the producers close. */
  atEnd(...steps: (() => Promise<unknown>)[]): void {
    this.steps.push(...steps);
  }

  /** Adds what the servers logged or how they died to the report, and
   * prints the scenario's summary line. */
  summarize(report: Report, extra = ""): void {
    report.problems.push(...serverProblems(this.servers));
    summary(this.name, report, Date.now() - this.started, extra);
  }

  async end(): Promise<void> {
    await teardown(
      this.crew,
      [
        async () => {
          for (const producer of this.producers) producer.close();
        },
        ...this.steps,
      ],
      this.servers,
    );
  }
}

let current: Scenario | undefined;

export function beginScenario(name: string): Scenario {
  current = new Scenario(name);
  return current;
}

/** For afterEach: tears down the scenario the test began, if any. */
export async function endScenario(): Promise<void> {
  const scenario = current;
  current = undefined;
  await scenario?.end();
}
