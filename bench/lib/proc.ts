// What a process costs, read from Linux's /proc: resident memory, CPU time,
// and which of its TCP connections go to PostgreSQL (matched to
// pg_stat_activity by client port, so that other servers on the same
// database, with the same application_name, are not counted).
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync, readlinkSync } from "node:fs";
import type pg from "pg";

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** Resident set size in MB; null when the process is gone. */
export function rssMb(pid: number): number | null {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** User plus system CPU time in ms; null when the process is gone. */
export function cpuMs(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name may hold spaces; the fields after it are fixed.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks * 1000) / ticksPerSecond();
  } catch {
    return null;
  }
}

function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return inodes;
  }
  for (const fd of fds) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match) inodes.add(match[1]!);
    } catch {
      // closed meanwhile
    }
  }
  return inodes;
}

/** Local ports of the process's established TCP connections to `remotePort`. */
export function localPortsTo(pid: number, remotePort: number): number[] {
  const inodes = socketInodes(pid);
  const ports: number[] = [];
  for (const table of ["tcp", "tcp6"]) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const [, local, remote, state] = cols;
      // 01 is ESTABLISHED.
      if (state !== "01" || !inodes.has(cols[9]!)) continue;
      if (parseInt(remote!.split(":")[1]!, 16) !== remotePort) continue;
      ports.push(parseInt(local!.split(":")[1]!, 16));
    }
  }
  return ports;
}

export function postgresPort(url: string): number {
  const port = new URL(url).port;
  return port ? Number(port) : 5432;
}

/** The PostgreSQL backends serving a process's connections. */
export async function backendsOf(db: pg.Pool | pg.Client, pid: number, url: string): Promise<{ pid: number; applicationName: string }[]> {
  const ports = localPortsTo(pid, postgresPort(url));
  if (ports.length === 0) return [];
  const { rows } = await db.query<{ pid: number; application_name: string }>(
    "SELECT pid, application_name FROM pg_stat_activity WHERE client_port = ANY($1::int[]) AND client_addr IN ('127.0.0.1', '::1')",
    [ports],
  );
  return rows.map((row) => ({ pid: row.pid, applicationName: row.application_name }));
}

/** CPU time of a set of processes, remembering the last reading of each so
 * that one that exits keeps its share. */
export class CpuMeter {
  private readonly start = new Map<number, number>();
  private readonly last = new Map<number, number>();

  /** Adds processes to follow from now on (a new one starts at its current
   * CPU time only if it was seen at the start, else from zero: it was born
   * during the measurement). */
  track(pids: Iterable<number>, fromZero = false): void {
    for (const pid of pids) {
      if (this.start.has(pid)) continue;
      const now = cpuMs(pid);
      if (now === null) continue;
      this.start.set(pid, fromZero ? 0 : now);
      this.last.set(pid, now);
    }
  }

  /** CPU ms used by the tracked processes since they were tracked. */
  read(): number {
    let total = 0;
    for (const [pid, begin] of this.start) {
      const now = cpuMs(pid);
      if (now !== null) this.last.set(pid, now);
      total += (this.last.get(pid) ?? begin) - begin;
    }
    return total;
  }
}
