// `actionctl import --from-dir ROOT`: the old queue's documents sent to
// ImportActions in batches, and a report with a line per document and the
// counts by outcome. What cannot be imported whole (malformed, conflicting)
// is listed and never sent.
import type { JsonObject } from "@bufbuild/protobuf";
import { ActionStatus } from "../../../gen/actionq/v1/action_pb.js";
import { ImportOutcome } from "../../../gen/actionq/v1/action_queue_service_pb.js";
import { type ActionQueueClient, UNARY } from "../context.js";
import { EXIT } from "../errors.js";
import { printDocument, printText } from "../output.js";
import { itemErrorText } from "../views.js";
import { oldStatus } from "./layout.js";
import { readTree } from "./tree.js";

/** Under ACTIONQ_MAX_BATCH's default (1000), with room for large payloads. */
export const IMPORT_BATCH = 500;

export interface ImportOptions {
  fromDir: string;
  dryRun?: boolean;
  trustApprovals?: boolean;
  json?: boolean;
  actor?: string;
}

/** The report's outcomes, in the order the counts are printed. */
export const OUTCOMES = [
  "imported_pending",
  "imported_approved",
  "imported_approved_after_interruption",
  "imported_completed",
  "imported_failed",
  "imported_rejected",
  "imported_cancelled",
  "already_present",
  "duplicate_skipped",
  "conflict_skipped",
  "malformed_skipped",
  "refused",
] as const;
export type Outcome = (typeof OUTCOMES)[number];

const WORDS: Record<Outcome, string> = {
  imported_pending: "imported as pending",
  imported_approved: "imported as approved",
  imported_approved_after_interruption: "imported as approved after interruption",
  imported_completed: "imported as completed",
  imported_failed: "imported as failed",
  imported_rejected: "imported as rejected",
  imported_cancelled: "imported as cancelled",
  already_present: "already present",
  duplicate_skipped: "duplicate skipped",
  conflict_skipped: "conflicting copies skipped",
  malformed_skipped: "malformed skipped",
  refused: "refused by the server",
};

export interface ReportLine {
  source: string;
  action_id: string | null;
  outcome: Outcome;
  /** actionq's id of the action created or already present ("0" in a dry run). */
  id: string | null;
  notes: string[];
  /** Why it was skipped or refused. */
  reason: string | null;
}

const word = (outcome: Outcome, dryRun: boolean) => (dryRun && outcome.startsWith("imported") ? `would be ${WORDS[outcome]}` : WORDS[outcome]);

/** What an IMPORTED action became, in the report's words. */
function importedOutcome(status: ActionStatus, statusThere: ActionStatus): Outcome {
  if (status === ActionStatus.APPROVED && statusThere === ActionStatus.CLAIMED) return "imported_approved_after_interruption";
  const old = oldStatus(status);
  return `imported_${old === "running" ? "approved" : old}` as Outcome;
}

export async function runImport(actionq: ActionQueueClient, o: ImportOptions): Promise<number> {
  const tree = await readTree(o.fromDir);
  const lines: ReportLine[] = tree.skipped.map((s) => ({
    source: s.source,
    action_id: s.externalId ?? null,
    outcome: `${s.outcome}_skipped` as Outcome,
    id: null,
    notes: [],
    reason: s.reason,
  }));
  for (let start = 0; start < tree.candidates.length; start += IMPORT_BATCH) {
    const batch = tree.candidates.slice(start, start + IMPORT_BATCH);
    // A refusal of the whole call (PERMISSION_DENIED for --trust-approvals,
    // an unreachable server) ends the command as any actionctl error does.
    const response = await actionq.importActions(
      { actions: batch.map((c) => c.item), trustApprovals: o.trustApprovals, validateOnly: o.dryRun, actor: o.actor },
      UNARY,
    );
    batch.forEach((candidate, i) => {
      const result = response.results[i]?.result;
      const base = { source: candidate.source, action_id: candidate.item.externalId };
      if (result?.case === "ok") {
        const { action, outcome, notes } = result.value;
        lines.push({
          ...base,
          outcome: outcome === ImportOutcome.ALREADY_PRESENT ? "already_present" : importedOutcome(action!.status, candidate.item.status),
          id: `${action?.id ?? 0n}`,
          notes: [...candidate.notes, ...notes],
          reason: null,
        });
      } else {
        const reason = result?.case === "error" ? itemErrorText(result.value) : "no result for this item";
        lines.push({ ...base, outcome: "refused", id: null, notes: candidate.notes, reason });
      }
    });
  }
  lines.sort((a, b) => (a.source < b.source ? -1 : a.source > b.source ? 1 : 0));
  const counts = Object.fromEntries(OUTCOMES.map((outcome) => [outcome, lines.filter((line) => line.outcome === outcome).length])) as Record<Outcome, number>;
  if (o.json) {
    await printDocument({
      root: o.fromDir,
      dry_run: Boolean(o.dryRun),
      documents: lines as unknown as JsonObject[],
      counts,
      history_lines: tree.historyLines,
      history_lines_unmatched: tree.unmatchedLines,
    });
  } else {
    await printText(reportText(lines, counts, Boolean(o.dryRun), tree.historyLines, tree.unmatchedLines));
  }
  return counts.malformed_skipped + counts.conflict_skipped + counts.refused > 0 ? EXIT.refused : EXIT.ok;
}

/** The report for people: a line per document, then the counts. */
export function reportText(lines: ReportLine[], counts: Record<Outcome, number>, dryRun: boolean, historyLines: number, unmatchedLines: number): string[] {
  const text = lines.map((line) => {
    const what = line.id !== null && line.id !== "0" ? `${word(line.outcome, dryRun)} (action ${line.id})` : word(line.outcome, dryRun);
    const why = line.reason ? `: ${line.reason}` : "";
    const notes = line.notes.length ? `; ${line.notes.join("; ")}` : "";
    return `${line.source}: ${what}${why}${notes}`;
  });
  const shown = OUTCOMES.filter((outcome) => counts[outcome] > 0);
  const width = Math.max(0, ...shown.map((outcome) => word(outcome, dryRun).length));
  const summary = shown.map((outcome) => `  ${word(outcome, dryRun).padEnd(width)}  ${counts[outcome]}`);
  const total = `${lines.length} document${lines.length === 1 ? "" : "s"}, ${historyLines} history line${historyLines === 1 ? "" : "s"}${dryRun ? " (dry run: nothing was written)" : ""}:`;
  // Said, not silently dropped: the old history.log stays their only copy.
  const unmatched = unmatchedLines
    ? [
        `${unmatchedLines} history line${unmatchedLines === 1 ? "" : "s"} name${unmatchedLines === 1 ? "s" : ""} no action imported here: carried by none, kept only in history.log`,
      ]
    : [];
  return [...text, "", total, ...(summary.length ? summary : ["  nothing to import"]), ...unmatched];
}
