// The run's PostgreSQL (started once by global-setup.ts) and the schemas
// that keep each test file, and each fault scenario, apart on it.
import { randomBytes } from "node:crypto";
import pg from "pg";
import { inject } from "vitest";

export function databaseUrl(): string {
  return inject("databaseUrl");
}

/** Where a test server's pool connects: the database itself, or a PgBouncer
 * in transaction mode in front of it (ACTIONQ_TEST_PGBOUNCER=1). */
export function serverDatabaseUrl(): string {
  return inject("serverDatabaseUrl");
}

/** A connection for checking what the server wrote, with the schema as its
 * search path so that tests can use plain table names. The server's own
 * connections set no search path. */
export function inspectionConfig(url: string, schema: string, applicationName = "actionq-test"): pg.ClientConfig {
  return { connectionString: url, application_name: applicationName, options: `-c search_path="${schema}"` };
}

/** A schema name nobody else uses; `label` says whose it is when one is left behind. */
export function freshSchema(label?: string): string {
  return label ? `t_${label}_${randomBytes(4).toString("hex")}` : `t_${randomBytes(6).toString("hex")}`;
}

/** Drops a schema, quietly: the database it lived in may be gone already. */
export async function dropSchema(url: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  client.on("error", () => {});
  try {
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } catch {
    // The database of this scenario may be gone already.
  } finally {
    await client.end().catch(() => {});
  }
}
