// What the suites that run the examples share: a child process whose output
// is collected line by line and whose life is bounded, the Python worker's
// prerequisites and stubs, and a secure server with authentication on.
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { type Client, createClient } from "@connectrpc/connect";
import { ActionQueueService } from "../../gen/actionq/v1/action_queue_service_pb.js";
import { clientTransport } from "../../src/client-transport.js";
import { type Principal, removeAuthDirs, writeAuthFile } from "./auth.js";
import { type ServerEnv, type TestServer, startTestServer } from "./harness.js";
import { type Exit, packageRoot } from "./processes.js";
import { type TlsFixtures, createTlsFixtures } from "./tls-certs.js";

const execFileAsync = promisify(execFile);

export const PYTHON = "/usr/bin/python3";
export const pythonExampleDir = path.join(packageRoot, "examples", "python-worker");
const GRPC_PYTHON_PLUGIN = "/usr/bin/grpc_python_plugin";
const WELL_KNOWN_TYPES = "/usr/include/google/protobuf/timestamp.proto";

/** The client settings a developer's shell may hold; a child gets only
 * those its test gives it. */
const CLIENT_VARIABLES = [
  "ACTIONQ_ADDR",
  "ACTIONQ_TOKEN",
  "ACTIONQ_APPROVER_TOKEN",
  "ACTIONQ_TLS_CA",
  "ACTIONQ_TLS_CLIENT_CERT",
  "ACTIONQ_TLS_CLIENT_KEY",
  "WORKER_NAME",
];

const running = new Set<ExampleProcess>();

/** An example run as a child process, its stdout collected line by line. */
export class ExampleProcess {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  stderr = "";
  readonly exited: Promise<Exit>;
  private partial = "";

  constructor(
    readonly command: string,
    args: string[],
    options: { cwd?: string; env?: Record<string, string>; unset?: string[] } = {},
  ) {
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const name of [...CLIENT_VARIABLES, ...(options.unset ?? [])]) delete env[name];
    this.child = spawn(command, args, { cwd: options.cwd ?? packageRoot, env: { ...env, ...options.env }, stdio: ["ignore", "pipe", "pipe"] });
    running.add(this);
    this.child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      const lines = (this.partial + chunk).split("\n");
      this.partial = lines.pop()!;
      this.lines.push(...lines.filter((line) => line.trim() !== ""));
    });
    this.child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (this.stderr += chunk));
    this.exited = new Promise((resolve) => {
      // 'exit', not 'close': a walkthrough leaves processes of its own
      // (a server, a worker) holding the pipes after it ends.
      this.child.on("exit", (code, signal) => {
        running.delete(this);
        resolve({ code, signal });
      });
    });
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  get stdout(): string {
    return [...this.lines, this.partial].join("\n");
  }

  /** The last non-empty line of stderr. */
  lastErrorLine(): string {
    return this.stderr.trimEnd().split("\n").pop() ?? "";
  }

  output(): string {
    return `${this.command} stdout:\n${this.stdout}\nstderr (last 4000 characters):\n${this.stderr.slice(-4000)}`;
  }

  exitWithin(timeoutMs: number): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.command} did not exit within ${timeoutMs} ms\n${this.output()}`)), timeoutMs);
    });
    return Promise.race([this.exited, timeout]).finally(() => clearTimeout(timer));
  }

  stop(timeoutMs = 20_000): Promise<Exit> {
    this.child.kill("SIGTERM");
    return this.exitWithin(timeoutMs);
  }
}

/** For afterEach: kills every example still running and waits for it. */
export async function killExamples(): Promise<void> {
  for (const proc of [...running]) {
    if (proc.alive) proc.child.kill("SIGKILL");
    await proc.exitWithin(10_000).catch(() => {});
  }
}

/** Why the Python examples cannot run here, or undefined when they can. */
export function pythonSkipReason(): string | undefined {
  const imports = spawnSync(PYTHON, ["-c", "import grpc, google.protobuf"], { encoding: "utf8", timeout: 30_000 });
  if (imports.error || imports.status !== 0) {
    return `${PYTHON} cannot import grpc and google.protobuf (${imports.error?.message ?? imports.stderr.trim().split("\n").pop()}); apt-get install -y python3-grpcio python3-protobuf`;
  }
  const protoc = spawnSync("protoc", ["--version"], { encoding: "utf8", timeout: 30_000 });
  if (protoc.error || protoc.status !== 0) return "protoc is missing; apt-get install -y protobuf-compiler";
  if (!existsSync(GRPC_PYTHON_PLUGIN)) return `${GRPC_PYTHON_PLUGIN} is missing; apt-get install -y protobuf-compiler-grpc`;
  if (!existsSync(WELL_KNOWN_TYPES)) return `${WELL_KNOWN_TYPES} is missing; apt-get install -y libprotobuf-dev`;
  return undefined;
}

/** Generates the Python stubs into a new temporary directory (remove it
 * with `rm`). */
export async function generatePythonStubs(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "actionq-python-gen-"));
  await execFileAsync(path.join(pythonExampleDir, "generate.sh"), [dir], { timeout: 60_000 });
  return dir;
}

type ExampleKind<P extends ExampleProcess> = new (...args: ConstructorParameters<typeof ExampleProcess>) => P;

/** A script of examples/python-worker/ with the stubs in `genDir`; `kind`
 * is ExampleProcess or a subclass that reads its output. */
export function pythonExample<P extends ExampleProcess = ExampleProcess>(
  script: string,
  args: string[],
  genDir: string,
  env: Record<string, string> = {},
  kind: ExampleKind<P> = ExampleProcess as ExampleKind<P>,
): P {
  return new kind(PYTHON, [path.join(pythonExampleDir, script), ...args], {
    cwd: pythonExampleDir,
    env: { PYTHONPATH: genDir, PYTHONDONTWRITEBYTECODE: "1", ...env },
    unset: ["PYTHONHOME"],
  });
}

/** A server on TLS (certificates made in the run) that authenticates
 * callers with the bearer tokens of `principals`. */
export interface SecureServer {
  t: TestServer;
  /** `https://127.0.0.1:PORT` */
  url: string;
  tls: TlsFixtures;
  /** The environment a client needs to reach it as `principal`. */
  clientEnv(principal: Principal | { tokens: string[] }): Record<string, string>;
  /** A Connect client over gRPC and TLS, authenticated as `principal`. */
  client(principal: Principal): Client<typeof ActionQueueService>;
  close(): Promise<void>;
}

export async function startSecureServer(principals: Principal[], env: ServerEnv = {}): Promise<SecureServer> {
  const tls = await createTlsFixtures();
  const authFile = await writeAuthFile(principals);
  const t = await startTestServer({ ACTIONQ_AUTH_FILE: authFile, ACTIONQ_TLS_CERT: tls.server.certPath, ACTIONQ_TLS_KEY: tls.server.keyPath, ...env });
  const url = `https://127.0.0.1:${t.server.port}`;
  const clientEnv = (p: { tokens: string[] }) => ({ ACTIONQ_ADDR: url, ACTIONQ_TOKEN: p.tokens[0]!, ACTIONQ_TLS_CA: tls.ca.certPath });
  return {
    t,
    url,
    tls,
    clientEnv,
    client: (p) => createClient(ActionQueueService, clientTransport(url, clientEnv(p))),
    async close() {
      await t.close();
      await tls.remove();
      await removeAuthDirs();
    },
  };
}
