// Parsers for actionctl's option and argument values. Each returns the value
// in the form the request message wants, or throws commander's
// InvalidArgumentError so that a bad value is a usage error (exit code 2).
import { type DescEnum, type JsonObject, create } from "@bufbuild/protobuf";
import { type Duration, DurationSchema, type Timestamp, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { InvalidArgumentError } from "commander";
import { type ActionStatus, ActionStatusSchema, type RiskLevel, RiskLevelSchema } from "../../gen/actionq/v1/action_pb.js";
import { PauseKind, type SchedulePolicyOverlap, SchedulePolicyOverlapSchema } from "../../gen/actionq/v1/action_queue_service_pb.js";

const INT64_MAX = 2n ** 63n - 1n;
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

function integer(value: string, what: string): bigint {
  if (!/^-?\d+$/.test(value.trim())) throw new InvalidArgumentError(`${what} must be an integer.`);
  return BigInt(value.trim());
}

/** An action or event id: a positive int64. */
export function id(value: string): bigint {
  const parsed = integer(value, "An id");
  if (parsed <= 0n || parsed > INT64_MAX) throw new InvalidArgumentError(`An id must be a positive 64-bit integer.`);
  return parsed;
}

/** An event cursor: 0 (the beginning) or an event id. */
export function cursor(value: string): bigint {
  const parsed = integer(value, "A cursor");
  if (parsed < 0n || parsed > INT64_MAX) throw new InvalidArgumentError(`A cursor must be 0 or a positive 64-bit integer.`);
  return parsed;
}

/** A priority: any int32; smaller is claimed first. */
export function int32(value: string): number {
  const parsed = integer(value, "The value");
  if (parsed < BigInt(INT32_MIN) || parsed > BigInt(INT32_MAX)) throw new InvalidArgumentError(`The value must fit in 32 bits.`);
  return Number(parsed);
}

/** A count such as --limit: a positive integer. */
export function positive(value: string): number {
  const parsed = integer(value, "The value");
  if (parsed <= 0n || parsed > BigInt(INT32_MAX)) throw new InvalidArgumentError(`The value must be a positive integer.`);
  return Number(parsed);
}

export function number(value: string): number {
  const parsed = value.trim() === "" ? Number.NaN : Number(value);
  if (!Number.isFinite(parsed)) throw new InvalidArgumentError(`The value must be a number.`);
  return parsed;
}

/** A JSON object, for payloads (google.protobuf.Struct). */
export function jsonObject(value: string): JsonObject {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (error) {
    throw new InvalidArgumentError(`The value is not valid JSON (${(error as Error).message}).`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))
    throw new InvalidArgumentError(`The value must be a JSON object, such as '{"key":"value"}'.`);
  return parsed as JsonObject;
}

const NANOS_PER_UNIT: Record<string, bigint> = {
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60n * 1_000_000_000n,
  h: 3600n * 1_000_000_000n,
};

/** `300s`, `5m`, `1h`, `1.5s`, `250ms`, computed exactly in nanoseconds. */
export function duration(value: string): Duration {
  const match = /^(\d+)(?:\.(\d+))?(ms|s|m|h)$/.exec(value.trim());
  if (!match) throw new InvalidArgumentError(`A duration is a number with a unit, such as 300s, 5m, 1h, 1.5s or 250ms.`);
  const [, whole, fraction = "", unit] = match;
  const perUnit = NANOS_PER_UNIT[unit!]!;
  const nanos = BigInt(whole!) * perUnit + (BigInt(fraction || "0") * perUnit) / 10n ** BigInt(fraction.length);
  const seconds = nanos / 1_000_000_000n;
  if (seconds > 315_576_000_000n) throw new InvalidArgumentError(`The duration is too long.`);
  return create(DurationSchema, { seconds, nanos: Number(nanos % 1_000_000_000n) });
}

/** A point in time: RFC 3339 (`2026-12-06T18:00:00Z`, or with an offset),
 * or a duration from now (`10m`, `2h`). */
export function instant(value: string, now = Date.now()): Timestamp {
  const text = value.trim();
  if (/^\d+(?:\.\d+)?(ms|s|m|h)$/.test(text)) {
    const { seconds, nanos } = duration(text);
    return timestampFromMs(now + Number(seconds) * 1000 + Math.floor(nanos / 1_000_000));
  }
  // Date.parse takes many forms; insist on a date, a time and a zone.
  const parsed = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})$/.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(parsed))
    throw new InvalidArgumentError(`A time is RFC 3339 with a zone, such as 2026-12-06T18:00:00Z, or a duration from now, such as 10m or 2h.`);
  return timestampFromMs(parsed);
}

