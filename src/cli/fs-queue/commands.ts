// actionctl's commands for moving over from the filesystem queue of
// actionq's first design: `import --from-dir` and `export --to-dir`.
import type { Command } from "commander";
import { IDENTITY_NOTE, STREAM_PINGS, client, mode, run, target } from "../context.js";
import { EXIT } from "../errors.js";
import { note, print, printLine, printText } from "../output.js";
import { type ExportSummary, exportFollow, exportOnce } from "./export.js";
import { type ImportOptions, runImport } from "./import.js";
import { TreeError } from "./tree.js";

const summaryText = (s: ExportSummary) =>
  `exported ${s.actions} action${s.actions === 1 ? "" : "s"} (${Object.entries(s.by_directory)
    .map(([directory, n]) => `${directory} ${n}`)
    .join(", ")}) and ${s.history_lines} history line${s.history_lines === 1 ? "" : "s"} to ${s.root}, up to event ${s.after_event_id}`;

export function addFsQueueCommands(program: Command): void {
  program
    .command("import")
    .description(
      "bring actions over from the filesystem queue of actionq's first design (ImportActions): every document of ROOT's six directories with its history.log lines; a second import of the same tree creates nothing",
    )
    .requiredOption("--from-dir <root>", "the old queue's root, holding pending/, approved/, running/, completed/, failed/, rejected/ and history.log")
    .option("--dry-run", "check every document with the server and say what would happen, writing nothing")
    .option(
      "--trust-approvals",
      "keep the approvals given there: approved (and running) actions come in APPROVED, ready to claim; needs the operator role (without it they wait in PENDING)",
    )
    .option("--json", "print the report as one JSON document (as -o json)")
    .option("--actor <who>", `who imports, the actor of the action_imported events ${IDENTITY_NOTE}`)
    .addHelpText(
      "after",
      `
The directory decides the status: pending/ waits for approvals as the policy
says, counted from now; approved/ is approved with --trust-approvals, else
pending; running/ likewise, marked interrupted (it runs again here);
completed/, failed/ and rejected/ (status "cancelled" there: cancelled) are
recorded as finished, at the time of their last history line.

The report has a line per document, then the counts by outcome. Malformed
documents, and copies of one action in two finished directories, are
listed and skipped; of other copies the one furthest along is imported.
Exit 1 when anything was malformed, conflicting or refused.

Examples:
  actionctl import --from-dir /var/lib/actions --dry-run --actor human:ops
  actionctl import --from-dir /var/lib/actions --trust-approvals --actor human:ops`,
    )
    .action(
      run(async (o: ImportOptions, command: Command) => {
        try {
          return await runImport(client(), { ...o, json: o.json || mode("table") !== "table" });
        } catch (error) {
          if (!(error instanceof TreeError)) throw error;
          command.error(`error: ${error.message}`, { exitCode: EXIT.usage, code: "actionctl.tree" });
        }
      }),
    );

  program
    .command("export")
    .description(
      "write actionq's actions in the filesystem queue's layout: a JSON document per action in the directory of its status, and history.log; --follow keeps it current",
    )
    .requiredOption("--to-dir <root>", "where to write; created if missing")
    .option(
      "-f, --follow",
      "then keep the tree current from WatchEvents, resuming from ROOT/.actionq-export.json after a restart of either side; ends on SIGTERM (exit 0) or SIGINT (exit 130)",
    )
    .addHelpText(
      "after",
      `
Every file is written under a temporary dotted name and renamed into place,
so readers never see half a document. Without --follow, or when the cursor
in ROOT is missing or another server's, the whole tree and history.log are
written first. --follow prints a line per document it writes.

Examples:
  actionctl export --to-dir /var/lib/actions-mirror
  actionctl export --to-dir /var/lib/actions-mirror --follow`,
    )
    .action(
      run(async (o: { toDir: string; follow?: boolean }) => {
        const outputMode = mode();
        if (!o.follow) {
          const summary = await exportOnce(client(), o.toDir, target().address);
          await print(outputMode, { json: { ...summary }, table: () => [summaryText(summary)] });
          return;
        }
        return exportFollow(client(STREAM_PINGS), o.toDir, {
          target: target(),
          onExported: (summary) => note(summaryText(summary)),
          onMove: (move) =>
            outputMode === "table"
              ? printText([`${move.path}  action ${move.id}  after event ${move.eventId}`])
              : printLine({ event_id: `${move.eventId}`, id: `${move.id}`, action_id: move.externalId, path: move.path }),
        });
      }),
    );
}
