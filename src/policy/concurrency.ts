// Concurrency keys: which actions may not run alongside each other. An
// action's key is the producer's `concurrency_key`, or the one the policy
// derives for its type from the action's own fields ("{node}/{service}").
// PostgreSQL enforces the limit at claim time (migrations/007); this file
// only decides the key and the limit at enqueue.
import type { JsonObject } from "@bufbuild/protobuf";
import { z } from "zod";
import { invalidField } from "../errors.js";

/** The action fields a key template may name, besides `payload.<name>`. */
export const KEY_FIELDS = ["action_type", "project", "target_ref", "node", "service", "created_by", "correlation_id"] as const;
type KeyField = (typeof KEY_FIELDS)[number];

export const MAX_KEY_LENGTH = 256;
export const MAX_CONCURRENCY_LIMIT = 1000;

const PLACEHOLDER = /\{([^{}]*)\}/g;
const PAYLOAD_FIELD = /^payload\.[A-Za-z0-9_-]{1,64}$/;

/** A key template, checked when the policy is read: every placeholder names
 * a field, and there is at least one (a constant key is written as the key
 * itself, which is allowed too). */
export const keyTemplate = z
  .string({ error: "must be a string" })
  .min(1, "must not be empty")
  .max(MAX_KEY_LENGTH)
  .superRefine((template, ctx) => {
    for (const [, name] of template.matchAll(PLACEHOLDER)) {
      if (!(KEY_FIELDS as readonly string[]).includes(name!) && !PAYLOAD_FIELD.test(name!)) {
        ctx.addIssue({ code: "custom", message: `{${name}} is not a field; use ${KEY_FIELDS.map((field) => `{${field}}`).join(", ")} or {payload.<name>}` });
      }
    }
    if (/[{}]/.test(template.replace(PLACEHOLDER, ""))) ctx.addIssue({ code: "custom", message: "has an unmatched { or }" });
  });

export const concurrencyRule = z.strictObject({
  key: keyTemplate,
  limit: z
    .number({ error: "must be a whole number" })
    .int("must be a whole number")
    .min(1, "must be at least 1")
    .max(MAX_CONCURRENCY_LIMIT, `must be at most ${MAX_CONCURRENCY_LIMIT}`)
    .optional(),
});

export interface ConcurrencyRule {
  key: string;
  limit: number;
}

/** The fields a template reads. */
export interface KeyedFields {
  actionType: string;
  project: string;
  targetRef: string;
  node: string;
  service: string;
  createdBy: string;
  correlationId: string;
  payload: JsonObject;
}

const FIELD_OF: Record<KeyField, (fields: KeyedFields) => string> = {
  action_type: (f) => f.actionType,
  project: (f) => f.project,
  target_ref: (f) => f.targetRef,
  node: (f) => f.node,
  service: (f) => f.service,
  created_by: (f) => f.createdBy,
  correlation_id: (f) => f.correlationId,
};

/** The template with the action's fields in it. A field the template names
 * must be set: a key built from an empty node would serialize every action
 * without one, and a key that silently means nothing would let them all
 * run at once. */
export function expandKey(template: string, fields: KeyedFields): string {
  return template.replace(PLACEHOLDER, (_, name: string) => {
    let value: string;
    let field: string;
    if (name.startsWith("payload.")) {
      const raw = fields.payload[name.slice("payload.".length)];
      value = typeof raw === "string" || typeof raw === "number" || typeof raw === "boolean" ? String(raw) : "";
      field = name;
    } else {
      value = FIELD_OF[name as KeyField](fields);
      field = name;
    }
    if (value === "") {
      throw invalidField(field, `${fields.actionType} actions take their concurrency key from the policy's template ${template}, which needs ${field} set`);
    }
    return value;
  });
}

/** A key as a producer or a template gives it. */
export function checkKey(field: string, key: string): void {
  if (key.length > MAX_KEY_LENGTH) throw invalidField(field, `must be at most ${MAX_KEY_LENGTH} characters, got ${key.length}`);
  if (/[\u0000-\u001f\u007f]/.test(key)) throw invalidField(field, "must not contain control characters");
}

/** The action's key and limit: the policy's for its type, or the
 * producer's. A producer may not give a policy-keyed type another key or
 * limit (that would let it run alongside what the policy keeps apart);
 * repeating the policy's own is allowed. `requestedLimit` 0: not given. */
export function decideConcurrency(
  rules: Readonly<Record<string, ConcurrencyRule>>,
  fields: KeyedFields,
  requestedKey: string,
  requestedLimit: number,
): { key: string; limit: number } | null {
  if (requestedLimit !== 0 && requestedKey === "") throw invalidField("concurrency_limit", "is a limit for concurrency_key; set concurrency_key too");
  if (requestedLimit < 0 || requestedLimit > MAX_CONCURRENCY_LIMIT) {
    throw invalidField("concurrency_limit", `must be from 1 to ${MAX_CONCURRENCY_LIMIT}, or 0 for the default of 1`);
  }
  const rule = rules[fields.actionType];
  if (rule) {
    const key = expandKey(rule.key, fields);
    checkKey("concurrency_key", key);
    if (requestedKey !== "" && requestedKey !== key) {
      throw invalidField(
        "concurrency_key",
        `the policy gives ${fields.actionType} actions the key ${rule.key}, here ${JSON.stringify(key)}; leave concurrency_key empty or set it to that`,
      );
    }
    if (requestedLimit !== 0 && requestedLimit !== rule.limit) {
      throw invalidField("concurrency_limit", `the policy limits ${fields.actionType} actions to ${rule.limit} per key; leave concurrency_limit at 0`);
    }
    return { key, limit: rule.limit };
  }
  if (requestedKey === "") return null;
  checkKey("concurrency_key", requestedKey);
  return { key: requestedKey, limit: requestedLimit === 0 ? 1 : requestedLimit };
}
