// One claim, from acknowledged to finished: keep its lease, record each
// step in the event log, run the handler, and report the outcome with the
// claim token. The journal entry moves "acked" -> "applied" -> gone, so a
// restart at any point neither loses the claim nor repeats what is done.
import type { JsonObject } from "@bufbuild/protobuf";
import { ROOT_CONTEXT, SpanKind, propagation, trace } from "@opentelemetry/api";
import type { Action, Claim } from "../../gen/actionq/v1/action_pb.js";
import { DEFAULT_LIMITS } from "../domain/vocabulary.js";
import type { Logger } from "../log.js";
import type { Handler } from "./handlers.js";
import type { Journal, JournalEntry } from "./journal.js";
import { describeMutation } from "./mutations.js";
import { type QueueClient, UNARY, describeError, isClaimGone, isFinal, persist } from "./rpc.js";

export type Mode = JournalEntry["mode"];
type Step = "started" | "applied" | "resumed";

export interface ClaimDeps {
  client: QueueClient;
  journal: Journal;
  worker: string;
  mode: Mode;
  leaseSeconds: number;
  /** Undefined for a type this executor does not run. */
  handlerFor(actionType: string): Handler | undefined;
  log: Logger;
}

/** The server no longer counts this claim as ours. */
class ClaimLost extends Error {}

/** A streamed claim: journaled, then acknowledged, then run. The journal
 * comes first so that no acknowledged claim is ever unknown to the next
 * start. Resolves once the claim is finished or given up. */
export async function takeStreamedClaim(deps: ClaimDeps, claim: Claim): Promise<void> {
  const action = claim.action!;
  const entry: JournalEntry = {
    id: action.id.toString(),
    token: claim.claimToken,
    attempt: action.attempt,
    actionType: action.actionType,
    mode: deps.mode,
    phase: "acked",
    resultRef: "",
  };
  const log = claimLog(deps, action);
  await deps.journal.write(entry);
  try {
    await persist("acknowledging the claim", () => deps.client.ackClaim({ id: action.id, claimToken: entry.token }, UNARY), log);
  } catch (error) {
    // Not acknowledged in time, or cancelled on the way: the server has
    // taken it back, and this executor never started on it.
    log.warn({ err: describeError(error) }, "could not acknowledge the claim; leaving it");
    await deps.journal.remove(entry);
    return;
  }
  await runClaim(deps, action, entry, false);
}

/** Checks a journal entry against the server before anything else runs: the
 * extension proves the claim is still ours (and takes it back under a fresh
 * lease). Returns the action to resume, or undefined when there is nothing
 * to do. */
export async function reclaimEntry(deps: ClaimDeps, entry: JournalEntry, signal: AbortSignal): Promise<Action | undefined> {
  const log = deps.log.child({ action: entry.id, type: entry.actionType, attempt: entry.attempt });
  if (entry.phase === "acked" && (entry.mode !== deps.mode || !deps.handlerFor(entry.actionType))) {
    // Not touched, so its lease lapses and the server requeues it; a start
    // in the mode it was taken in drops the entry then.
    log.warn({ takenIn: entry.mode, mode: deps.mode }, "journaled claim was taken in another mode or for a type this executor does not run; leaving it");
    return undefined;
  }
  try {
    const response = await persist(
      "extending a journaled claim",
      () => deps.client.extendClaim({ id: BigInt(entry.id), claimToken: entry.token, leaseDuration: { seconds: BigInt(deps.leaseSeconds) } }, UNARY),
      log,
      signal,
    );
    return response.action;
  } catch (error) {
    // Stopped before the server answered: the entry stays for next time.
    if (!isFinal(error)) return undefined;
    if (isClaimGone(error)) {
      // Finished (perhaps by this executor just before it stopped), taken
      // back by the server, or claimed again elsewhere: running it now could
      // repeat a completed action.
      log.info({ err: describeError(error) }, "journaled claim is no longer ours; dropping it");
      await deps.journal.remove(entry);
      return undefined;
    }
    // Another server or schema than the one that issued the claim, most
    // likely: keep the entry for the start that points at the right one.
    log.error({ err: describeError(error) }, "cannot resume a journaled claim; keeping its entry");
    return undefined;
  }
}

const tracer = trace.getTracer("actionq-executor");

/** Runs the claim inside a span that continues the action's trace (its
 * trace_context): a no-op unless the OpenTelemetry SDK was started. */
export function runClaim(deps: ClaimDeps, action: Action, entry: JournalEntry, resumed: boolean): Promise<void> {
  const parent = propagation.extract(ROOT_CONTEXT, { traceparent: action.traceContext?.traceparent, tracestate: action.traceContext?.tracestate });
  const attributes = { "actionq.action.id": action.id.toString(), "actionq.action.type": action.actionType, "actionq.action.attempt": entry.attempt };
  return tracer.startActiveSpan(`execute ${action.actionType}`, { kind: SpanKind.CONSUMER, attributes }, parent, async (span) => {
    try {
      await runClaimUntraced(deps, action, entry, resumed);
    } finally {
      span.end();
    }
  });
}

