// What every actionctl command shares: the server it talks to (the only
// place actionctl reads the environment), the output mode, and the wrapper
// that turns a command's outcome into output and an exit code.
import { type CallOptions, type Client, createClient } from "@connectrpc/connect";
import type { Command } from "commander";
import { DEFAULT_ADDRESS, baseUrl, clientTransport, hasCredential } from "../client-transport.js";
import { ActionQueueService } from "../../gen/actionq/v1/action_queue_service_pb.js";
import type { JsonObject } from "@bufbuild/protobuf";
import type { Action } from "../../gen/actionq/v1/action_pb.js";
import { EXIT, type Target, explain } from "./errors.js";
import { type OutputMode, outputMode, print, printError } from "./output.js";
import * as parse from "./parse.js";
import { actionSummary } from "./views.js";

export type ActionQueueClient = Client<typeof ActionQueueService>;

/** The global options, which may come before or after the command name. */
export interface GlobalOptions {
  output?: OutputMode;
  address?: string;
}

let globals: () => GlobalOptions = () => ({});

/** Where the global options are read from: the program, once parsed. */
export function applyGlobals(program: Command): void {
  globals = () => program.opts<GlobalOptions>();
}

export function target(): Target {
  const { ACTIONQ_ADDR, ACTIONQ_TOKEN, ACTIONQ_TLS_CA } = process.env;
  const address = globals().address?.trim() || ACTIONQ_ADDR?.trim() || DEFAULT_ADDRESS;
  const url = baseUrl(address);
  return { address, url, tls: url.toLowerCase().startsWith("https:"), token: Boolean(ACTIONQ_TOKEN?.trim()), ca: ACTIONQ_TLS_CA?.trim() || undefined };
}

/** A client of the target. Long-lived streams ask for HTTP/2 pings
 * (`pingIntervalMs`), so that a connection gone silent is noticed. */
export function client(options: { pingIntervalMs?: number } = {}): ActionQueueClient {
  const { ACTIONQ_TOKEN, ACTIONQ_TLS_CA, ACTIONQ_TLS_CLIENT_CERT, ACTIONQ_TLS_CLIENT_KEY } = process.env;
  return createClient(
    ActionQueueService,
    clientTransport(target().address, { ACTIONQ_TOKEN, ACTIONQ_TLS_CA, ACTIONQ_TLS_CLIENT_CERT, ACTIONQ_TLS_CLIENT_KEY }, options),
  );
}

/** For `events --follow` and `stream-claims`. */
export const STREAM_PINGS = { pingIntervalMs: 10_000 };

/** The output mode; `fallback` for a command whose default is not the
 * terminal test (`history` is text for people wherever it goes). */
export function mode(fallback?: OutputMode): OutputMode {
  return globals().output ?? fallback ?? outputMode(undefined);
}

// A unary call that takes this long means the server is stuck; say so
// instead of hanging an operator's shell.
export const UNARY: CallOptions = { timeoutMs: 30_000 };

/** Runs a command body: its return value is the exit code; a thrown error
 * is explained in one line on stderr and exits with its code of EXIT. */
// biome-ignore lint/suspicious/noConfusingVoidType: a command body that returns nothing exits 0; void is what such an async function returns.
export function run<Args extends unknown[]>(body: (...args: Args) => Promise<number | void>): (...args: Args) => Promise<void> {
  return async (...args) => {
    let code: number;
    try {
      code = (await body(...args)) ?? EXIT.ok;
    } catch (error) {
      const explained = await explain(error, target());
      await printError(mode(), explained.document, explained.sentence);
      code = explained.exitCode;
    }
    process.exit(code);
  };
}

/** Options naming who acts (--actor, --approver, --worker, --created-by):
 * the server takes them from the credential when there is one, so they are
 * required only without ACTIONQ_TOKEN or a client certificate. */
export const IDENTITY_NOTE = "(required unless ACTIONQ_TOKEN or a client certificate names you)";

export function requireIdentity(_program: Command, command: Command): void {
  if (hasCredential(process.env)) return;
  for (const option of command.options) {
    if (!option.description.endsWith(IDENTITY_NOTE)) continue;
    const value = command.getOptionValue(option.attributeName()) as string | undefined;
    if (!value) command.error(`error: required option '${option.flags}' not specified (or set ACTIONQ_TOKEN to act as its principal)`);
  }
}

export const idArgument = ["<id>", "the action id", parse.id] as const;

/** A response carrying one action: its proto JSON, or a summary that says
 * first what happened. */
export function printAction(json: JsonObject, action: Action | undefined, what: string): Promise<void> {
  return print(mode(), { json, table: () => actionSummary(action, what) });
}
