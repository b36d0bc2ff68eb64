// Every statement names its schema: the store writes SCHEMA_MARKER before
// each actionq table, sequence and function, and the db layer puts the
// quoted schema there. A reference without it would run against whatever
// search_path the connection has (through a transaction pooler, not the
// schema), so the source is checked for one, with the names taken from
// the migrations.
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SCHEMA_MARKER, withSchema } from "../src/store/db.js";
import { type TestServer, closeWithin, startTestServer } from "./support/harness.js";

const root = path.resolve(import.meta.dirname, "..");

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(file) : file.endsWith(".ts") ? [file] : [];
  });
}

/** Tables, sequences, types and functions the migrations create. */
function schemaNames(): { relations: string[]; functions: string[] } {
  const sql = readdirSync(path.join(root, "migrations"))
    .map((file) => readFileSync(path.join(root, "migrations", file), "utf8"))
    .join("\n");
  const names = (pattern: RegExp) => [...new Set([...sql.matchAll(pattern)].map((match) => match[1]!))];
  return {
    relations: [...names(/CREATE (?:TABLE|SEQUENCE|TYPE|VIEW) (?:IF NOT EXISTS )?([a-z_0-9]+)/g), "actions_id_seq", "schema_migrations"],
    functions: names(/CREATE (?:OR REPLACE )?FUNCTION ([a-z_0-9]+)\(/g),
  };
}

describe("the schema marker", () => {
  it("is replaced by the quoted schema and a dot, everywhere in a statement", () => {
    const text = `SELECT ${SCHEMA_MARKER}rfc3339(a.created_at) FROM ${SCHEMA_MARKER}actions a, nextval('${SCHEMA_MARKER}actions_id_seq')`;
    expect(withSchema("tenant_1", text)).toBe(`SELECT "tenant_1".rfc3339(a.created_at) FROM "tenant_1".actions a, nextval('"tenant_1".actions_id_seq')`);
    expect(withSchema("tenant_1", "SELECT 1")).toBe("SELECT 1");
  });

  it("refuses a schema that is not a plain identifier", () => {
    expect(() => withSchema('x"; DROP TABLE actions; --', "SELECT 1")).toThrow(/not a plain identifier/);
  });

  it("stands before every actionq table and function in the server's SQL", () => {
    const { relations, functions } = schemaNames();
    const bareRelation = new RegExp(`\\b(?:FROM|JOIN|INTO|UPDATE|TABLE|ONLY)\\s+(?:${relations.join("|")})\\b|::(?:${relations.join("|")})\\b`, "g");
    const bareFunction = new RegExp(`(?<![\\w./])(?:${functions.join("|")})\\(`, "g");
    const found: string[] = [];
    for (const file of filesUnder(path.join(root, "src"))) {
      const lines = readFileSync(file, "utf8").split("\n");
      lines.forEach((line, index) => {
        if (/^\s*(\/\/|\*|\/\*\*)/.test(line)) return;
        for (const match of [...line.matchAll(bareRelation), ...line.matchAll(bareFunction)]) {
          found.push(`${path.relative(root, file)}:${index + 1}: ${match[0]}`);
        }
      });
    }
    expect(found).toEqual([]);
  });
});

describe("the schema's functions", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(() => closeWithin(t));

  it("run with the schema as their search path, except the SQL ones that only call built-ins and must stay inlinable", async () => {
    const { rows } = await t.db.query<{ name: string; language: string; config: string[] | null }>(
      `SELECT p.proname AS name, l.lanname AS language, p.proconfig AS config
       FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
       WHERE p.pronamespace = $1::regnamespace ORDER BY p.proname`,
      [t.schema],
    );
    const unpinned = rows.filter((row) => !(row.config ?? []).includes(`search_path=${t.schema}`)).map((row) => `${row.name} (${row.language})`);
    expect(unpinned).toEqual(["approvals_complete (sql)", "derived_external_id (sql)", "rfc3339 (sql)", "webhook_notifiable (sql)"]);
  });
});
