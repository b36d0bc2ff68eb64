// What every fault scenario shares: quick server timers, a fresh schema on
// the run's PostgreSQL, in-process workers whose records land in one list,
// and the teardown that leaves no process, schema or directory behind.
import { randomBytes } from "node:crypto";
import pg from "pg";
import { inject, onTestFailed } from "vitest";
import { type ExecutionRecord, Worker, type WorkerOptions } from "../worker.mjs";
import { type ServerProcess, cleanupDirs, crashedServer, killAll } from "./processes.js";

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

export function databaseUrl(): string {
  return inject("databaseUrl");
}

export function freshSchema(label: string): string {
  return `f_${label}_${randomBytes(4).toString("hex")}`;
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

export async function dropSchema(url: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  client.on("error", () => {});
  try {
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } catch {
    // The database of this scenario may be gone already.
  } finally {
    await client.end().catch(() => {});
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
