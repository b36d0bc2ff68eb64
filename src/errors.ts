// Errors the domain throws on purpose. Each carries a gRPC-level kind, a
// stable UPPER_SNAKE reason and metadata; src/api/errors.ts turns them into
// wire statuses in one place.

export type ErrorKind =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "failed_precondition"
  | "resource_exhausted"
  | "permission_denied"
  | "unauthenticated"
  | "unavailable";

export class ActionqError extends Error {
  constructor(
    readonly kind: ErrorKind,
    readonly reason: string,
    message: string,
    readonly metadata: Record<string, string> = {},
    /** For a refusal that passes with time: how long until a retry may succeed. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = "ActionqError";
  }
}

/** A request field is missing or malformed. */
export function invalidField(field: string, problem: string): ActionqError {
  return new ActionqError("invalid_argument", "INVALID_FIELD", `${field}: ${problem}`, { field });
}

export function actionNotFound(id: bigint | string): ActionqError {
  return new ActionqError("not_found", "ACTION_NOT_FOUND", `action ${id} does not exist`, { action_id: String(id) });
}

/** The action exists but is in a status the operation cannot start from. */
export function invalidTransition(id: bigint | string, status: string, operation: string, allowed: string[]): ActionqError {
  const from = allowed.map((s) => s.toUpperCase()).join(" or ");
  return new ActionqError("failed_precondition", "INVALID_TRANSITION", `action ${id} is ${status.toUpperCase()}; ${operation} needs it to be ${from}`, {
    action_id: String(id),
    current_status: status.toUpperCase(),
    operation,
  });
}

/** The caller's claim token is not the token of the action's current claim:
 * the lease was lost and the action claimed again, or the token is wrong. */
export function claimTokenMismatch(id: bigint | string, status: string): ActionqError {
  return new ActionqError(
    "failed_precondition",
    "CLAIM_TOKEN_MISMATCH",
    `action ${id} is ${status.toUpperCase()} under a different claim; this claim token is no longer valid (the lease may have run out and the action been claimed again)`,
    { action_id: String(id), current_status: status.toUpperCase() },
  );
}
