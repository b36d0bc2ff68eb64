// Schema migrations: numbered plain .sql files in migrations/, each applied in
// its own transaction. Concurrent servers serialize on an advisory lock, and
// the bookkeeping row is written first so that a racing migrator would fail
// on the primary key rather than apply a file twice.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import type { Logger } from "pino";
import { migrationsDir } from "../paths.js";
import { clientConfig, quoteIdent } from "./db.js";

export interface Migration {
  id: number;
  name: string;
  file: string;
}

/** The migrations shipped with this version, in order. */
export function listMigrations(dir = migrationsDir): Migration[] {
  const migrations = readdirSync(dir)
    .filter((file) => file.endsWith(".sql"))
    .map((file) => {
      const match = /^(\d+)_([a-z0-9_]+)\.sql$/.exec(file);
      if (!match) throw new Error(`migration file ${file} is not named NNN_name.sql`);
      return { id: Number(match[1]), name: match[2]!, file: path.join(dir, file) };
    })
    .sort((a, b) => a.id - b.id);
  migrations.forEach((migration, index) => {
    if (migration.id !== index + 1) throw new Error(`migrations must be numbered 1, 2, 3...; found ${path.basename(migration.file)} at position ${index + 1}`);
  });
  return migrations;
}

const MIGRATION_LOCK = "SELECT pg_advisory_lock(1633907826, hashtext($1) & 2147483647)";
const MIGRATION_UNLOCK = "SELECT pg_advisory_unlock(1633907826, hashtext($1) & 2147483647)";

/** Brings the schema up to date. Returns the migrations it applied. */
export async function migrate(url: string, schema: string, log?: Logger): Promise<Migration[]> {
  const ident = quoteIdent(schema);
  const migrations = listMigrations();
  const client = new pg.Client(clientConfig(url, schema, "actionq-migrate"));
  await client.connect();
  const applied: Migration[] = [];
  try {
    await client.query(MIGRATION_LOCK, [schema]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${ident}`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${ident}.schema_migrations (
         id integer PRIMARY KEY,
         name text NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now()
       )`,
    );
    const { rows } = await client.query<{ id: number }>(`SELECT id FROM ${ident}.schema_migrations ORDER BY id`);
    const done = new Set(rows.map((row) => row.id));
    const unknown = [...done].filter((id) => !migrations.some((m) => m.id === id));
    if (unknown.length > 0) {
      log?.warn({ unknown }, "the database has migrations this server does not know: it is older than the schema");
    }
    for (const migration of migrations) {
      if (done.has(migration.id)) continue;
      const sql = readFileSync(migration.file, "utf8");
      await client.query("BEGIN");
      try {
        await client.query(`SET LOCAL search_path TO ${ident}`);
        await client.query(`INSERT INTO ${ident}.schema_migrations (id, name) VALUES ($1, $2)`, [migration.id, migration.name]);
        await client.query(sql);
        await client.query("COMMIT");
      } catch (error) {
        await client.query("ROLLBACK");
        throw new Error(`migration ${path.basename(migration.file)} failed: ${(error as Error).message}`, { cause: error });
      }
      log?.info({ migration: path.basename(migration.file), schema }, "applied migration");
      applied.push(migration);
    }
  } finally {
    await client.query(MIGRATION_UNLOCK, [schema]).catch(() => {});
    await client.end();
  }
  return applied;
}
