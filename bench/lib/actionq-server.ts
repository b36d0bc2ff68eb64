// An `actionq serve` child process for the bench, on a free loopback port,
// with its admin endpoint on another, and a client over gRPC (grpc-js by
// default, BENCH_CLIENT=connect for the generated Connect client). Logs stay at warn: at info the server writes one line per RPC, and
// then no "serving" line can be read either, so readiness is the first
// answered RPC.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ActionQueueService } from "../../gen/actionq/v1/action_queue_service_pb.js";
import { createGrpcJsClient } from "./grpc-client.js";

export type ActionqClient = Client<typeof ActionQueueService>;

/** The repository root: the nearest directory up with package.json and dist/src. */
export function packageRoot(): string {
  let dir = import.meta.dirname;
  for (;;) {
    if (existsSync(path.join(dir, "package.json")) && existsSync(path.join(dir, "dist", "src", "cli", "actionq.js"))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error("cannot find the actionq package root with a built dist/src/cli/actionq.js (run npm run build)");
    dir = up;
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** The client library the bench's producers, workers and watchers use. */
export const CLIENT = process.env.BENCH_CLIENT === "connect" ? "connect" : "grpc-js";

/** A client on its own HTTP/2 connection. */
export function connect(address: string): ActionqClient {
  if (CLIENT === "grpc-js") return createGrpcJsClient(ActionQueueService, address);
  return createClient(ActionQueueService, createGrpcTransport({ baseUrl: `http://${address}` }));
}

/** Settings for the server under test: ACTIONQ_* from BENCH_ACTIONQ_* of
 * the harness's environment (e.g. BENCH_ACTIONQ_POOL_SIZE=20), for
 * experiments, plus the ones the bench needs. */
function serverEnv(url: string, schema: string, port: number, metricsPort: number): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (name.startsWith("ACTIONQ_")) continue;
    env[name] = value;
    if (name.startsWith("BENCH_ACTIONQ_")) env[name.slice("BENCH_".length)] = value;
  }
  return {
    // Every bench client comes from 127.0.0.1 without credentials, so the
    // per-principal stream caps (per client address without auth) would
    // count a thousand simulated workers as one.
    ACTIONQ_MAX_STREAMS_PER_PRINCIPAL: "100000",
    ACTIONQ_MAX_WATCHERS_PER_PRINCIPAL: "100000",
    ...env,
    ACTIONQ_URL: url,
    ACTIONQ_SCHEMA: schema,
    ACTIONQ_LISTEN: `127.0.0.1:${port}`,
    ACTIONQ_METRICS_LISTEN: `127.0.0.1:${metricsPort}`,
    ACTIONQ_LOG_LEVEL: process.env.BENCH_ACTIONQ_LOG_LEVEL ?? "warn",
  };
}

export class ActionqServerProcess {
  private output = "";
  private exit: { code: number | null; signal: string | null } | undefined;
  private readonly exited: Promise<void>;

  private constructor(
    readonly child: ChildProcess,
    readonly address: string,
    readonly metricsAddress: string,
  ) {
    const keep = (chunk: string) => {
      this.output = (this.output + chunk).slice(-20_000);
    };
    child.stdout!.setEncoding("utf8").on("data", keep);
    child.stderr!.setEncoding("utf8").on("data", keep);
    this.exited = new Promise((resolve) =>
      child.on("exit", (code, signal) => {
        this.exit = { code, signal };
        resolve();
      }),
    );
  }

  /** The last of what the server wrote, for diagnosing a failure. */
  get recentOutput(): string {
    return this.output;
  }

  get pid(): number {
    return this.child.pid!;
  }

  static async start(url: string, schema: string): Promise<ActionqServerProcess> {
    return ActionqServerProcess.spawnReady((port, metricsPort) => ({
      script: path.join("dist", "src", "cli", "actionq.js"),
      args: ["serve"],
      env: serverEnv(url, schema, port, metricsPort),
    }));
  }

  /** The RPC floor (rpc-floor-server.ts) instead of actionq: the same
   * contract for the bench's calls, no database. It has no admin endpoint. */
  static async startFloor(): Promise<ActionqServerProcess> {
    return ActionqServerProcess.spawnReady((port) => ({
      script: path.join("dist", "bench", "lib", "rpc-floor-server.js"),
      args: [String(port)],
      env: process.env,
    }));
  }

  private static async spawnReady(
    command: (port: number, metricsPort: number) => { script: string; args: string[]; env: NodeJS.ProcessEnv },
  ): Promise<ActionqServerProcess> {
    const root = packageRoot();
    // Another process may take the free port between probe and bind; try again then.
    for (let attempt = 1; ; attempt++) {
      const [port, metricsPort] = [await freePort(), await freePort()];
      const { script, args, env } = command(port, metricsPort);
      // BENCH_ACTIONQ_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", profiles the server.
      const nodeArgs = (process.env.BENCH_ACTIONQ_NODE_ARGS ?? "").split(" ").filter(Boolean);
      const child = spawn(process.execPath, [...nodeArgs, path.join(root, script), ...args], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
      const server = new ActionqServerProcess(child, `127.0.0.1:${port}`, `127.0.0.1:${metricsPort}`);
      try {
        await server.ready(120_000);
        return server;
      } catch (error) {
        await server.stop();
        if (attempt < 3 && /EADDRINUSE/.test(server.output)) continue;
        throw error;
      }
    }
  }

  private async ready(timeoutMs: number): Promise<void> {
    const client = connect(this.address);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.exit) throw new Error(`actionq serve exited (${JSON.stringify(this.exit)}) before serving:\n${this.output}`);
      try {
        await client.getQueueStats({}, { timeoutMs: 2000 });
        return;
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`actionq serve did not answer within ${timeoutMs} ms: ${(error as Error).message}\n${this.output}`);
      }
      await sleep(100);
    }
  }

  /** One value from the Prometheus endpoint, summed over its label sets. */
  async metric(name: string): Promise<number> {
    const response = await fetch(`http://${this.metricsAddress}/metrics`);
    const text = await response.text();
    let total = 0;
    for (const line of text.split("\n")) {
      if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) total += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
    return total;
  }

  async stop(): Promise<void> {
    if (this.exit) return;
    this.child.kill("SIGTERM");
    const killed = sleep(15_000).then(() => {
      if (!this.exit) this.child.kill("SIGKILL");
    });
    await Promise.race([this.exited, killed]);
    await this.exited;
  }
}
