// `actionq token --append`: adds a token to the auth file, as a new
// principal or as one more token of an existing one, so that nobody edits
// the file by hand to rotate a credential. YAML keeps its comments and
// layout (the yaml package edits the document, not a copy of its data);
// the result is checked with the server's own parser before it replaces
// the file, atomically, so a running server never reads half a file.
import { randomBytes } from "node:crypto";
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { isMap, isSeq, parseDocument, YAMLMap, YAMLSeq } from "yaml";
import { AuthFileError, Principals, type Role } from "./principals.js";

export interface AppendResult {
  /** False when the file did not exist and was created. */
  fileExisted: boolean;
  /** True when the principal was new; false when it got one more token. */
  newPrincipal: boolean;
  roles: string[];
  groups: string[];
}

export class AuthFileEditError extends Error {}

/** `groups`: the approver groups of a new entry; for an existing one they
 * must be the groups it has (changing them is an edit of the file, not of
 * a token). */
export async function appendToken(
  file: string,
  name: string,
  roles: readonly Role[] | undefined,
  hash: string,
  groups?: readonly string[],
): Promise<AppendResult> {
  const target = path.resolve(file);
  let text: string | undefined;
  try {
    text = await readFile(target, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw new AuthFileEditError(`cannot read ${target}: ${(error as Error).message}`);
  }
  const json = target.endsWith(".json");
  const doc = parseDocument(text ?? "principals: []\n");
  if (doc.errors.length > 0) throw new AuthFileEditError(`${target} is not valid ${json ? "JSON" : "YAML"}: ${doc.errors[0]!.message}`);
  if (!isMap(doc.contents)) doc.contents = new YAMLMap() as never;
  const top = doc.contents as unknown as YAMLMap;
  let list = top.get("principals");
  if (!isSeq(list)) {
    list = new YAMLSeq();
    top.set("principals", list);
  }
  const entries = (list as YAMLSeq).items;
  const existing = entries.find((item) => isMap(item) && item.get("name") === name) as YAMLMap | undefined;
  let result: AppendResult;
  if (existing) {
    const had = (existing.get("roles", true) as YAMLSeq | undefined)?.toJSON() as string[] | undefined;
    if (roles && had && [...roles].sort().join() !== [...had].sort().join()) {
      throw new AuthFileEditError(
        `${name} is already in ${target} with the roles ${had.join(", ")}; leave --role out to add a token with those roles, or change the roles in the file`,
      );
    }
    const hadGroups = ((existing.get("groups", true) as YAMLSeq | undefined)?.toJSON() as string[] | undefined) ?? [];
    if (groups && [...new Set(groups)].sort().join() !== [...new Set(hadGroups)].sort().join()) {
      throw new AuthFileEditError(
        `${name} is already in ${target} with the groups ${hadGroups.join(", ") || "(none)"}; leave --group out to add a token, or change the groups in the file`,
      );
    }
    let tokens = existing.get("tokens");
    if (!isSeq(tokens)) {
      tokens = new YAMLSeq();
      existing.set("tokens", tokens);
    }
    (tokens as YAMLSeq).add(hash);
    result = { fileExisted: text !== undefined, newPrincipal: false, roles: had ?? [], groups: hadGroups };
  } else {
    const entry = doc.createNode({ name, roles: [...(roles ?? ["viewer"])], tokens: [hash], ...(groups?.length ? { groups: [...new Set(groups)] } : {}) });
    (list as YAMLSeq).add(entry);
    result = { fileExisted: text !== undefined, newPrincipal: true, roles: [...(roles ?? ["viewer"])], groups: [...new Set(groups ?? [])] };
  }
  const output = json ? `${JSON.stringify(doc.toJS(), null, 2)}\n` : doc.toString();
  try {
    Principals.parse(output, target);
  } catch (error) {
    if (error instanceof AuthFileError) throw new AuthFileEditError(`the file would be invalid, so it was left as it was: ${error.message}`);
    throw error;
  }
  // Write beside it and rename: a reader sees the old file or the new one.
  const temporary = path.join(path.dirname(target), `.${path.basename(target)}.${randomBytes(4).toString("hex")}.tmp`);
  try {
    await writeFile(temporary, output, { mode: 0o600, flag: "wx" });
    await rename(temporary, target);
  } catch (error) {
    await rm(temporary, { force: true });
    throw new AuthFileEditError(`cannot write ${target}: ${(error as Error).message}`);
  }
  return result;
}
