// Autovacuum on for the `sustained-autovacuum` variant: the machine the
// bench grew up on runs PostgreSQL with autovacuum off, a real one has it
// on. As superuser, ALTER SYSTEM SET autovacuum = on and reload, then put
// back exactly what was there (the previous ALTER SYSTEM value, or none),
// also on Ctrl-C or SIGTERM. Where ALTER SYSTEM is refused (no superuser, a
// managed or embedded server) or cannot take effect (autovacuum set on the
// server's command line), the variant is skipped with the reason.
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";

export interface AutovacuumOverride {
  /** The setting before; `restore()` puts it back (once; later calls wait for the first). */
  previous: string;
  restore(): Promise<void>;
}

interface Setting {
  setting: string;
  /** Whether it comes from postgresql.auto.conf, i.e. an earlier ALTER SYSTEM. */
  fromAlterSystem: boolean;
}

async function withClient<T>(url: string, use: (db: pg.Client) => Promise<T>): Promise<T> {
  const db = new pg.Client({ connectionString: url, application_name: "actionq-bench-autovacuum" });
  await db.connect();
  try {
    return await use(db);
  } finally {
    await db.end().catch(() => {});
  }
}

async function current(db: pg.Client): Promise<Setting> {
  const { rows } = await db.query<{ setting: string; sourcefile: string | null }>("SELECT setting, sourcefile FROM pg_settings WHERE name = 'autovacuum'");
  return { setting: rows[0]!.setting, fromAlterSystem: rows[0]!.sourcefile?.endsWith("postgresql.auto.conf") ?? false };
}

/** Reloads the configuration and waits until a new session sees `want`. */
async function reloadUntil(url: string, db: pg.Client, want: string): Promise<boolean> {
  await db.query("SELECT pg_reload_conf()");
  for (let attempt = 0; attempt < 50; attempt++) {
    // A new session reads the configuration the postmaster has reloaded.
    if ((await withClient(url, current)).setting === want) return true;
    await sleep(100);
  }
  return false;
}

/** Turns autovacuum on for the whole cluster, or says why it cannot. */
export async function autovacuumOn(url: string): Promise<AutovacuumOverride | { skipped: string }> {
  return withClient(url, async (db) => {
    const before = await current(db);
    if (before.setting === "on") return { previous: "on", restore: async () => {} };
    try {
      await db.query("ALTER SYSTEM SET autovacuum = on");
    } catch (error) {
      return { skipped: `ALTER SYSTEM is not allowed on this server (${(error as Error).message})` };
    }
    let restoring: Promise<void> | undefined;
    const restore = (): Promise<void> => {
      restoring ??= withClient(url, async (again) => {
        if (before.fromAlterSystem) await again.query(`ALTER SYSTEM SET autovacuum = ${before.setting === "on" ? "on" : "off"}`);
        else await again.query("ALTER SYSTEM RESET autovacuum");
        if (!(await reloadUntil(url, again, before.setting))) throw new Error(`autovacuum did not return to ${before.setting} after the reload`);
      }).finally(() => {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
      });
      return restoring;
    };
    // A Ctrl-C or kill during the variant must not leave the server changed.
    const onSignal = (signal: NodeJS.Signals) => {
      process.stderr.write(`bench: ${signal}: setting autovacuum back to ${before.setting}\n`);
      restore().then(
        () => process.exit(signal === "SIGINT" ? 130 : 143),
        (error: unknown) => {
          process.stderr.write(`bench: could not set autovacuum back to ${before.setting}: ${(error as Error).message}\n`);
          process.exit(1);
        },
      );
    };
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    if (!(await reloadUntil(url, db, "on"))) {
      await restore();
      return { skipped: "autovacuum stayed off after ALTER SYSTEM and a reload (set on the server's command line?)" };
    }
    return { previous: before.setting, restore };
  });
}

/** The autovacuum setting in force, for the record of a run. */
export async function autovacuumSetting(db: pg.Client): Promise<string> {
  return (await current(db)).setting;
}
