// How long callers wait for a pooled connection, for the pool saturation
// metrics. pg-pool reports how many wait but not for how long, so its
// connect() is wrapped on this one pool object; pool.query() takes its
// client through the same connect(), so every checkout is timed.
import { performance } from "node:perf_hooks";
import type pg from "pg";

type Connect = (callback?: (error: Error | undefined, client: pg.PoolClient | undefined, done: (release?: unknown) => void) => void) => unknown;

export function timeCheckouts(pool: pg.Pool, observe: (seconds: number) => void): void {
  const connect = pool.connect.bind(pool) as Connect;
  const timed: Connect = (callback) => {
    const started = performance.now();
    const waited = () => observe((performance.now() - started) / 1000);
    if (callback) {
      return connect((error, client, done) => {
        waited();
        callback(error, client, done);
      });
    }
    return (connect() as Promise<pg.PoolClient>).then((client) => {
      waited();
      return client;
    });
  };
  (pool as unknown as { connect: Connect }).connect = timed;
}
