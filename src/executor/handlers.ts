// Who does the work of an action type. Simulation (the default) only says
// what it would change; live mode calls a handler module plugged in per
// type with `--handler TYPE=MODULE`.
import { access } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import type { Action } from "../../gen/actionq/v1/action_pb.js";
import type { Logger } from "../log.js";
import { describeMutation, simulatedResult } from "./mutations.js";

export interface HandlerContext {
  /** Aborts when the claim is lost (cancelled, or the lease ran out): stop
   * and leave the system as it is. */
  signal: AbortSignal;
  /** True when an earlier run of this claim may have got part or all of the
   * way: the executor restarted in the middle. Check before mutating again. */
  resumed: boolean;
  log: Logger;
  /** The claim's attempt number, as the server counts it. */
  attempt: number;
}

/** A handler module's default export. */
export interface Handler {
  apply(action: Action, ctx: HandlerContext): Promise<{ resultRef: string }>;
}

export class HandlerLoadError extends Error {}

/** Applies nothing: logs the mutation it would make and reports it as the
 * result, after `delayMs` (so that demos and tests can see it in flight). */
export function simulator(delayMs: number): Handler {
  return {
    async apply(action, ctx) {
      const mutation = describeMutation(action);
      ctx.log.info({ mutation, resumed: ctx.resumed }, `simulating: would ${mutation}`);
      if (delayMs > 0) await sleep(delayMs, undefined, { signal: ctx.signal });
      return { resultRef: simulatedResult(mutation) };
    },
  };
}

/** Imports a handler module and checks its shape, so that a wrong path or
 * export fails at start rather than on the first claim. */
export async function loadHandler(actionType: string, modulePath: string): Promise<Handler> {
  const file = await existingFile(actionType, modulePath);
  let loaded: { default?: unknown };
  try {
    loaded = (await import(pathToFileURL(file).href)) as { default?: unknown };
  } catch (error) {
    throw new HandlerLoadError(`--handler ${actionType}: cannot import ${file}: ${(error as Error).message}`);
  }
  const handler = loaded.default as Partial<Handler> | undefined;
  if (!handler || typeof handler.apply !== "function") {
    throw new HandlerLoadError(`--handler ${actionType}: ${file} must export default { apply(action, ctx) }`);
  }
  return handler as Handler;
}

/** Simulation never runs plug-in code, not even a module's top level; it
 * only makes sure the path would work when the switch goes live. */
export async function checkHandlerFile(actionType: string, modulePath: string): Promise<void> {
  await existingFile(actionType, modulePath);
}

async function existingFile(actionType: string, modulePath: string): Promise<string> {
  const file = path.resolve(modulePath);
  try {
    await access(file);
  } catch {
    throw new HandlerLoadError(`--handler ${actionType}: no such file ${file}`);
  }
  return file;
}
