// Checks on request fields. Each function either returns the value in the
// form the domain wants or throws INVALID_ARGUMENT naming the field, before
// anything is written.
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import type { Limits } from "../config.js";
import { NAME_LENGTH, NAME_PATTERN, PRINCIPAL_LENGTH } from "../domain/vocabulary.js";
import { invalidField } from "../errors.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const INT64_MAX = 2n ** 63n - 1n;
// Control characters other than tab, newline and carriage return; NUL
// cannot be stored in PostgreSQL text at all.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;

export const FILTER_VALUES = 100;
export const PAYLOAD_DEPTH = 32;

export function name(field: string, value: string, required = true): string {
  if (value === "") {
    if (required) throw invalidField(field, "is required");
    return value;
  }
  if (!NAME_PATTERN.test(value)) {
    throw invalidField(
      field,
      `${JSON.stringify(value.slice(0, 140))} is not a valid name: use 1 to ${NAME_LENGTH} letters, digits and _ . : / -, starting with a letter or digit`,
    );
  }
  return value;
}

/** Who did something: `human:alice`, `agent:triage`, `worker-7`. */
export function principal(field: string, value: string): string {
  if (value.trim() === "") throw invalidField(field, "is required");
  if (value.length > PRINCIPAL_LENGTH) throw invalidField(field, `is longer than ${PRINCIPAL_LENGTH} characters`);
  if (/\s/.test(value) || CONTROL.test(value)) throw invalidField(field, "must not contain spaces or control characters");
  return value;
}

export function text(field: string, value: string, options: { required?: boolean; max: number; limit?: string }): string {
  const max = options.max;
  if (options.required && value.trim() === "") throw invalidField(field, "is required");
  if (value.length > max) throw invalidField(field, `is longer than ${max} characters${options.limit ? ` (${options.limit})` : ""}`);
  if (CONTROL.test(value)) throw invalidField(field, "must not contain control characters");
  return value;
}

export function textList(field: string, values: string[], limits: Pick<Limits, "sourceRefs" | "refLength">): string[] {
  if (values.length > limits.sourceRefs)
    throw invalidField(field, `has ${values.length} entries; at most ${limits.sourceRefs} are allowed (ACTIONQ_MAX_SOURCE_REFS)`);
  for (const [index, value] of values.entries()) text(`${field}[${index}]`, value, { required: true, max: limits.refLength, limit: "ACTIONQ_MAX_REF_LENGTH" });
  return values;
}

export function nameList(field: string, values: string[]): string[] {
  if (values.length > FILTER_VALUES) throw invalidField(field, `has ${values.length} entries; at most ${FILTER_VALUES} are allowed`);
  for (const [index, value] of values.entries()) name(`${field}[${index}]`, value);
  return [...new Set(values)];
}

/** A required action id: positive. Returned as a decimal string. */
export function id(field: string, value: bigint): string {
  if (value <= 0n || value > INT64_MAX) throw invalidField(field, "must be a positive action id");
  return value.toString();
}

/** An optional id: 0 means none. */
export function optionalId(field: string, value: bigint): string | null {
  if (value === 0n) return null;
  return id(field, value);
}

export function cursor(field: string, value: bigint): bigint {
  if (value < 0n) throw invalidField(field, "must not be negative");
  return value;
}

export function claimToken(field: string, value: string): string {
  if (value === "") throw invalidField(field, "is required");
  if (!UUID.test(value)) throw invalidField(field, "is not a claim token issued by this server");
  return value.toLowerCase();
}

export function confidence(field: string, value: number | undefined): number | null {
  if (value === undefined) return null;
  if (!Number.isFinite(value) || value < 0 || value > 1) throw invalidField(field, `must be between 0 and 1, got ${value}`);
  return value;
}

/** A lease length in milliseconds: the default when unset, at least one
 * second, at most the server's maximum. */
export function lease(field: string, value: Duration | undefined, fallbackMs: number | null, maxMs: number): number | null {
  if (value === undefined) return fallbackMs;
  const ms = Number(value.seconds) * 1000 + Math.floor(value.nanos / 1e6);
  if (!Number.isFinite(ms) || ms < 1000) throw invalidField(field, "must be at least 1s");
  if (ms > maxMs) throw invalidField(field, `must be at most ${maxMs / 1000}s (ACTIONQ_MAX_LEASE_SECONDS)`);
  return ms;
}

