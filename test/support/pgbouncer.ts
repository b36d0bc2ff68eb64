// A real PgBouncer in transaction mode in front of the run's PostgreSQL,
// on a free loopback port, its config and auth file in a temp dir. Tests
// that need it skip themselves with PGBOUNCER_MISSING when the binary is
// absent (Debian: apt-get install pgbouncer; .ci/run installs it).
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort } from "./processes.js";

const BINARY = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer"].find((file) => existsSync(file));

/** Why PgBouncer tests cannot run here, or undefined when they can. */
export const PGBOUNCER_MISSING = BINARY ? undefined : "pgbouncer is not installed (Debian: apt-get install pgbouncer): the PgBouncer tests are skipped";

export interface PgBouncer {
  /** The same database, user and password as `upstream`, through PgBouncer. */
  url: string;
  /** Everything PgBouncer logged, for a failing test's message. */
  log(): string;
  stop(): Promise<void>;
  /** Kills it with SIGKILL (a crash: every client connection drops at
   * once), for the fault scenarios. */
  kill(): Promise<void>;
  /** Its port, to start another on the same one. */
  port: number;
}

/** libpq connection-string value: quoted, with quotes and backslashes escaped. */
const quoted = (value: string) => `'${value.replace(/['\\]/g, (c) => `\\${c}`)}'`;

/** Starts PgBouncer (pool_mode = transaction) in front of `upstream`, a
 * postgres:// URL; resolves once it accepts connections. `connectQuery`
 * runs on each new server connection. */
export async function startPgBouncer(upstream: string, options: { connectQuery?: string; port?: number } = {}): Promise<PgBouncer> {
  if (!BINARY) throw new Error(PGBOUNCER_MISSING);
  const target = new URL(upstream);
  const user = decodeURIComponent(target.username || "postgres");
  const password = decodeURIComponent(target.password);
  const database = decodeURIComponent(target.pathname.slice(1)) || user;
  // A Unix socket directory (the embedded PostgreSQL's) comes percent-encoded.
  const host = decodeURIComponent(target.hostname).replace(/^\[(.*)\]$/, "$1") || "127.0.0.1";
  const port = options.port ?? (await freePort());
  const dir = await mkdtemp(path.join(tmpdir(), "actionq-pgbouncer-"));
  // Run as root, PgBouncer must be told a user to become, who reads these files.
  const asRoot = process.getuid?.() === 0;
  await chmod(dir, 0o755);
  const server = [`host=${quoted(host)}`, `port=${target.port || "5432"}`, `dbname=${quoted(database)}`, `user=${quoted(user)}`];
  if (password) server.push(`password=${quoted(password)}`);
  // Run on every new server connection: a search_path there shows what the
  // client's statements may not rely on.
  if (options.connectQuery) server.push(`connect_query=${quoted(options.connectQuery)}`);
  const config = [
    "[databases]",
    `${/^\w+$/.test(database) ? database : JSON.stringify(database)} = ${server.join(" ")}`,
    "[pgbouncer]",
    "listen_addr = 127.0.0.1",
    `listen_port = ${port}`,
    "unix_socket_dir =",
    "auth_type = trust",
    `auth_file = ${path.join(dir, "userlist.txt")}`,
    "pool_mode = transaction",
    // What pg and psql may send that PgBouncer does not track itself.
    "ignore_startup_parameters = extra_float_digits",
    "max_client_conn = 500",
    "default_pool_size = 40",
    "server_reset_query =",
    // A PostgreSQL that cannot be reached fails the test instead of hanging it.
    "server_connect_timeout = 5",
    "query_wait_timeout = 20",
    "admin_users =",
    ...(asRoot ? ["user = postgres"] : []),
  ];
  await writeFile(path.join(dir, "pgbouncer.ini"), `${config.join("\n")}\n`, { mode: 0o644 });
  await writeFile(path.join(dir, "userlist.txt"), `${JSON.stringify(user)} ${JSON.stringify(password)}\n`, { mode: 0o644 });
  if (asRoot) execFileSync("chown", ["-R", "postgres", dir]);

  let output = "";
  const child: ChildProcess = spawn(BINARY, [path.join(dir, "pgbouncer.ini")], { stdio: ["ignore", "pipe", "pipe"] });
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGINT");
      const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await acceptsConnections(port, () => child.exitCode !== null, 10_000);
  } catch (error) {
    await stop();
    throw new Error(`PgBouncer did not start: ${(error as Error).message}\n${output}`);
  }
  const url = new URL(upstream);
  url.hostname = "127.0.0.1";
  url.port = String(port);
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  };
  return { url: url.toString(), log: () => output, stop, kill, port };
}

async function acceptsConnections(port: number, died: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (died()) throw new Error("it exited");
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
