// Schema migrations: numbered plain .sql files in migrations/, each applied in
// its own transaction. Concurrent servers serialize on a transaction-scoped
// advisory lock, and the bookkeeping row is written first so that a racing
// migrator would fail on the primary key rather than apply a file twice.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { Logger } from "pino";
import { migrationsDir } from "../paths.js";
import { type Database, createClient, quoteIdent } from "./db.js";

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

// Transaction-scoped, so that it works through a transaction pooler too:
// every transaction of a migrator takes it first and reads the bookkeeping
// again under it. 1633907826: actionq's second advisory-lock class.
const MigrationLock = "SELECT pg_advisory_xact_lock(1633907826, hashtext($1) & 2147483647)";
const MigrationApplied = "SELECT EXISTS (SELECT 1 FROM /*schema*/schema_migrations WHERE id = $1) AS applied";
const MigrationRecord = "INSERT INTO /*schema*/schema_migrations (id, name) VALUES ($1, $2)";

/** Brings the schema up to date. Returns the migrations it applied. Works
 * on a direct connection and through a transaction pooler alike: nothing
 * outlives a transaction (the lock, the search path each file runs with),
 * and each migration is one transaction that takes the lock and checks
 * the bookkeeping table before it applies its file. */
export async function migrate(db: Database, log?: Logger): Promise<Migration[]> {
  const { schema } = db;
  const ident = quoteIdent(schema);
  const migrations = listMigrations();
  const client = createClient(db, "actionq-migrate");
  await client.connect();
  const applied: Migration[] = [];
  const inLockedTransaction = async <T>(fn: () => Promise<T>): Promise<T> => {
    await client.query("BEGIN");
    try {
      await client.query(MigrationLock, [schema]);
      const result = await fn();
      await client.query("COMMIT");
      return result;
    } catch (error) {
      await client.query("ROLLBACK").catch(() => {});
      throw error;
    }
  };
  try {
    const done = await inLockedTransaction(async () => {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${ident}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS /*schema*/schema_migrations (
           id integer PRIMARY KEY,
           name text NOT NULL,
           applied_at timestamptz NOT NULL DEFAULT now()
         )`,
      );
      const { rows } = await client.query<{ id: number }>("SELECT id FROM /*schema*/schema_migrations ORDER BY id");
      return new Set(rows.map((row) => row.id));
    });
    const unknown = [...done].filter((id) => !migrations.some((m) => m.id === id));
    if (unknown.length > 0) {
      log?.warn({ unknown }, "the database has migrations this server does not know: it is older than the schema");
    }
    for (const migration of migrations) {
      if (done.has(migration.id)) continue;
      const sql = readFileSync(migration.file, "utf8");
      const ran = await inLockedTransaction(async () => {
        // Another migrator may have applied it while this one waited.
        const { rows } = await client.query<{ applied: boolean }>(MigrationApplied, [migration.id]);
        if (rows[0]!.applied) return false;
        // The files use unqualified names: they run with the schema as
        // their search path, for this transaction only.
        await client.query(`SET LOCAL search_path TO ${ident}`);
        await client.query(MigrationRecord, [migration.id, migration.name]);
        await client.query(sql);
        return true;
      }).catch((error: Error) => {
        throw new Error(`migration ${path.basename(migration.file)} failed: ${error.message}`, { cause: error });
      });
      if (!ran) continue;
      log?.info({ migration: path.basename(migration.file), schema }, "applied migration");
      applied.push(migration);
    }
  } finally {
    await client.end();
  }
  return applied;
}