/** A delay from 0 to `maxMs`, or null when unset. */
export function delay(field: string, value: Duration | undefined, maxMs: number): number | null {
  if (value === undefined) return null;
  const ms = Number(value.seconds) * 1000 + Math.floor(value.nanos / 1e6);
  if (!Number.isFinite(ms) || ms < 0) throw invalidField(field, "must not be negative");
  if (ms > maxMs) throw invalidField(field, `must be at most ${maxMs / 1000}s`);
  return ms;
}

/** A time at most a year ahead; null when unset. A time in the past means
 * now. */
export function runAfter(field: string, value: Timestamp | undefined): Date | null {
  if (value === undefined) return null;
  const ms = Number(value.seconds) * 1000 + Math.floor(value.nanos / 1e6);
  if (!Number.isFinite(ms) || ms < 0) throw invalidField(field, "is not a valid time");
  if (ms > Date.now() + 366 * 86_400_000) throw invalidField(field, "is more than a year ahead");
  return new Date(ms);
}

/** Claims a worker says it holds: well-formed ids and tokens, at most
 * `max` of them. */
export function heldClaims(field: string, values: { id: bigint; claimToken: string }[], max: number): { id: string; token: string }[] {
  if (values.length > max) throw invalidField(field, `has ${values.length} entries; at most ${max} (ACTIONQ_MAX_IN_FLIGHT) are allowed`);
  return values.map((value, index) => ({ id: id(`${field}[${index}].id`, value.id), token: claimToken(`${field}[${index}].claim_token`, value.claimToken) }));
}

export function pageSize(field: string, value: number, fallback: number, max: number): number {
  if (value < 0) throw invalidField(field, "must not be negative");
  if (value === 0) return Math.min(fallback, max);
  if (value > max) throw invalidField(field, `must be at most ${max} (ACTIONQ_MAX_PAGE_SIZE)`);
  return value;
}

export function count(field: string, value: number, fallback: number, max: number, limit?: string): number {
  if (value < 0) throw invalidField(field, "must not be negative");
  if (value === 0) return fallback;
  if (value > max) throw invalidField(field, `must be at most ${max}${limit ? ` (${limit})` : ""}`);
  return value;
}

/** A JSON object small and plain enough to store: bounded size and depth,
 * finite numbers, no NUL characters. */
export function payload(field: string, value: JsonObject | undefined, maxBytes: number): JsonObject {
  if (value === undefined) return {};
  const check = (node: JsonValue, path: string, depth: number): void => {
    if (depth > PAYLOAD_DEPTH) throw invalidField(path, `nests deeper than ${PAYLOAD_DEPTH} levels`);
    if (typeof node === "number" && !Number.isFinite(node)) throw invalidField(path, "must be a finite number");
    if (typeof node === "string" && node.includes("\u0000")) throw invalidField(path, "must not contain NUL characters");
    if (Array.isArray(node)) for (const [index, item] of node.entries()) check(item, `${path}[${index}]`, depth + 1);
    else if (node !== null && typeof node === "object") {
      for (const [key, item] of Object.entries(node)) {
        if (key.includes("\u0000")) throw invalidField(path, "keys must not contain NUL characters");
        check(item, `${path}.${key}`, depth + 1);
      }
    }
  };
  check(value, field, 0);
  const bytes = Buffer.byteLength(JSON.stringify(value));
  if (bytes > maxBytes) throw invalidField(field, `is ${bytes} bytes as JSON; at most ${maxBytes} are allowed (ACTIONQ_MAX_PAYLOAD_BYTES)`);
  return value;
}

/** The checks whose bounds are settings, bound to this server's limits. */
export function bounded(limits: Limits) {
  return {
    /** Free text: reasons and notes. */
    text: (field: string, value: string, required = false) => text(field, value, { required, max: limits.textLength, limit: "ACTIONQ_MAX_TEXT_LENGTH" }),
    /** References: target_ref, result_ref, correlation ids and the like. */
    ref: (field: string, value: string) => text(field, value, { max: limits.refLength, limit: "ACTIONQ_MAX_REF_LENGTH" }),
    sourceRefs: (field: string, values: string[]) => textList(field, values, limits),
    payload: (field: string, value: JsonObject | undefined) => payload(field, value, limits.payloadBytes),
    pageSize: (field: string, value: number, fallback: number) => pageSize(field, value, fallback, limits.pageSize),
    batch: <T>(field: string, items: T[]): T[] => {
      if (items.length > limits.batch)
        throw invalidField(field, `has ${items.length} entries; at most ${limits.batch} are allowed per call (ACTIONQ_MAX_BATCH)`);
      return items;
    },
  };
}