async function runClaimUntraced(deps: ClaimDeps, action: Action, entry: JournalEntry, resumed: boolean): Promise<void> {
  const log = claimLog(deps, action);
  const lost = new AbortController();
  const stopLease = keepLease(deps, entry, log, (reason) => lost.abort(new ClaimLost(reason)));
  const mutation = describeMutation(action);
  const record = (step: Step, details: JsonObject = {}) =>
    recordProgress(deps, entry, log, { step, mode: deps.mode, mutation, attempt: entry.attempt, ...details });
  try {
    let resultRef = entry.resultRef;
    if (entry.phase === "acked") {
      await record(resumed ? "resumed" : "started", resumed ? { phase: "acked" } : {});
      const outcome = await applyHandler(deps, action, entry, resumed, lost.signal, log);
      if (outcome.failed !== undefined) {
        log.warn({ reason: outcome.failed }, "handler failed; failing the action");
        await persist("failing the action", () => deps.client.failAction({ id: action.id, claimToken: entry.token, reason: outcome.failed }, UNARY), log);
        await deps.journal.remove(entry);
        return;
      }
      resultRef = outcome.resultRef;
      await deps.journal.write({ ...entry, phase: "applied", resultRef });
      await record("applied", { result_ref: resultRef });
    } else {
      await record("resumed", { phase: "applied" });
      // The step may have been written just before the executor stopped;
      // the log must say "applied" exactly once per claim.
      if (!(await appliedRecorded(deps, entry, log))) await record("applied", { result_ref: resultRef });
    }
    await persist("completing the action", () => deps.client.completeAction({ id: action.id, claimToken: entry.token, resultRef }, UNARY), log);
    log.info({ resultRef }, "completed");
    await deps.journal.remove(entry);
  } catch (error) {
    if (!(error instanceof ClaimLost) && !isClaimGone(error)) throw error;
    log.warn(
      { err: error instanceof ClaimLost ? error.message : describeError(error) },
      "claim lost (cancelled, or its lease ran out); leaving the action to the server",
    );
    await deps.journal.remove(entry);
  } finally {
    stopLease();
  }
}

type HandlerOutcome = { resultRef: string; failed?: undefined } | { resultRef?: undefined; failed: string };

/** Runs the handler. A handler error fails the action; losing the claim
 * while it runs throws, because then the outcome is not ours to report. */
async function applyHandler(deps: ClaimDeps, action: Action, entry: JournalEntry, resumed: boolean, signal: AbortSignal, log: Logger): Promise<HandlerOutcome> {
  let outcome: HandlerOutcome;
  try {
    const { resultRef } = await deps.handlerFor(action.actionType)!.apply(action, { signal, resumed, log, attempt: entry.attempt });
    outcome = checkResult(resultRef);
  } catch (error) {
    outcome = { failed: failureReason(error) };
  }
  if (signal.aborted) throw signal.reason;
  return outcome;
}

/** The server would refuse a result it cannot store; say so as the
 * failure instead. */
function checkResult(resultRef: unknown): HandlerOutcome {
  if (typeof resultRef !== "string") return { failed: "the handler returned no resultRef string" };
  if (resultRef.length > DEFAULT_LIMITS.refLength) return { failed: `the handler's resultRef is longer than ${DEFAULT_LIMITS.refLength} characters` };
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(resultRef)) return { failed: "the handler's resultRef holds control characters" };
  return { resultRef };
}

/** The handler's error message, in a form the server accepts as a reason. */
function failureReason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  // eslint-disable-next-line no-control-regex
  const text = message.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g, " ").trim();
  return (text || "the handler failed without a message").slice(0, DEFAULT_LIMITS.textLength);
}

/** Extends the lease every third of it while the claim runs. The server
 * refusing an extension means the claim is gone; a failed call is only
 * retried at the next tick, which leaves two more before the lease ends. */
function keepLease(deps: ClaimDeps, entry: JournalEntry, log: Logger, onLost: (reason: string) => void): () => void {
  const everyMs = (deps.leaseSeconds * 1000) / 3;
  let extending = false;
  const timer = setInterval(() => {
    if (extending) return;
    extending = true;
    deps.client
      .extendClaim({ id: BigInt(entry.id), claimToken: entry.token, leaseDuration: { seconds: BigInt(deps.leaseSeconds) } }, { timeoutMs: everyMs })
      .catch((error: unknown) => {
        if (isClaimGone(error)) onLost(describeError(error));
        else log.warn({ err: describeError(error) }, "could not extend the lease; trying again at the next tick");
      })
      .finally(() => (extending = false));
  }, everyMs);
  return () => clearInterval(timer);
}

/** Writes an `action_progress` event. The event log is the executor's
 * history, but a server that cannot take the note must not stop the work:
 * only an answer that the claim is gone stops it. */
async function recordProgress(deps: ClaimDeps, entry: JournalEntry, log: Logger, payload: JsonObject): Promise<void> {
  try {
    await persist(
      "recording progress",
      () => deps.client.emitEvent({ eventType: "action_progress", actionId: BigInt(entry.id), claimToken: entry.token, actor: deps.worker, payload }, UNARY),
      log,
    );
  } catch (error) {
    if (isClaimGone(error) || !isFinal(error)) throw error;
    log.warn({ err: describeError(error), step: payload.step }, "the server refused the progress event; carrying on");
  }
}

/** Whether this claim's `applied` step is already in the event log. */
async function appliedRecorded(deps: ClaimDeps, entry: JournalEntry, log: Logger): Promise<boolean> {
  let afterId = 0n;
  for (;;) {
    const page = await persist(
      "reading the action's progress",
      () => deps.client.listEvents({ actionId: BigInt(entry.id), eventTypes: ["action_progress"], afterId, pageSize: 1000 }, UNARY),
      log,
    );
    if (page.events.some((event) => event.payload?.step === "applied" && event.payload?.attempt === entry.attempt)) return true;
    if (page.events.length === 0 || page.nextAfterId <= afterId) return false;
    afterId = page.nextAfterId;
  }
}

function claimLog(deps: ClaimDeps, action: Action): Logger {
  return deps.log.child({ action: action.id.toString(), type: action.actionType, attempt: action.attempt });
}
