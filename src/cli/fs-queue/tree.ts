// Reading an old queue's tree for import: every document of the six
// directories, parsed; the copies of one action reduced to the one furthest
// along; each with its history.log lines and, when finished, when and why.
import { readFile, readdir, stat } from "node:fs/promises";
import path from "node:path";
import type { ImportedAction } from "../../../gen/actionq/v1/action_queue_service_pb.js";
import { ActionStatus } from "../../../gen/actionq/v1/action_pb.js";
import { DIRECTORIES, type Directory, HISTORY_FILE, type DocumentFields, parseDocument, progress, timestampOfEpoch } from "./layout.js";
import { type HistoryLine, lineTime, linesByAction, parseHistory } from "./history.js";

/** A document that will be sent to the server. */
export interface Candidate {
  source: string;
  item: Omit<ImportedAction, "$typeName" | "$unknown">;
  notes: string[];
}

/** A document that will not: why, in the report's words. */
export interface Skipped {
  source: string;
  externalId?: string;
  outcome: "malformed" | "duplicate" | "conflict";
  reason: string;
}

export interface Tree {
  candidates: Candidate[];
  skipped: Skipped[];
  /** Lines of history.log; 0 when there is none. */
  historyLines: number;
  /** Lines that name no action imported (about no action, or about a
   * skipped document): carried by none, left in the old history.log. */
  unmatchedLines: number;
}

interface Found {
  source: string;
  directory: Directory;
  mtimeMs: number;
  fields: DocumentFields;
  notes: string[];
}

const FINISHED = new Set<ActionStatus>([ActionStatus.COMPLETED, ActionStatus.FAILED, ActionStatus.REJECTED, ActionStatus.CANCELLED]);

async function documentNames(directory: string): Promise<string[]> {
  try {
    // Dotfiles are export's files being written (and editors' leftovers).
    return (await readdir(directory, { withFileTypes: true }))
      .filter((entry) => entry.isFile() && entry.name.endsWith(".json") && !entry.name.startsWith("."))
      .map((entry) => entry.name)
      .sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
}

async function readHistory(root: string): Promise<HistoryLine[]> {
  try {
    return parseHistory(await readFile(path.join(root, HISTORY_FILE), "utf8"));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
}

/** Throws when ROOT is not a directory holding at least one of the six:
 * importing the wrong directory should say so, not report zero actions. */
async function checkRoot(root: string): Promise<void> {
  const info = await stat(root).catch(() => undefined);
  if (!info?.isDirectory()) throw new TreeError(`${root} is not a directory`);
  const present = await Promise.all(
    DIRECTORIES.map((d) =>
      stat(path.join(root, d)).then(
        (s) => s.isDirectory(),
        () => false,
      ),
    ),
  );
  if (!present.some(Boolean)) throw new TreeError(`${root} has none of the directories ${DIRECTORIES.map((d) => `${d}/`).join(", ")}: is it a queue's root?`);
}

/** A tree that cannot be read as a queue at all. */
export class TreeError extends Error {}

export async function readTree(root: string): Promise<Tree> {
  await checkRoot(root);
  const skipped: Skipped[] = [];
  const found: Found[] = [];
  for (const directory of DIRECTORIES) {
    for (const name of await documentNames(path.join(root, directory))) {
      const file = path.join(root, directory, name);
      const source = `${directory}/${name}`;
      const [text, info] = await Promise.all([readFile(file, "utf8"), stat(file)]);
      const parsed = parseDocument(text, directory);
      if (!parsed.ok) skipped.push({ source, outcome: "malformed", reason: parsed.reason });
      else found.push({ source, directory, mtimeMs: info.mtimeMs, fields: parsed.fields, notes: parsed.notes });
    }
  }

  const copies = new Map<string, Found[]>();
  for (const copy of found) copies.set(copy.fields.externalId, [...(copies.get(copy.fields.externalId) ?? []), copy]);
  const kept: Found[] = [];
  for (const [externalId, list] of copies) {
    const finishedDirs = new Set(list.filter((c) => progress(c.directory) === 3).map((c) => c.directory));
    if (finishedDirs.size > 1) {
      // Two different endings: which one happened cannot be told here.
      const where = list.map((c) => c.source).join(", ");
      for (const c of list) skipped.push({ source: c.source, externalId, outcome: "conflict", reason: `finished differently in ${where}` });
      continue;
    }
    // Furthest along wins; among equals, the first by name, so the choice is stable.
    const best = list.reduce((a, b) => (progress(b.directory) > progress(a.directory) ? b : a));
    kept.push(best);
    for (const c of list)
      if (c !== best)
        skipped.push({ source: c.source, externalId, outcome: "duplicate", reason: `duplicate of ${best.source}, which is further along or first` });
  }

  const history = await readHistory(root);
  const byAction = linesByAction(
    history,
    kept.map((c) => c.fields.externalId),
  );
  const candidates = kept.map((c): Candidate => {
    const lines = byAction.get(c.fields.externalId) ?? [];
    const notes = [...c.notes];
    const item: Candidate["item"] = { ...c.fields, history: lines.map((line) => line.text), source: c.source, failureReason: "" };
    if (FINISHED.has(c.fields.status)) {
      const times = lines.map(lineTime).filter((time): time is number => time !== undefined);
      const last = times.at(-1);
      if (last !== undefined) item.finishTime = timestampOfEpoch(last);
      else {
        item.finishTime = timestampOfEpoch(c.mtimeMs / 1000);
        notes.push("finish time taken from the file's mtime (no history line with a time)");
      }
      // A time of finishing before the creation is a clock's mistake there, not a reason to refuse.
      const created = Number(c.fields.createTime!.seconds) + c.fields.createTime!.nanos / 1e9;
      const finished = Number(item.finishTime.seconds) + item.finishTime.nanos / 1e9;
      if (finished < created) {
        item.finishTime = c.fields.createTime;
        notes.push("finish time before created_at: taken as created_at");
      }
      if (c.fields.status !== ActionStatus.COMPLETED) {
        const reasons = lines.map((line) => line.json?.reason).filter((reason): reason is string => typeof reason === "string" && reason !== "");
        item.failureReason = reasons.at(-1) ?? "";
      }
    }
    return { source: c.source, item, notes };
  });
  candidates.sort((a, b) => (a.source < b.source ? -1 : a.source > b.source ? 1 : 0));
  const carried = new Set([...byAction.values()].flat());
  return { candidates, skipped, historyLines: history.length, unmatchedLines: history.filter((line) => !carried.has(line)).length };
}
