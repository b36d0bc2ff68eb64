// Batch calls (EnqueueActions, CompleteActions) answer item by item: each
// item gets its own refusal, named by its index, or its result; one bad
// item never fails the others.
import { ActionqError } from "../errors.js";
import type { Outcome } from "../store/actions.js";
import { itemError } from "./interceptors.js";

/** An error about one item of a batch names the item: `requests[3].payload`. */
export function withItemField(error: ActionqError, prefix: string): ActionqError {
  const field = error.metadata.field;
  return new ActionqError(
    error.kind,
    error.reason,
    `${prefix}: ${error.message}`,
    field === undefined ? { ...error.metadata, item: prefix } : { ...error.metadata, field: `${prefix}.${field}` },
  );
}

/** Runs one item's checks; a domain error becomes that item's result. */
export function attempt<T>(prefix: string, check: () => T): T | ActionqError {
  try {
    return check();
  } catch (error) {
    if (error instanceof ActionqError) return withItemField(error, prefix);
    throw error;
  }
}

type Success = Extract<Outcome, { ok: true }>;

/** A batch call's results, in request order: the store runs once on the
 * items that passed their checks; each item gets its own refusal, the
 * store's refusal of it, or `ok` of its success. `field`: the request's
 * list, naming the items in errors. */
export async function perItem<I extends object, R>(
  items: (I | ActionqError)[],
  store: (valid: I[]) => Promise<Outcome[]>,
  ok: (item: I, outcome: Success) => R,
  field = "requests",
): Promise<({ result: { case: "error"; value: ReturnType<typeof itemError> } } | R)[]> {
  const valid = items.filter((item): item is I => !(item instanceof ActionqError));
  const outcomes = valid.length > 0 ? await store(valid) : [];
  let next = 0;
  return items.map((item, index) => {
    if (item instanceof ActionqError) return { result: { case: "error" as const, value: itemError(item) } };
    const outcome = outcomes[next++]!;
    if (!outcome.ok) return { result: { case: "error" as const, value: itemError(withItemField(outcome.error, `${field}[${index}]`)) } };
    return ok(item, outcome);
  });
}

/** The result, or its error thrown. */
export function must(outcome: Outcome) {
  if (!outcome.ok) throw outcome.error;
  return outcome;
}

/** The single result of a one-item batch, or its error. */
export function only(outcomes: Outcome[]) {
  return must(outcomes[0]!);
}
