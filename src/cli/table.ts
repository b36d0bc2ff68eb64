// A small aligned-table formatter for actionctl's table mode: columns padded
// to their widest cell, long cells cut with an ellipsis so that a row fits
// on one line. JSON modes never come through here, so nothing is cut there.

export interface Column<Row> {
  header: string;
  cell: (row: Row) => string;
  /** Cells longer than this are cut (default 40). */
  max?: number;
  /** Right-align, for numbers. */
  right?: boolean;
  /** Left out when no row has a value in it. */
  optional?: boolean;
}

/** Cuts `text` to `max` characters, ending in "…" when it was longer; line
 * breaks become spaces so that a cell stays on its row. */
export function truncate(text: string, max: number): string {
  const flat = text.replace(/\s*\n\s*/g, " ");
  return flat.length <= max ? flat : `${flat.slice(0, Math.max(0, max - 1))}…`;
}

/** The header and one line per row, columns separated by two spaces,
 * trailing blanks trimmed. */
export function table<Row>(rows: readonly Row[], allColumns: readonly Column<Row>[]): string[] {
  const columns = allColumns.filter((column) => !column.optional || rows.some((row) => column.cell(row) !== ""));
  const cells = rows.map((row) => columns.map((column) => truncate(column.cell(row), column.max ?? 40)));
  const widths = columns.map((column, i) => Math.max(column.header.length, ...cells.map((line) => line[i]!.length)));
  const format = (line: string[]) =>
    line
      .map((cell, i) => (columns[i]!.right ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [format(columns.map((column) => column.header)), ...cells.map(format)];
}

/** `label  value` lines with the labels aligned; empty values are left out. */
export function fields(entries: readonly (readonly [string, string | undefined | false])[], max = 100): string[] {
  const shown = entries.filter((entry): entry is readonly [string, string] => typeof entry[1] === "string" && entry[1] !== "");
  const width = Math.max(0, ...shown.map(([label]) => label.length));
  return shown.map(([label, value]) => `${label.padEnd(width)}  ${truncate(value, max)}`);
}
