#!/usr/bin/env node
// Prints the size of the console's first page as a browser fetches it
// (index.html and every script and style it loads, gzipped), and fails when
// its script passes the budget: an approver on a slow link must not wait
// for a large bundle.
import { readFileSync } from "node:fs";
import path from "node:path";
import { gzipSync } from "node:zlib";

const BUDGET_SCRIPT_GZIP = 250 * 1024;
const dir = path.resolve(import.meta.dirname, "..", "dist", "web");
const html = readFileSync(path.join(dir, "index.html"), "utf8");
const files = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]);
let script = 0;
const rows = [["index.html", readFileSync(path.join(dir, "index.html"))]].concat(files.map((f) => [f, readFileSync(path.join(dir, f))]));
for (const [name, bytes] of rows) {
  const gz = gzipSync(bytes, { level: 9 }).length;
  if (name.endsWith(".js")) script += gz;
  console.log(`${name.padEnd(40)} ${String(bytes.length).padStart(9)} B  ${String(gz).padStart(8)} B gzipped`);
}
console.log(`first-page script, gzipped: ${(script / 1024).toFixed(1)} KiB (budget ${BUDGET_SCRIPT_GZIP / 1024} KiB)`);
if (script > BUDGET_SCRIPT_GZIP) {
  console.error("the console's first-page script is over its budget");
  process.exit(1);
}
