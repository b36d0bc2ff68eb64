// Where the time goes during a measured window: wall time, and CPU time of
// the server process, of the PostgreSQL backends serving it, and of the
// bench process itself (clients: workers, producers, watchers).
import { performance } from "node:perf_hooks";
import type pg from "pg";
import { CpuMeter, backendsOf, cpuMs } from "./proc.js";

export interface Window {
  wallMs: number;
  serverCpuMs: number | null;
  pgCpuMs: number | null;
  clientCpuMs: number;
}

export class WindowMeter {
  private readonly startedAt = performance.now();
  private readonly client = process.cpuUsage();
  private readonly serverStart: number | null;
  private readonly pg = new CpuMeter();

  private constructor(
    private readonly db: pg.Pool,
    private readonly url: string,
    /** The process whose PostgreSQL backends count; the bench itself when null. */
    private readonly serverPid: number | null,
  ) {
    this.serverStart = serverPid === null ? null : cpuMs(serverPid);
  }

  static async start(db: pg.Pool, url: string, serverPid: number | null, extraBackends: number[] = []): Promise<WindowMeter> {
    const meter = new WindowMeter(db, url, serverPid);
    meter.pg.track(extraBackends);
    meter.pg.track((await backendsOf(db, serverPid ?? process.pid, url)).map((b) => b.pid));
    return meter;
  }

  async stop(): Promise<Window> {
    // Backends opened during the window count from their birth.
    const now = await backendsOf(this.db, this.serverPid ?? process.pid, this.url);
    this.pg.track(
      now.map((b) => b.pid),
      true,
    );
    const wallMs = performance.now() - this.startedAt;
    const used = process.cpuUsage(this.client);
    const serverNow = this.serverPid === null ? null : cpuMs(this.serverPid);
    return {
      wallMs,
      serverCpuMs: this.serverStart !== null && serverNow !== null ? serverNow - this.serverStart : null,
      pgCpuMs: this.pg.read(),
      clientCpuMs: (used.user + used.system) / 1000,
    };
  }
}

/** CPU ms per action of a window, as metrics with a prefix. */
export function cpuPerAction(window: Window, actions: number, prefix = ""): Record<string, number | null> {
  const per = (ms: number | null) => (ms === null || actions === 0 ? null : ms / actions);
  return {
    [`${prefix}server_cpu_ms_per_action`]: per(window.serverCpuMs),
    [`${prefix}pg_cpu_ms_per_action`]: per(window.pgCpuMs),
    [`${prefix}client_cpu_ms_per_action`]: per(window.clientCpuMs),
  };
}
