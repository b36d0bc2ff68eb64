// Helpers for the schedule tests: calls over grpc-js with proto field names
// in lowerCamelCase, and direct reads of what the scheduler wrote.
import type { TestServer } from "./harness.js";
import type { WireAction, WireTimestamp } from "./wire.js";

export interface WireTick {
  tickTime: WireTimestamp;
  outcome: string;
  actionId: string;
  actionStatus: string;
  reason: string;
  backfill: boolean;
}

export interface WireSchedule {
  id: string;
  template: Record<string, unknown>;
  cron?: string;
  interval?: { seconds: string; nanos: number };
  clock?: string;
  timeZone: string;
  overlapPolicy: string;
  paused: boolean;
  pauseReason: string;
  owner: string;
  nextTickTime: WireTimestamp | null;
  lastTick: WireTick | null;
  revision: string;
  description: string;
}

export const seconds = (s: number) => ({ seconds: String(Math.floor(s)), nanos: Math.round((s % 1) * 1e9) });
export const at = (date: Date | string) => {
  const ms = new Date(date).getTime();
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
};

export function createSchedule(t: TestServer, schedule: Record<string, unknown>, owner = "human:owner") {
  return t.grpc.unary<{ schedule: WireSchedule }>("CreateSchedule", { schedule, owner });
}

export function getSchedule(t: TestServer, id: string) {
  return t.grpc.unary<{ schedule: WireSchedule; recentTicks: WireTick[]; upcomingTickTimes: WireTimestamp[] }>("GetSchedule", { id });
}

export function backfill(t: TestServer, id: string, start: Date | string, end: Date | string, extra: Record<string, unknown> = {}) {
  return t.grpc.unary<{ ticks: WireTick[] }>("BackfillSchedule", { id, startTime: at(start), endTime: at(end), actor: "human:owner", ...extra });
}

export function pauseSchedule(t: TestServer, id: string, actor = "human:owner") {
  return t.grpc.unary<{ schedule: WireSchedule; changed: boolean }>("PauseSchedule", { id, reason: "maintenance", actor });
}

export function resumeSchedule(t: TestServer, id: string, actor = "human:owner") {
  return t.grpc.unary<{ schedule: WireSchedule; changed: boolean }>("ResumeSchedule", { id, reason: "done", actor });
}

export function deleteSchedule(t: TestServer, id: string, actor = "human:owner") {
  return t.grpc.unary<{ schedule: WireSchedule }>("DeleteSchedule", { id, reason: "not needed", actor });
}

/** Actions the schedule `id` enqueued, per tick time (ms), straight from
 * the database. */
export async function actionsPerTick(t: TestServer, id: string): Promise<Map<number, number>> {
  const { rows } = await t.db.query<{ tick: Date; n: number }>(
    "SELECT schedule_tick_time AS tick, count(*)::int AS n FROM actions WHERE schedule_id = $1 GROUP BY 1 ORDER BY 1",
    [id],
  );
  return new Map(rows.map((row) => [row.tick.getTime(), row.n]));
}

export async function ticksOf(t: TestServer, id: string): Promise<{ tick_time: Date; outcome: string; action_id: string | null; reason: string }[]> {
  const { rows } = await t.db.query(
    `SELECT t.tick_time, t.outcome, t.action_id::text, t.reason FROM schedule_ticks t JOIN schedules s ON s.key = t.schedule_key
     WHERE s.id = $1 AND s.deleted_at IS NULL ORDER BY t.tick_time`,
    [id],
  );
  return rows;
}

export type ScheduledAction = WireAction & { scheduleId: string; scheduleTickTime: WireTimestamp | null };

/** Retries `fn` until it does not throw (an expect() that holds), for at
 * most `timeoutMs`; then throws its last error. */
export async function retrying<T>(fn: () => Promise<T>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${(error as Error).message}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
