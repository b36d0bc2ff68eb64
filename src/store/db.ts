// Connections to PostgreSQL. Every connection starts with search_path set to
// the actionq schema, so the SQL elsewhere uses unqualified table names and
// the schema is the only identifier ever put into SQL text.
import { createHash } from "node:crypto";
import pg from "pg";
import type { Logger } from "pino";
import { SCHEMA_PATTERN } from "../config.js";

// int8 (bigint) and numeric come back as strings by default; ids are bigints
// on the wire, so keep them exact and convert once, in the row mappers.

export function assertSchemaName(schema: string): void {
  if (!SCHEMA_PATTERN.test(schema)) {
    throw new Error(
      `schema name ${JSON.stringify(schema)} is not a plain identifier (letters, digits and underscores, not starting with a digit, at most 48 characters)`,
    );
  }
}

export function quoteIdent(schema: string): string {
  assertSchemaName(schema);
  return `"${schema}"`;
}

/** The NOTIFY channel of a schema. Matches 'actionq_' || TG_TABLE_SCHEMA in
 * the triggers. */
export function channelName(schema: string): string {
  assertSchemaName(schema);
  return `actionq_${schema}`;
}

export function clientConfig(url: string, schema: string, applicationName: string): pg.ClientConfig {
  assertSchemaName(schema);
  return {
    connectionString: url,
    application_name: applicationName,
    // The schema is validated above: it cannot carry quotes or spaces.
    // jit=off: with a large backlog the planner's estimate for the claim
    // statement passes PostgreSQL's JIT thresholds, and JIT code is not
    // kept between executions, so every claim compiled about 170
    // functions first: 1.2 s a claim with 1.5M waiting, where the
    // statement itself runs in 3 ms. Nothing actionq runs is long enough
    // for JIT to pay off.
    options: `-c search_path="${schema}" -c jit=off`,
  };
}

/** Distinct statements one connection keeps prepared; past this, a
 * statement runs unnamed (parsed and planned each time), as before. */
const PREPARED_PER_CONNECTION = 256;

/** Runs every statement that has parameters as a named (prepared)
 * statement: PostgreSQL parses and plans actionq's long statements once per
 * connection instead of on every call. Statement texts are constants of the
 * store, so the names stay few. */
function prepareStatements(client: pg.PoolClient): void {
  const names = new Map<string, string>();
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as unknown as { query: (...args: unknown[]) => unknown }).query = (text: unknown, values?: unknown, callback?: unknown) => {
    if (typeof text !== "string" || !Array.isArray(values)) return query(text, values, callback);
    let name = names.get(text);
    if (name === undefined && names.size < PREPARED_PER_CONNECTION) {
      name = `aq_${createHash("sha1").update(text).digest("hex").slice(0, 20)}`;
      names.set(text, name);
    }
    return name === undefined ? query(text, values, callback) : query({ name, text, values }, callback);
  };
}

export function createPool(url: string, schema: string, size: number, log?: Logger): pg.Pool {
  const pool = new pg.Pool({
    ...clientConfig(url, schema, "actionq"),
    max: size,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 10_000,
  });
  pool.on("connect", (client) => {
    prepareStatements(client);
    // pg-pool listens for 'error' only while a client is idle. A checked-out
    // client that is between statements has no listener of the pool's, and
    // pool.connect() hands a client over one microtask after taking the
    // pool's listener off: a FATAL that arrives in that window (a server
    // shutting down sends ReadyForQuery then 57P01 in one packet) would be
    // an unhandled 'error' and end the process. The client is then marked
    // not queryable; its next statement fails and its holder releases it as
    // broken.
    client.on("error", (error) => log?.debug({ err: error.message }, "a database connection in use was lost"));
  });
  // An idle client that loses its connection emits 'error' on the pool; the
  // pool drops it and makes a new one on demand. Without a listener Node
  // would crash the process.
  pool.on("error", (error) => log?.warn({ err: error.message }, "an idle database connection was lost"));
  return pool;
}

/** A pool (each query its own transaction) or a client inside one. */
export type Queryable = Pick<pg.Pool, "query">;

/** Runs fn inside BEGIN/COMMIT on one pooled connection; rolls back on any
 * error. */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  // pg-pool removes its error listener while a client is checked out: a
  // connection terminated between two statements would emit 'error' with
  // no listener and crash the process. The failing query reports it.
  const onError = () => {
    broken = true;
  };
  client.on("error", onError);
  try {
    await client.query("BEGIN");
    const result = await fn(client);
    await client.query("COMMIT");
    return result;
  } catch (error) {
    try {
      await client.query("ROLLBACK");
    } catch {
      broken = true;
    }
    throw error;
  } finally {
    client.off("error", onError);
    client.release(broken);
  }
}
