// The executor's local memory of the claims it holds, so that a restart
// (even after kill -9) finishes them instead of forgetting or repeating
// them. One small JSON file per claim, replaced atomically: a reader sees
// the old entry or the new one, never half of either.
import { mkdir, open, readFile, readdir, rename, unlink } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "../log.js";

export type Phase = "acked" | "applied";

export interface JournalEntry {
  /** The action id, as a decimal string (int64). */
  id: string;
  token: string;
  /** Which claim of the action this is: the same action claimed again is a
   * different claim with its own entry. */
  attempt: number;
  actionType: string;
  /** The mode the claim was taken in: a claim a live handler may have half
   * applied must not be finished by a simulation, nor the reverse. */
  mode: "simulate" | "live";
  /** "acked": the handler may or may not have run; "applied": it ran and
   * returned `resultRef`, only the completion is left. */
  phase: Phase;
  resultRef: string;
}

const ENTRY_FILE = /^action-(\d+)-attempt-(\d+)\.json$/;
const LOCK_FILE = "executor.pid";

export class JournalLockedError extends Error {}

export class Journal {
  private constructor(readonly dir: string) {}

  /** Creates the directory and takes it for this process: two executors
   * resuming the same entries would run the same claim twice. */
  static async open(dir: string): Promise<Journal> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await takeLock(path.join(dir, LOCK_FILE));
    return new Journal(dir);
  }

  /** Every entry left by earlier runs. A temporary file was never renamed
   * into place, so its claim was never acknowledged: it is discarded. */
  async entries(log: Logger): Promise<JournalEntry[]> {
    const entries: JournalEntry[] = [];
    for (const name of (await readdir(this.dir)).sort()) {
      if (name.endsWith(".tmp")) {
        await unlink(path.join(this.dir, name)).catch(() => {});
        continue;
      }
      if (!ENTRY_FILE.test(name)) continue;
      const entry = parseEntry(await readFile(path.join(this.dir, name), "utf8"));
      if (entry) entries.push(entry);
      // Left in place so that an operator can look at it; it cannot be
      // resumed without a token.
      else log.error({ file: path.join(this.dir, name) }, "unreadable journal entry; skipping it");
    }
    return entries;
  }

  /** Writes the entry durably: on disk, under its final name, before this
   * resolves. */
  async write(entry: JournalEntry): Promise<void> {
    const final = this.fileOf(entry);
    const temporary = `${final}.${process.pid}.tmp`;
    const file = await open(temporary, "w", 0o600);
    try {
      await file.writeFile(`${JSON.stringify(entry)}\n`);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temporary, final);
    await this.syncDirectory();
  }

  async remove(entry: Pick<JournalEntry, "id" | "attempt">): Promise<void> {
    await unlink(this.fileOf(entry)).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "ENOENT") throw error;
    });
    await this.syncDirectory();
  }

  /** Lets the next executor on this directory start. */
  async close(): Promise<void> {
    await unlink(path.join(this.dir, LOCK_FILE)).catch(() => {});
  }

  private fileOf(entry: Pick<JournalEntry, "id" | "attempt">): string {
    return path.join(this.dir, `action-${entry.id}-attempt-${entry.attempt}.json`);
  }

  /** A rename is durable only once the directory itself is synced. */
  private async syncDirectory(): Promise<void> {
    const directory = await open(this.dir, "r");
    try {
      await directory.sync();
    } finally {
      await directory.close();
    }
  }
}

function parseEntry(text: string): JournalEntry | undefined {
  try {
    const value = JSON.parse(text) as Partial<JournalEntry>;
    const valid =
      typeof value.id === "string" &&
      /^\d+$/.test(value.id) &&
      typeof value.token === "string" &&
      value.token !== "" &&
      Number.isInteger(value.attempt) &&
      typeof value.actionType === "string" &&
      (value.mode === "simulate" || value.mode === "live") &&
      (value.phase === "acked" || value.phase === "applied") &&
      typeof value.resultRef === "string";
    return valid ? (value as JournalEntry) : undefined;
  } catch {
    return undefined;
  }
}

/** A pid file: refused while the process named in it lives; taken over
 * when that process is gone (killed without a chance to remove it). */
async function takeLock(lockPath: string): Promise<void> {
  for (let tries = 0; tries < 3; tries++) {
    try {
      const file = await open(lockPath, "wx", 0o600);
      await file.writeFile(`${process.pid}\n`);
      await file.close();
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const holder = Number.parseInt(await readFile(lockPath, "utf8").catch(() => ""), 10);
    if (Number.isInteger(holder) && holder !== process.pid && processLives(holder)) {
      throw new JournalLockedError(`${path.dirname(lockPath)} is in use by the executor with pid ${holder}`);
    }
    await unlink(lockPath).catch(() => {});
  }
  throw new JournalLockedError(`could not lock ${path.dirname(lockPath)}: another executor keeps taking it`);
}

function processLives(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
