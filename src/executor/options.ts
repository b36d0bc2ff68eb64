// The executor's settings: command-line flags checked once, with defaults
// taken from the environment in one place.
import { homedir, hostname } from "node:os";
import path from "node:path";
import { type ClientEnvironment, DEFAULT_ADDRESS, hasCredential } from "../client-transport.js";
import { BUILTIN_TYPES } from "./mutations.js";

export interface ExecutorOptions {
  server: string;
  /** Names the journal and the logs. */
  worker: string;
  /** The worker and actor sent to the server: empty when a credential
   * names the caller and no --worker was given, so the server fills in
   * the authenticated principal. */
  identity: string;
  /** Token and TLS files for the connection. */
  clientEnv: ClientEnvironment;
  stateDir: string;
  live: boolean;
  /** action type -> handler module path */
  handlers: Map<string, string>;
  /** The types the claim stream subscribes to. */
  types: string[];
  maxInFlight: number;
  leaseSeconds: number;
  simulateDelayMs: number;
  logLevel: string;
  pretty: boolean;
}

/** What commander hands over: strings, as typed. */
export interface RawOptions {
  server?: string;
  worker?: string;
  stateDir?: string;
  live?: boolean;
  handler?: string[];
  types?: string[];
  maxInFlight: string;
  lease: string;
  simulateDelay: string;
  logLevel: string;
  pretty?: boolean;
}

/** Wrong flags: exit 2, as for any usage error. */
export class UsageError extends Error {}

/** The defaults that depend on where the executor runs. */
export interface Environment extends ClientEnvironment {
  XDG_STATE_HOME?: string;
}

const TYPE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$/;
const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

export function resolveOptions(raw: RawOptions, env: Environment): ExecutorOptions {
  const handlers = new Map<string, string>();
  for (const spec of raw.handler ?? []) {
    const split = spec.indexOf("=");
    const type = spec.slice(0, Math.max(split, 0));
    const module = spec.slice(split + 1);
    if (split <= 0 || module === "") throw new UsageError(`--handler ${JSON.stringify(spec)}: expected TYPE=MODULE`);
    checkTypeName("--handler", type);
    if (handlers.has(type)) throw new UsageError(`--handler ${type}: given twice`);
    handlers.set(type, module);
  }

  const live = raw.live === true;
  const given = [
    ...new Set(
      (raw.types ?? [])
        .flatMap((list) => list.split(","))
        .map((type) => type.trim())
        .filter(Boolean),
    ),
  ];
  for (const type of given) checkTypeName("--types", type);
  let types: string[];
  if (live) {
    if (handlers.size === 0) throw new UsageError("--live needs at least one --handler TYPE=MODULE: live mode only runs types with a handler");
    const unhandled = given.filter((type) => !handlers.has(type));
    if (unhandled.length > 0) throw new UsageError(`--live: no --handler for ${unhandled.join(", ")}`);
    types = given.length > 0 ? given : [...handlers.keys()];
  } else {
    const known = new Set<string>([...BUILTIN_TYPES, ...handlers.keys()]);
    const unknown = given.filter((type) => !known.has(type));
    if (unknown.length > 0) throw new UsageError(`--types: cannot simulate ${unknown.join(", ")}; known types are ${[...known].join(", ")}`);
    types = given.length > 0 ? given : [...BUILTIN_TYPES];
  }

  if (!LOG_LEVELS.includes(raw.logLevel)) throw new UsageError(`--log-level: must be one of ${LOG_LEVELS.join(", ")}`);
  const worker = raw.worker?.trim() || `executor:${hostname()}`;
  if (/\s/.test(worker)) throw new UsageError("--worker: must not contain spaces");
  const { XDG_STATE_HOME: _state, ...clientEnv } = env;
  return {
    server: raw.server?.trim() || env.ACTIONQ_ADDR?.trim() || DEFAULT_ADDRESS,
    worker,
    identity: raw.worker?.trim() || !hasCredential(env) ? worker : "",
    clientEnv,
    stateDir: path.resolve(raw.stateDir?.trim() || defaultStateDir(worker, env)),
    live,
    handlers,
    types,
    maxInFlight: integer("--max-in-flight", raw.maxInFlight, 1, 1000),
    leaseSeconds: integer("--lease", raw.lease, 3, 86_400),
    simulateDelayMs: integer("--simulate-delay", raw.simulateDelay, 0, 3_600_000),
    logLevel: raw.logLevel,
    pretty: raw.pretty === true,
  };
}

/** `$XDG_STATE_HOME/actionq/executor/<worker>`, as the XDG base directory
 * convention places state that should survive restarts. */
function defaultStateDir(worker: string, env: Environment): string {
  const base = env.XDG_STATE_HOME?.trim() || path.join(homedir(), ".local", "state");
  // Keep the name readable (`executor:web-1`) but never a path of its own.
  const directory = /^\.+$/.test(worker) ? encodeURIComponent(worker).replace(/\./g, "%2E") : worker.replace(/[/\\%]/g, (c) => encodeURIComponent(c));
  return path.join(base, "actionq", "executor", directory);
}

function integer(flag: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || value < min || value > max)
    throw new UsageError(`${flag}: must be a whole number from ${min} to ${max}; got ${JSON.stringify(text)}`);
  return value;
}

function checkTypeName(flag: string, type: string): void {
  if (!TYPE_NAME.test(type)) throw new UsageError(`${flag}: ${JSON.stringify(type)} is not an action type name`);
}
