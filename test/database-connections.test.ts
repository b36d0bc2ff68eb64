// The server's pool under connection loss: PostgreSQL may end any
// connection at any time (a fast shutdown, a failover, an operator's
// pg_terminate_backend), including one the server holds between two
// statements. That must cost a failed statement at most, never the process.
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, closeWithin, startTestServer } from "./support/harness.js";
import { eventually } from "./support/wait.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await closeWithin(t);
});

const alive = async (pid: number) => (await t.db.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1", [pid])).rows[0].n === 1;

describe("database connections", () => {
  it("a connection ended while checked out and idle between statements does not end the server", async () => {
    // pg-pool takes its own 'error' listener off a client it hands out; the
    // FATAL that PostgreSQL sends before closing then reaches a client that
    // runs no statement. Without a listener of the server's, Node throws it.
    const client: pg.PoolClient = await t.server.pool.connect();
    const pid = (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid;
    await t.db.query("SELECT pg_terminate_backend($1)", [pid]);
    await eventually(async () => !(await alive(pid)), "the backend to end");
    // Give the FATAL time to arrive and be handled (or thrown).
    await new Promise((resolve) => setTimeout(resolve, 300));
    await expect(client.query("SELECT 1")).rejects.toThrow();
    client.release(true);

    // The server goes on, on a fresh connection.
    const { action } = await t.grpc.unary<{ action: { id: string } }>("EnqueueAction", { actionType: "after_loss", createdBy: "human:ann" });
    expect(action.id).toMatch(/^\d+$/);
  });

  it("every connection of the pool ended at once costs no request once the pool has replaced them", async () => {
    await Promise.all(Array.from({ length: 6 }, (_, i) => t.grpc.unary("EnqueueAction", { actionType: "warm", createdBy: "human:ann", target: `t${i}` })));
    // This server's pool only: other test files' servers share the
    // database (and the application name) and must not lose theirs.
    const pool = t.server.pool;
    const held: pg.PoolClient[] = [];
    for (let i = pool.idleCount; i > 0; i--) held.push(await pool.connect());
    const pids = await Promise.all(held.map(async (client) => (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid));
    for (const client of held) client.release();
    const { rows } = await t.db.query<{ n: number }>("SELECT count(pg_terminate_backend(pid))::int AS n FROM unnest($1::int[]) AS pid", [pids]);
    expect(rows[0]!.n).toBeGreaterThan(0);
    // Idle clients that lost their connection leave the pool; a request may
    // meet one that has not noticed yet and fail UNAVAILABLE, never crash.
    await eventually(async () => {
      try {
        await t.grpc.unary("EnqueueAction", { actionType: "after_mass_loss", createdBy: "human:ann" });
        return true;
      } catch {
        return false;
      }
    }, "an enqueue to succeed again");
    const listed = await t.grpc.unary<{ actions: unknown[] }>("ListActions", { actionTypes: ["after_mass_loss"] });
    expect(listed.actions.length).toBeGreaterThanOrEqual(1);
  });
});
