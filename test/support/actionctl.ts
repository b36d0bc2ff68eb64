// Running the built actionctl as a subprocess, for the cli*.test.ts files:
// piped (what scripts see), under a pseudo-terminal from util-linux
// `script` (what people see), or left running (`events --follow`).
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import path from "node:path";
import { expect } from "vitest";
import { cleanEnv, packageRoot } from "./processes.js";
import { eventually } from "./wait.js";

export const CLI = path.join(packageRoot, "dist", "src", "cli", "actionctl.js");

export interface Run {
  /** The exit code; null when the process was killed (e.g. by the timeout). */
  code: number | null;
  stdout: string;
  stderr: string;
}

// Proto JSON as actionctl prints it; the tests read what they assert on.
// biome-ignore lint/suspicious/noExplicitAny: printed JSON of any shape; each test asserts the fields it reads.
export type Json = Record<string, any>;

const children = new Set<ChildProcess>();

/** For afterEach: no actionctl outlives its test. */
export function killChildren(): void {
  for (const child of children) child.kill("SIGKILL");
  children.clear();
}

/** Runs actionctl to the end with stdout and stderr piped. */
export function runActionctl(args: string[], env: Record<string, string>, timeoutMs = 20_000): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [CLI, ...args], { env: cleanEnv(env), timeout: timeoutMs }, (error, stdout, stderr) => {
      children.delete(child);
      const code = error ? (typeof error.code === "number" ? error.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
    children.add(child);
  });
}

const quote = (word: string) => `'${word.replace(/'/g, `'\\''`)}'`;

/** Whether util-linux `script` is here to lend a pseudo-terminal. */
export function hasScript(): boolean {
  try {
    execFileSync("script", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Runs actionctl with stdout and stderr on a pseudo-terminal, as in a
 * person's shell. The terminal merges them (and writes \r\n): `stdout` is
 * everything, with plain \n, and `stderr` is empty. */
export function runInTerminal(args: string[], env: Record<string, string>, timeoutMs = 20_000): Promise<Run> {
  const command = [process.execPath, CLI, ...args].map(quote).join(" ");
  return new Promise((resolve) => {
    const child = execFile("script", ["-qec", command, "/dev/null"], { env: cleanEnv({ ...env, TERM: "dumb" }), timeout: timeoutMs }, (error, stdout) => {
      children.delete(child);
      const code = error ? (typeof error.code === "number" ? error.code : null) : 0;
      resolve({ code, stdout: stdout.replace(/\r\n/g, "\n"), stderr: "" });
    });
    children.add(child);
  });
}

/** A long-running actionctl (`events --follow`), its output gathered as it comes. */
export interface Running {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The JSON lines printed so far. */
  lines(): Json[];
}

export function startActionctl(args: string[], env: Record<string, string>): Running {
  const child = spawn(process.execPath, [CLI, ...args], { env: cleanEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    // 'close', not 'exit': output may still be unread at 'exit'.
    child.on("close", (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    }),
  );
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    lines: () =>
      stdout
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as Json),
  };
}

/** The helpers a test file uses against its server, whose address may be
 * read late (it is known only once beforeAll ran). */
export function actionctlAt(address: () => string, env: () => Record<string, string> = () => ({})) {
  const actionctl = (args: string[], addr = address()): Promise<Run> => runActionctl(args, { ...env(), ACTIONQ_ADDR: addr });

  /** Runs a command that must succeed and returns its JSON document. */
  async function ok(args: string[], addr = address()): Promise<Json> {
    const run = await actionctl(args, addr);
    if (run.code !== 0) throw new Error(`actionctl ${args.join(" ")} exited ${run.code}: ${run.stderr}`);
    return JSON.parse(run.stdout) as Json;
  }

  async function okLines(args: string[], addr = address()): Promise<Json[]> {
    const run = await actionctl(args, addr);
    if (run.code !== 0) throw new Error(`actionctl ${args.join(" ")} exited ${run.code}: ${run.stderr}`);
    return run.stdout
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line) as Json);
  }

  /** A refusal from the server: exit 1, nothing on stdout, one JSON error line. */
  async function refused(args: string[], addr = address(), exitCode = 1): Promise<Json> {
    const run = await actionctl(args, addr);
    expect(run.code, `${args.join(" ")}: ${run.stderr}`).toBe(exitCode);
    expect(run.stdout, args.join(" ")).toBe("");
    return errorOf(run);
  }

  /** A usage error: exit 2, nothing on stdout, commander's "error:" on stderr. */
  async function usageError(args: string[]): Promise<string> {
    const run = await actionctl(args);
    expect(run.code, args.join(" ")).toBe(2);
    expect(run.stdout, args.join(" ")).toBe("");
    expect(run.stderr, args.join(" ")).toMatch(/error:/);
    return run.stderr;
  }

  /** Follows until `count` JSON lines arrived. */
  async function followed(running: Running, count: number, what: string, timeoutMs = 15_000): Promise<Json[]> {
    await eventually(() => running.lines().length >= count, `${what} (stderr: ${running.stderr()})`, timeoutMs);
    return running.lines();
  }

  return { actionctl, ok, okLines, refused, usageError, followed };
}

/** The one JSON error line of a failed run. */
export function errorOf(run: Run): Json {
  const lines = run.stderr.trim().split("\n");
  expect(lines, run.stderr).toHaveLength(1);
  return (JSON.parse(lines[0]!) as Json).error as Json;
}
