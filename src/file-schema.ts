// Settings files (the approval policy, the principals): YAML or JSON,
// validated with a zod schema, every problem named by its key path.
import { parse as parseYaml } from "yaml";
import type { z } from "zod";

/** A settings file that cannot be used: where, and every problem found. */
export class SettingsFileError extends Error {
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`${source}: ${problems.join("; ")}`);
    this.name = new.target.name;
  }
}

/** `rules[0].effect` from a zod path. */
export function keyPath(parts: readonly PropertyKey[]): string {
  let out = "";
  for (const part of parts) out += typeof part === "number" ? `[${part}]` : out === "" ? String(part) : `.${String(part)}`;
  return out === "" ? "(top level)" : out;
}

/** Parses `text` (JSON when `source` ends in .json, YAML otherwise) and
 * validates it: the data, or the list of problems, one per line. */
export function parseSettingsFile<T extends z.ZodType>(
  text: string,
  source: string,
  schema: T,
): { ok: true; data: z.output<T> } | { ok: false; problems: string[] } {
  let raw: unknown;
  try {
    raw = source.endsWith(".json") ? JSON.parse(text) : parseYaml(text, { prettyErrors: true });
  } catch (error) {
    return { ok: false, problems: [`not valid ${source.endsWith(".json") ? "JSON" : "YAML"}: ${(error as Error).message.split("\n")[0]}`] };
  }
  const result = schema.safeParse(raw ?? {});
  if (result.success) return { ok: true, data: result.data };
  return {
    ok: false,
    problems: result.error.issues.map((issue) =>
      issue.code === "unrecognized_keys"
        ? `${issue.keys.map((key) => keyPath([...issue.path, key])).join(", ")}: unknown key`
        : `${keyPath(issue.path)}: ${issue.message}`,
    ),
  };
}
