// The webhooks file (ACTIONQ_WEBHOOKS_FILE): the endpoints to notify, what
// each wants, and how to sign for it. YAML or JSON, validated like the
// policy (every problem named by its key), read whole and replaced whole on
// reload, so that a delivery never sees half of an old file.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { SettingsFileError, parseSettingsFile } from "../file-schema.js";
import { globToRegExp } from "../policy/approval.js";
import { KIND_NAMES, type NotificationKind } from "./kinds.js";

/** "500ms", "10s", "5m", "1h" or a number of seconds; returns milliseconds. */
const duration = (minMs: number, maxMs: number, example: string) =>
  z.union([z.number(), z.string()], { error: `must be a duration such as "${example}"` }).transform((value, ctx) => {
    const match = typeof value === "number" ? null : /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value);
    const ms =
      typeof value === "number" ? value * 1000 : match ? Number(match[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(match[2] ?? "s") as "s"] : NaN;
    if (!Number.isFinite(ms) || ms < minMs || ms > maxMs) {
      ctx.addIssue({ code: "custom", message: `must be a duration from ${minMs}ms to ${maxMs / 1000}s, such as "${example}"` });
      return z.NEVER;
    }
    return ms;
  });

// Standard Webhooks: the secret is whsec_ and base64 of 24 to 64 bytes.
const SECRET = /^whsec_[A-Za-z0-9+/]+={0,2}$/;
const secretText = z.string().refine((value) => {
  if (!SECRET.test(value)) return false;
  const bytes = Buffer.from(value.slice("whsec_".length), "base64").length;
  return bytes >= 24 && bytes <= 64;
}, 'must be "whsec_" followed by the base64 of 24 to 64 random bytes (Standard Webhooks)');

const patterns = z
  .array(z.string().min(1, "must not be empty"), { error: "must be a list of strings" })
  .min(1, "must not be an empty list; leave it out to match anything");

const EndpointSchema = z.strictObject({
  name: z.string({ error: "must be a string" }).regex(/^[A-Za-z0-9_.:-]{1,64}$/, "must be 1 to 64 letters, digits or _ . : -"),
  url: z.string({ error: "must be a string" }).refine((value) => {
    try {
      const url = new URL(value);
      return url.protocol === "http:" || url.protocol === "https:";
    } catch {
      return false;
    }
  }, "must be an http:// or https:// URL"),
  secret: secretText.optional(),
  secret_file: z.string().min(1, "must not be empty").optional(),
  events: z
    .array(z.union([z.literal("*"), z.enum(KIND_NAMES)], { error: `must be "*" or one of ${KIND_NAMES.join(", ")}` }), {
      error: "must be a list of notification kinds",
    })
    .min(1, 'must name at least one kind, or "*" for all'),
  projects: patterns.optional(),
  action_types: patterns.optional(),
  format: z.enum(["standard", "slack"], { error: 'must be "standard" or "slack"' }).optional(),
  timeout: duration(100, 120_000, "10s").optional(),
});

const WebhooksFileSchema = z
  .strictObject(
    {
      endpoints: z.array(EndpointSchema, { error: "must be a list of endpoints" }).max(100, "at most 100 endpoints"),
      retry: z.strictObject({ initial: duration(10, 3_600_000, "1s").optional(), max: duration(10, 86_400_000, "5m").optional() }).optional(),
    },
    { error: "must be a mapping with an endpoints list" },
  )
  .superRefine((file, ctx) => {
    const seen = new Set<string>();
    file.endpoints.forEach((endpoint, index) => {
      if (seen.has(endpoint.name))
        ctx.addIssue({ code: "custom", path: ["endpoints", index, "name"], message: `duplicate endpoint name ${JSON.stringify(endpoint.name)}` });
      seen.add(endpoint.name);
      if ((endpoint.secret === undefined) === (endpoint.secret_file === undefined)) {
        ctx.addIssue({ code: "custom", path: ["endpoints", index, "secret"], message: "give exactly one of secret or secret_file" });
      }
    });
    const retry = file.retry;
    if (retry?.initial !== undefined && retry.max !== undefined && retry.max < retry.initial) {
      ctx.addIssue({ code: "custom", path: ["retry", "max"], message: "must not be shorter than retry.initial" });
    }
  });

export interface Endpoint {
  name: string;
  url: string;
  secret: string;
  /** null: every kind. */
  kinds: ReadonlySet<NotificationKind> | null;
  projects: RegExp[] | null;
  actionTypes: RegExp[] | null;
  format: "standard" | "slack";
  timeoutMs: number;
}

export interface Webhooks {
  endpoints: Endpoint[];
  retry: { initialMs: number; maxMs: number };
  /** The file they came from; null when there is none. */
  source: string | null;
}

export const NO_WEBHOOKS: Webhooks = { endpoints: [], retry: { initialMs: 1000, maxMs: 300_000 }, source: null };

export class WebhooksFileError extends SettingsFileError {}

/** Parses and validates the file's text; secret files are read relative to it. */
export async function parseWebhooks(text: string, source: string): Promise<Webhooks> {
  const result = parseSettingsFile(text, source, WebhooksFileSchema);
  if (!result.ok) throw new WebhooksFileError(source, result.problems);
  const problems: string[] = [];
  const endpoints: Endpoint[] = [];
  for (const [index, raw] of result.data.endpoints.entries()) {
    let secret = raw.secret ?? "";
    if (raw.secret_file !== undefined) {
      const file = path.resolve(path.dirname(source), raw.secret_file);
      try {
        secret = (await readFile(file, "utf8")).trim();
      } catch (error) {
        problems.push(`endpoints[${index}].secret_file: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
        continue;
      }
      const checked = secretText.safeParse(secret);
      if (!checked.success) {
        problems.push(`endpoints[${index}].secret_file: ${file} ${checked.error.issues[0]!.message}`);
        continue;
      }
    }
    endpoints.push({
      name: raw.name,
      url: raw.url,
      secret,
      kinds: raw.events.includes("*") ? null : new Set(raw.events as NotificationKind[]),
      projects: raw.projects?.map(globToRegExp) ?? null,
      actionTypes: raw.action_types?.map(globToRegExp) ?? null,
      format: raw.format ?? "standard",
      timeoutMs: raw.timeout ?? 10_000,
    });
  }
  if (problems.length > 0) throw new WebhooksFileError(source, problems);
  return {
    endpoints,
    retry: { initialMs: result.data.retry?.initial ?? NO_WEBHOOKS.retry.initialMs, maxMs: result.data.retry?.max ?? NO_WEBHOOKS.retry.maxMs },
    source,
  };
}

export async function loadWebhooks(file: string | undefined): Promise<Webhooks> {
  if (file === undefined) return NO_WEBHOOKS;
  const source = path.resolve(file);
  let text: string;
  try {
    text = await readFile(source, "utf8");
  } catch (error) {
    throw new WebhooksFileError(source, [`cannot read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`]);
  }
  return parseWebhooks(text, source);
}

/** Whether an endpoint wants a notification of this kind about this action
 * (null: a notification about no action, which project and type filters
 * let through). */
export function wants(endpoint: Endpoint, kind: NotificationKind, action: { project: string; action_type: string } | null): boolean {
  if (endpoint.kinds && !endpoint.kinds.has(kind)) return false;
  if (!action) return true;
  if (endpoint.projects && !endpoint.projects.some((regexp) => regexp.test(action.project))) return false;
  if (endpoint.actionTypes && !endpoint.actionTypes.some((regexp) => regexp.test(action.action_type))) return false;
  return true;
}