/** Accepts `pending`, `PENDING` or `ACTION_STATUS_PENDING` alike; with
 * `hyphens`, names are spelt `buffer-one` (and `buffer_one` still works). */
function enumParser<T extends number>(schema: DescEnum, prefix: string, hyphens = false): { parse: (value: string) => T; names: string[] } {
  const values = schema.values.filter((v) => v.number !== 0);
  const names = values.map((v) => {
    const name = v.name.slice(prefix.length).toLowerCase();
    return hyphens ? name.replace(/_/g, "-") : name;
  });
  return {
    names,
    parse(value: string): T {
      const wanted = hyphens ? value.trim().toUpperCase().replace(/-/g, "_") : value.trim().toUpperCase();
      const found = values.find((v) => v.name === wanted || v.name === prefix + wanted);
      if (!found) throw new InvalidArgumentError(`Expected one of: ${names.join(", ")}.`);
      return found.number as T;
    },
  };
}

export const status = enumParser<ActionStatus>(ActionStatusSchema, "ACTION_STATUS_");
export const risk = enumParser<RiskLevel>(RiskLevelSchema, "RISK_LEVEL_");
export const overlap = enumParser<SchedulePolicyOverlap>(SchedulePolicyOverlapSchema, "SCHEDULE_POLICY_OVERLAP_", true);

/** A point in the past, for backfills: RFC 3339, `now`, or a duration
 * ago (`2h` is two hours ago). */
export function pastInstant(value: string, now = Date.now()): Timestamp {
  const text = value.trim();
  if (text.toLowerCase() === "now") return timestampFromMs(now);
  if (/^\d+(?:\.\d+)?(ms|s|m|h)$/.test(text)) {
    const { seconds, nanos } = duration(text);
    return timestampFromMs(now - Number(seconds) * 1000 - Math.floor(nanos / 1_000_000));
  }
  try {
    return instant(text, now);
  } catch {
    throw new InvalidArgumentError(`A time is RFC 3339 with a zone, such as 2026-12-06T18:00:00Z, \`now\`, or a duration ago, such as 2h.`);
  }
}

/** For repeatable options: `--type a --type b`. */
export function collect<T>(parse: (value: string) => T): (value: string, previous: T[] | undefined) => T[] {
  return (value, previous) => [...(previous ?? []), parse(value)];
}

/** Text options that are repeatable but need no parsing. */
export const collectText = collect((value: string) => value);

/** The scope flags of `pause` and `resume`. */
export interface ScopeOptions {
  all?: boolean;
  type?: string;
  project?: string;
  autoApproval?: boolean;
}

/** Exactly one scope flag, as a PauseScope. Commander can say that flags
 * conflict, not that one of them is required, hence this check. */
export function pauseScope(o: ScopeOptions): { kind: PauseKind; value: string } {
  const given: { kind: PauseKind; value: string }[] = [];
  if (o.all) given.push({ kind: PauseKind.ALL, value: "" });
  if (o.type !== undefined) given.push({ kind: PauseKind.ACTION_TYPE, value: o.type });
  if (o.project !== undefined) given.push({ kind: PauseKind.PROJECT, value: o.project });
  if (o.autoApproval) given.push({ kind: PauseKind.AUTO_APPROVAL, value: "" });
  if (given.length !== 1) throw new InvalidArgumentError(`Give exactly one scope: --all, --type <type>, --project <project> or --auto-approval.`);
  return given[0]!;
}
