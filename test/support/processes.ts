// The built `actionq` command as a real child process, for the suites that
// must run it that way (serve, the executor, a policy file refused at
// start): its output collected line by line, bounded waits, and a sweep
// that leaves no child behind. These run the compiled code: `npm test`
// builds first; run `npm run build` before running such a file on its own.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import path from "node:path";

export const packageRoot = path.resolve(import.meta.dirname, "..", "..");
export const cli = path.join(packageRoot, "dist", "src", "cli", "actionq.js");

export function requireBuiltCli(): void {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run \`npm run build\` first (npm test does it in pretest)`);
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const running = new Set<ActionqProcess>();

/** The test runner's environment without any ACTIONQ_ variable, plus `env`:
 * a child gets only the settings its test gives it. */
export function cleanEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const clean: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith("ACTIONQ_")) clean[name] = value;
  return { ...clean, ...env };
}

/** A running `actionq ARGS`, its output collected line by line. */
export class ActionqProcess {
  readonly child: ChildProcess;
  readonly stdoutLines: string[] = [];
  stderr = "";
  readonly exited: Promise<Exit>;
  private partial = "";
  private exit: Exit | undefined;

  constructor(args: string[], env: Record<string, string> = {}) {
    this.child = spawn(process.execPath, [cli, ...args], { cwd: packageRoot, env: cleanEnv(env), stdio: ["ignore", "pipe", "pipe"] });
    running.add(this);
    this.child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      const lines = (this.partial + chunk).split("\n");
      this.partial = lines.pop()!;
      this.stdoutLines.push(...lines);
    });
    this.child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      this.stderr += chunk;
    });
    // 'close', not 'exit': at 'exit' the child's stdout and stderr may still
    // hold output not yet read, and a test would see the message missing.
    this.exited = new Promise((resolve) => {
      this.child.on("close", (code, signal) => {
        running.delete(this);
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
  }

  get alive(): boolean {
    return this.exit === undefined;
  }

  /** Everything written to stdout so far. */
  get stdout(): string {
    return this.stdoutLines.map((line) => `${line}\n`).join("") + this.partial;
  }

  /** The JSON log lines (pino) written so far. */
  logs(): Record<string, unknown>[] {
    return this.stdoutLines.flatMap((line) => {
      try {
        const value: unknown = JSON.parse(line);
        return value && typeof value === "object" ? [value as Record<string, unknown>] : [];
      } catch {
        return [];
      }
    });
  }

  /** Both streams, for a failure message. */
  output(): string {
    return `stdout:\n${this.stdout}\nstderr:\n${this.stderr}`;
  }

  /** Resolves with the first log line whose msg is `msg`; rejects if the
   * process exits first or the time runs out. */
  async waitForLog(msg: string, timeoutMs: number): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = this.logs().find((l) => l.msg === msg);
      if (line) return line;
      if (!this.alive) throw new Error(`actionq exited (${JSON.stringify(this.exit)}) before logging ${JSON.stringify(msg)}\n${this.output()}`);
      if (Date.now() > deadline) throw new Error(`actionq did not log ${JSON.stringify(msg)} within ${timeoutMs} ms\n${this.output()}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** The exit, or a rejection when it does not come within the bound. */
  exitWithin(timeoutMs: number): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`actionq did not exit within ${timeoutMs} ms\n${this.output()}`)), timeoutMs);
    });
    return Promise.race([this.exited, timeout]).finally(() => clearTimeout(timer));
  }

  /** SIGTERM, then the exit within a bound. */
  stop(timeoutMs = 20_000): Promise<Exit> {
    this.child.kill("SIGTERM");
    return this.exitWithin(timeoutMs);
  }
}

/** Runs `actionq ARGS` to its end within a bound; kills it if it overruns. */
export async function runToEnd(
  args: string[],
  env: Record<string, string>,
  timeoutMs = 30_000,
): Promise<Exit & { stdout: string; stderr: string; ms: number }> {
  const started = performance.now();
  const proc = new ActionqProcess(args, env);
  try {
    const exit = await proc.exitWithin(timeoutMs);
    return { ...exit, stdout: proc.stdout, stderr: proc.stderr, ms: performance.now() - started };
  } finally {
    if (proc.alive) proc.child.kill("SIGKILL");
  }
}

/** Kills whatever child process a suite left running. */
export async function killRunning(): Promise<void> {
  for (const proc of [...running]) {
    if (proc.alive) proc.child.kill("SIGKILL");
    await proc.exitWithin(10_000).catch(() => {});
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
