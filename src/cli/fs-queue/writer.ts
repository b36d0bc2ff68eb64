// Writing the old layout so that its readers never see half a file: every
// document and the cursor are written beside their place under a dotted
// temporary name and renamed into it; history.log only grows, and its size
// is saved in the cursor with the last event it holds.
import { mkdir, open, readFile, rename, stat, truncate, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { DIRECTORIES, HISTORY_FILE, type ActionDocument, type OldStatus, directoryOf, documentText } from "./layout.js";

export const CURSOR_FILE = ".actionq-export.json";

/** Where an export stands: the server it follows, the last event written,
 * and history.log's length then. */
export interface Cursor {
  server: string;
  after_event_id: string;
  history_bytes: number;
}

async function writeAtomically(file: string, text: string): Promise<void> {
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}`);
  await writeFile(temporary, text);
  await rename(temporary, file);
}

/** The status a document's text says, whatever its spacing; undefined if
 * it is not a JSON object. */
function statusIn(text: string): unknown {
  try {
    return (JSON.parse(text) as { status?: unknown } | null)?.status;
  } catch {
    return undefined;
  }
}

const ignoreMissing = (error: NodeJS.ErrnoException) => {
  if (error.code !== "ENOENT") throw error;
};

export class TreeWriter {
  constructor(readonly root: string) {}

  async prepare(): Promise<void> {
    for (const directory of DIRECTORIES) await mkdir(path.join(this.root, directory), { recursive: true });
  }

  /** The document in its directory, then gone from the other five: a
   * reader may see it in two places for a moment, never in none. */
  async writeDocument(document: ActionDocument): Promise<string> {
    const name = `${document.action_id}.json`;
    const directory = directoryOf(document.status);
    await writeAtomically(path.join(this.root, directory, name), documentText(document));
    for (const other of DIRECTORIES) if (other !== directory) await unlink(path.join(this.root, other, name)).catch(ignoreMissing);
    return `${directory}/${name}`;
  }

  /** Where the document of an action lies now, as its status there. */
  async locate(externalId: string): Promise<OldStatus | undefined> {
    for (const directory of DIRECTORIES) {
      try {
        const text = await readFile(path.join(this.root, directory, `${externalId}.json`), "utf8");
        return directory === "rejected" && statusIn(text) === "cancelled" ? "cancelled" : directory;
      } catch (error) {
        ignoreMissing(error as NodeJS.ErrnoException);
      }
    }
    return undefined;
  }

  get historyPath(): string {
    return path.join(this.root, HISTORY_FILE);
  }

  /** A whole history.log at once; its length in bytes. */
  async replaceHistory(lines: string[]): Promise<number> {
    const text = lines.map((line) => `${line}\n`).join("");
    await writeAtomically(this.historyPath, text);
    return Buffer.byteLength(text);
  }

  /** Lines added at the end, flushed to disk before the cursor that counts
   * them is saved; the new length in bytes. */
  async appendHistory(lines: string[], bytesBefore: number): Promise<number> {
    if (lines.length === 0) return bytesBefore;
    const text = lines.map((line) => `${line}\n`).join("");
    const handle = await open(this.historyPath, "a");
    try {
      await handle.write(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    return bytesBefore + Buffer.byteLength(text);
  }

  /** Drops what a batch whose cursor was never saved appended; false when
   * the file is shorter than the cursor says (someone changed it). */
  async cutHistoryTo(bytes: number): Promise<boolean> {
    const size = await stat(this.historyPath).then(
      (info) => info.size,
      () => 0,
    );
    if (size < bytes) return false;
    if (size > bytes) await truncate(this.historyPath, bytes);
    return true;
  }

  async readHistory(): Promise<string> {
    return readFile(this.historyPath, "utf8").catch(() => "");
  }

  async readCursor(): Promise<Cursor | undefined> {
    try {
      const cursor = JSON.parse(await readFile(path.join(this.root, CURSOR_FILE), "utf8")) as Partial<Cursor>;
      if (
        typeof cursor.server !== "string" ||
        typeof cursor.after_event_id !== "string" ||
        !/^\d+$/.test(cursor.after_event_id) ||
        typeof cursor.history_bytes !== "number"
      )
        return undefined;
      return cursor as Cursor;
    } catch {
      return undefined;
    }
  }

  async saveCursor(cursor: Cursor): Promise<void> {
    await writeAtomically(path.join(this.root, CURSOR_FILE), `${JSON.stringify(cursor)}\n`);
  }
}
