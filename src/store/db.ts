// Connections to PostgreSQL. Nothing relies on session state: the store's
// SQL names actionq's schema before every table, sequence and function
// (SCHEMA_MARKER, replaced here on the way to pg), so a statement means the
// same whatever the connection's search_path, and a connection may be a
// transaction pooler's (PgBouncer with pool_mode = transaction). The schema
// is the only identifier ever put into SQL text, and only here.
import { createHash } from "node:crypto";
import pg from "pg";
import type { Logger } from "pino";
import { type Pooler, SCHEMA_PATTERN } from "../config.js";

// int8 (bigint) and numeric come back as strings by default; ids are bigints
// on the wire, so keep them exact and convert once, in the row mappers.

// The store writes the marker before every actionq table, sequence, type
// and function: FROM /*schema*/actions, /*schema*/rfc3339(...),
// nextval('/*schema*/actions_id_seq'). Left in place it is only a comment.
export const SCHEMA_MARKER = "/*schema*/";

/** Where the server's connections go. */
export interface Database {
  url: string;
  schema: string;
  /** `transaction`: the URL is a transaction pooler's, so connections send
   * no startup options and no named prepared statements. */
  pooler: Pooler;
}

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

/** Statement texts are constants of the store, so their rendered forms are
 * few; past this many a text is rendered anew on each call. */
const RENDERED_PER_SCHEMA = 2048;

/** The store's statements for one schema, rendered once each. */
class SchemaStatements {
  private readonly prefix: string;
  private readonly rendered = new Map<string, string>();

  constructor(schema: string) {
    this.prefix = `${quoteIdent(schema)}.`;
  }

  render(text: string): string {
    const cached = this.rendered.get(text);
    if (cached !== undefined) return cached;
    const out = text.replaceAll(SCHEMA_MARKER, this.prefix);
    if (this.rendered.size < RENDERED_PER_SCHEMA) this.rendered.set(text, out);
    return out;
  }
}

const statementsBySchema = new Map<string, SchemaStatements>();

/** `text` with every SCHEMA_MARKER replaced by the quoted schema and a dot. */
export function withSchema(schema: string, text: string): string {
  let statements = statementsBySchema.get(schema);
  if (!statements) {
    statements = new SchemaStatements(schema);
    statementsBySchema.set(schema, statements);
  }
  return statements.render(text);
}

/** Connection settings of one of the server's connections. Direct ones run
 * with jit=off: with a large backlog the planner's estimate for the claim
 * statement passes PostgreSQL's JIT thresholds, and JIT code is not kept
 * between executions, so every claim compiled about 170 functions first
 * (1.2 s a claim with 1.5M waiting, where the statement itself runs in
 * 3 ms). A transaction pooler refuses startup options (PgBouncer:
 * "unsupported startup parameter: options"), so there jit is the role's
 * or the database's setting: ALTER ROLE ... SET jit = off. */
export function connectionConfig(db: Database, applicationName: string): pg.ClientConfig {
  assertSchemaName(db.schema);
  return {
    connectionString: db.url,
    application_name: applicationName,
    ...(db.pooler === "transaction" ? {} : { options: "-c jit=off" }),
  };
}

/** Distinct statements one connection keeps prepared; past this, a
 * statement runs unnamed (parsed and planned each time), as before. */
const PREPARED_PER_CONNECTION = 256;

type QueryFn = (...args: unknown[]) => unknown;

/** Makes a client render the schema into every statement it runs and, on a
 * direct connection, run each statement that has parameters as a named
 * (prepared) statement: PostgreSQL parses and plans actionq's long
 * statements once per connection instead of on every call. A transaction
 * pooler may run the next statement on another server connection, where
 * the name means nothing (PgBouncer 1.18 keeps no prepared statements in
 * transaction mode), so there every statement goes unnamed. */
function adapt<C extends pg.Client | pg.PoolClient>(client: C, db: Database): C {
  const prepare = db.pooler !== "transaction";
  const names = new Map<string, string>();
  const query = client.query.bind(client) as QueryFn;
  (client as unknown as { query: QueryFn }).query = (text: unknown, values?: unknown, callback?: unknown) => {
    if (typeof text !== "string") {
      // A query config ({ text, values, ... }) or a Submittable.
      if (text !== null && typeof text === "object" && typeof (text as { text?: unknown }).text === "string") {
        const config = text as { text: string };
        return query({ ...config, text: withSchema(db.schema, config.text) }, values, callback);
      }
      return query(text, values, callback);
    }
    const sql = withSchema(db.schema, text);
    if (!prepare || !Array.isArray(values)) return query(sql, values, callback);
    let name = names.get(sql);
    if (name === undefined && names.size < PREPARED_PER_CONNECTION) {
      name = `aq_${createHash("sha1").update(sql).digest("hex").slice(0, 20)}`;
      names.set(sql, name);
    }
    return name === undefined ? query(sql, values, callback) : query({ name, text: sql, values }, callback);
  };
  return client;
}

/** A connection of its own (LISTEN, migrations, the webhook senders). */
export function createClient(db: Database, applicationName: string, extra: pg.ClientConfig = {}): pg.Client {
  return adapt(new pg.Client({ ...connectionConfig(db, applicationName), ...extra }), db);
}

export function createPool(db: Database, size: number, log?: Logger): pg.Pool {
  const pool = new pg.Pool({
    ...connectionConfig(db, "actionq"),
    max: size,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 10_000,
  });
  pool.on("connect", (client) => {
    adapt(client, db);
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

/** On a transaction pooler the startup option jit=off cannot be sent; says
 * so when the role or database leaves JIT on. */
export async function warnIfJitOn(pool: pg.Pool, db: Database, log: Logger): Promise<void> {
  if (db.pooler !== "transaction") return;
  const { rows } = await pool.query<{ jit: string }>("SELECT current_setting('jit') AS jit");
  if (rows[0]?.jit === "on") {
    log.warn(
      "jit is on for actionq's connections through the pooler: JIT compiles the claim statement anew on every execution once the backlog is large. Run ALTER ROLE <actionq's role> SET jit = off (see docs/operations.md)",
    );
  }
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
