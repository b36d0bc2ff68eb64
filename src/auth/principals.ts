// Who may call: the principals file (ACTIONQ_AUTH_FILE). Tokens are kept
// only as SHA-256 hashes, so the file is not a secret worth stealing; a
// client certificate names its principal by its subject. The file is read
// whole and replaced whole on reload.
import { createHash, randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { NAME_PATTERN, PRINCIPAL_LENGTH } from "../domain/vocabulary.js";
import { SettingsFileError, parseSettingsFile } from "../file-schema.js";

export const ROLES = ["producer", "worker", "approver", "operator", "viewer", "admin"] as const;
export type Role = (typeof ROLES)[number];

const TOKEN_HASH = /^sha256:[0-9a-f]{64}$/;
const scopeList = z
  .array(z.string().regex(NAME_PATTERN, "must be an exact project or action type name"))
  .min(1, "must not be empty; leave the key out for no limit");

const PrincipalSchema = z
  .object({
    name: z
      .string()
      .min(1)
      .max(PRINCIPAL_LENGTH)
      .regex(/^[^\s\u0000-\u001f\u007f]+$/, "must not contain spaces or control characters"),
    roles: z.array(z.enum(ROLES, { error: `must be one of ${ROLES.join(", ")}` })).min(1, "must name at least one role"),
    tokens: z.array(z.string().regex(TOKEN_HASH, 'must be "sha256:" and 64 lowercase hex digits, as `actionq token` prints')).default([]),
    certificate_subjects: z.array(z.string().min(3).max(1024)).default([]),
    projects: scopeList.optional(),
    action_types: scopeList.optional(),
    // The approver groups it belongs to: what a policy's `approvers`
    // requirements count. Names follow the same rule as project names.
    groups: z.array(z.string().regex(NAME_PATTERN, "must be a group name: a letter or digit, then letters, digits or _ . : / -")).default([]),
  })
  .strict()
  .refine((p) => p.tokens.length + p.certificate_subjects.length > 0, { message: "needs at least one of tokens or certificate_subjects" });

const AuthFileSchema = z.object({ principals: z.array(PrincipalSchema).min(1, "must list at least one principal") }).strict();

/** An authenticated caller: its name, roles and (when limited) scope. */
export interface Principal {
  name: string;
  roles: ReadonlySet<Role>;
  /** Approver groups, sorted; empty when it belongs to none. */
  groups: readonly string[];
  /** Null: every project and action type. */
  scope: { projects: ReadonlySet<string> | null; actionTypes: ReadonlySet<string> | null } | null;
}

export class AuthFileError extends SettingsFileError {}

/** A certificate subject as a canonical string: its attributes sorted, so
 * that "CN=a, O=ops" and "O=ops,CN=a" name the same subject. Values keep
 * their case; attribute names are upper-cased. */
export function canonicalSubject(subject: string): string {
  return subject
    .split(/[\n,]/)
    .map((part) => part.trim())
    .filter((part) => part !== "")
    .map((part) => {
      const eq = part.indexOf("=");
      return eq < 0 ? part : `${part.slice(0, eq).trim().toUpperCase()}=${part.slice(eq + 1).trim()}`;
    })
    .sort()
    .join(",");
}

export function hashToken(token: string): string {
  return `sha256:${createHash("sha256").update(token, "utf8").digest("hex")}`;
}

/** A new bearer token: 32 random bytes, URL-safe. */
export function newToken(): { token: string; hash: string } {
  const token = `aq_${randomBytes(32).toString("base64url")}`;
  return { token, hash: hashToken(token) };
}

/** The principals of one version of the file, indexed by credential. */
export class Principals {
  private constructor(
    readonly source: string,
    readonly byName: ReadonlyMap<string, Principal>,
    private readonly byToken: ReadonlyMap<string, Principal>,
    private readonly bySubject: ReadonlyMap<string, Principal>,
  ) {}

  static parse(text: string, source: string): Principals {
    const result = parseSettingsFile(text, source, AuthFileSchema);
    if (!result.ok) throw new AuthFileError(source, result.problems);
    const problems: string[] = [];
    const byName = new Map<string, Principal>();
    const byToken = new Map<string, Principal>();
    const bySubject = new Map<string, Principal>();
    result.data.principals.forEach((entry, index) => {
      const principal: Principal = {
        name: entry.name,
        roles: new Set(entry.roles),
        groups: [...new Set(entry.groups)].sort(),
        scope:
          entry.projects || entry.action_types
            ? { projects: entry.projects ? new Set(entry.projects) : null, actionTypes: entry.action_types ? new Set(entry.action_types) : null }
            : null,
      };
      if (byName.has(entry.name)) problems.push(`principals[${index}].name: ${entry.name} is listed twice`);
      byName.set(entry.name, principal);
      entry.tokens.forEach((hash, t) => {
        if (byToken.has(hash)) problems.push(`principals[${index}].tokens[${t}]: the same token hash is listed twice`);
        byToken.set(hash, principal);
      });
      entry.certificate_subjects.forEach((subject, s) => {
        const key = canonicalSubject(subject);
        if (bySubject.has(key)) problems.push(`principals[${index}].certificate_subjects[${s}]: ${subject} is listed twice`);
        bySubject.set(key, principal);
      });
    });
    if (problems.length > 0) throw new AuthFileError(source, problems);
    return new Principals(source, byName, byToken, bySubject);
  }

  static async load(file: string): Promise<Principals> {
    const source = path.resolve(file);
    let text: string;
    try {
      text = await readFile(source, "utf8");
    } catch (error) {
      throw new AuthFileError(source, [`cannot read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`]);
    }
    return Principals.parse(text, source);
  }

  /** How many principals belong to `group`. */
  members(group: string): number {
    let count = 0;
    for (const principal of this.byName.values()) if (principal.groups.includes(group)) count++;
    return count;
  }

  byBearer(token: string): Principal | undefined {
    return this.byToken.get(hashToken(token));
  }

  byCertificateSubject(subject: string): Principal | undefined {
    return this.bySubject.get(canonicalSubject(subject));
  }
}

/** The principals in force, replaced whole on reload. */
export class PrincipalsHolder {
  constructor(
    private readonly file: string,
    public current: Principals,
  ) {}

  static async open(file: string): Promise<PrincipalsHolder> {
    return new PrincipalsHolder(file, await Principals.load(file));
  }

  /** Reads the file again; an invalid file throws AuthFileError and the
   * principals in force stay. */
  async reload(): Promise<{ principals: number }> {
    const next = await Principals.load(this.file);
    this.current = next;
    return { principals: next.byName.size };
  }
}
