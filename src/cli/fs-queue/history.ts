// history.log in both directions. Reading: the old system's lines are of no
// fixed shape, so a line belongs to an action when it is a JSON line naming
// it as `action_id`, else when it contains the id; a time is read wherever
// one plainly is. Writing: one JSON line per status change, in a fixed key
// order, so that an export is the same bytes wherever it is made.
import type { JsonObject } from "@bufbuild/protobuf";
import type { Event } from "../../../gen/actionq/v1/action_pb.js";
import { type Status, isFinished } from "../../domain/vocabulary.js";
import { type OldStatus, epochSeconds } from "./layout.js";

const isObject = (value: unknown): value is JsonObject => typeof value === "object" && value !== null && !Array.isArray(value);

/** A line of history.log, parsed once. */
export interface HistoryLine {
  text: string;
  json: JsonObject | undefined;
}

export function parseHistory(text: string): HistoryLine[] {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  return lines
    .map((line) => line.replace(/\r$/, ""))
    .filter((line) => line.trim() !== "")
    .map((line) => {
      let json: JsonObject | undefined;
      if (line.trimStart().startsWith("{")) {
        try {
          const parsed: unknown = JSON.parse(line);
          if (isObject(parsed)) json = parsed;
        } catch {
          // A text line that happens to start with a brace.
        }
      }
      return { text: line, json };
    });
}

// Words of a text line that could be an id: ids are matched whole first,
// which is cheap, and only lines where no word matched are searched for
// every id as a substring.
const WORDS = /[^\s"'`,;()[\]{}<>=|]+/g;

/** The lines of each id, in file order. */
export function linesByAction(lines: HistoryLine[], ids: Iterable<string>): Map<string, HistoryLine[]> {
  const known = new Set(ids);
  const matched = new Map<string, HistoryLine[]>();
  const add = (id: string, line: HistoryLine) => {
    const list = matched.get(id);
    if (list) list.push(line);
    else matched.set(id, [line]);
  };
  for (const line of lines) {
    const named = line.json?.action_id;
    if (typeof named === "string" && known.has(named)) {
      add(named, line);
      continue;
    }
    const found = new Set<string>();
    for (const word of line.text.match(WORDS) ?? []) {
      if (known.has(word)) found.add(word);
      // A word like `id=abc` or `abc.json` still names abc.
      for (const part of word.split(/[:=/]|\.json$/)) if (known.has(part)) found.add(part);
    }
    if (found.size === 0) for (const id of known) if (line.text.includes(id)) found.add(id);
    for (const id of found) add(id, line);
  }
  return matched;
}

/** Epoch seconds from a number (seconds, or milliseconds when it is too
 * large to be seconds) or an ISO 8601 string. */
function timeOf(value: unknown): number | undefined {
  if (typeof value === "number" && Number.isFinite(value) && value > 0) return value > 1e11 ? value / 1000 : value;
  if (typeof value === "string") {
    if (/^\d+(\.\d+)?$/.test(value)) return timeOf(Number(value));
    if (/^\d{4}-\d\d-\d\d[T ]\d\d:\d\d/.test(value)) {
      const ms = Date.parse(value.replace(" ", "T"));
      if (!Number.isNaN(ms)) return ms / 1000;
    }
  }
  return undefined;
}

const LEADING_ISO = /^\[?(\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:?\d\d)?)/;
const LEADING_EPOCH = /^\[?(\d{9,13}(?:\.\d+)?)\b/;

/** When a line says it happened, if it says. */
export function lineTime(line: HistoryLine): number | undefined {
  if (line.json) {
    for (const key of ["timestamp", "time", "ts"]) {
      const time = timeOf(line.json[key]);
      if (time !== undefined) return time;
    }
    return undefined;
  }
  const text = line.text.trimStart();
  const iso = LEADING_ISO.exec(text)?.[1];
  if (iso) return timeOf(iso);
  const epoch = LEADING_EPOCH.exec(text)?.[1];
  return epoch ? timeOf(Number(epoch)) : undefined;
}

/** The status each event leaves an action in, for the events that move it;
 * the others (approvals short of the quorum, progress, extended leases,
 * broken glass) write no line. */
const MOVES: Record<string, OldStatus> = {
  action_enqueued: "pending",
  action_approved: "approved",
  action_claimed: "running",
  action_completed: "completed",
  action_failed: "failed",
  action_retry_scheduled: "approved",
  action_retried: "approved",
  action_rejected: "rejected",
  action_cancelled: "cancelled",
  claim_timed_out: "approved",
  claim_released: "approved",
};

/** The events export reads: those that move an action, and the import's. */
export const HISTORY_EVENT_TYPES = [...Object.keys(MOVES), "action_imported"];

/** A line ready for history.log with what it sorts by. */
export interface OutLine {
  text: string;
  time: number;
  actionId: string;
  seq: number;
}

/** Where one action stands in the old system's words, event by event:
 * `from` of the next line. undefined before its first event. */
export type StatusBook = Map<string, OldStatus>;

/** The history.log lines of one event of the action named `externalId`,
 * moving `book` along. An import's own events are not history (they carry
 * `imported: true`); its action_imported event gives back the lines it
 * carried, as they were. */
export function eventLines(event: Event, externalId: string, book: StatusBook, seq: () => number): OutLine[] {
  const payload = event.payload ?? {};
  const time = epochSeconds(event.createTime);
  if (event.eventType === "action_imported") {
    const there = typeof payload.status_there === "string" ? payload.status_there : "pending";
    // Until a trusted approval follows, an imported unfinished action waits.
    book.set(externalId, (isFinished(there as Status) ? there : "pending") as OldStatus);
    const carried = Array.isArray(payload.history) ? payload.history.filter((line): line is string => typeof line === "string") : [];
    return carried.map((text) => ({ text, time: lineTime(parseHistory(text)[0] ?? { text, json: undefined }) ?? time, actionId: externalId, seq: seq() }));
  }
  const to = MOVES[event.eventType];
  if (!to) return [];
  const from = book.get(externalId) ?? null;
  book.set(externalId, to);
  if (payload.imported === true) return [];
  const line: JsonObject = { timestamp: time, action_id: externalId, event: event.eventType, actor: event.actor, from, to };
  if (typeof payload.reason === "string" && payload.reason !== "") line.reason = payload.reason;
  return [{ text: JSON.stringify(line), time, actionId: externalId, seq: seq() }];
}

/** The order of a whole export: by time, then action, then the order within
 * the action, so that the same history exported twice is the same file. */
export function compareLines(a: OutLine, b: OutLine): number {
  if (a.time !== b.time) return a.time - b.time;
  if (a.actionId !== b.actionId) return a.actionId < b.actionId ? -1 : 1;
  return a.seq - b.seq;
}

/** Where each action stands by the lines of history.log (the `to` of its
 * last JSON line), for a follower that resumes. */
export function bookFromHistory(lines: HistoryLine[]): StatusBook {
  const book: StatusBook = new Map();
  for (const { json } of lines) {
    if (typeof json?.action_id === "string" && typeof json.to === "string") book.set(json.action_id, json.to as OldStatus);
  }
  return book;
}
