// `actionq executor`: wires the flags, the handlers, the journal and the
// client together, and turns signals into a graceful stop.
import { ClientSetupError } from "../client-transport.js";
import { packageVersion } from "../cli/version.js";
import { tracingWanted } from "../config.js";
import { createLogger } from "../log.js";
import type { ClaimDeps } from "./claim-run.js";
import { Executor, ExecutorFatalError } from "./executor.js";
import { type Handler, HandlerLoadError, checkHandlerFile, loadHandler, simulator } from "./handlers.js";
import { Journal, JournalLockedError } from "./journal.js";
import { type ExecutorOptions, type RawOptions, UsageError, resolveOptions } from "./options.js";
import { type QueueClient, connect } from "./rpc.js";

/** Runs the executor to its end and returns the exit code: 0 after a
 * signal, 1 when it cannot work, 2 for wrong flags or handler modules. */
export async function runExecutor(raw: RawOptions): Promise<number> {
  let options: ExecutorOptions;
  let handlers: Map<string, Handler>;
  let tracing: { shutdown(): Promise<void> } | undefined;
  try {
    // The only place the executor reads the environment.
    const { ACTIONQ_ADDR, ACTIONQ_TOKEN, ACTIONQ_TLS_CA, ACTIONQ_TLS_CLIENT_CERT, ACTIONQ_TLS_CLIENT_KEY, XDG_STATE_HOME } = process.env;
    options = resolveOptions(raw, { ACTIONQ_ADDR, ACTIONQ_TOKEN, ACTIONQ_TLS_CA, ACTIONQ_TLS_CLIENT_CERT, ACTIONQ_TLS_CLIENT_KEY, XDG_STATE_HOME });
    handlers = await prepareHandlers(options);
    // The standard OTEL_* variables, as for the server; off, no SDK is loaded.
    if (tracingWanted(process.env)) tracing = (await import("../tracing/process-sdk.js")).startProcessTracing("actionq-executor", packageVersion());
  } catch (error) {
    if (!(error instanceof UsageError) && !(error instanceof HandlerLoadError)) throw error;
    process.stderr.write(`actionq executor: ${error.message}\n`);
    return 2;
  }

  let client: QueueClient;
  try {
    client = connect(options.server, options.clientEnv);
  } catch (error) {
    if (!(error instanceof ClientSetupError)) throw error;
    process.stderr.write(`actionq executor: ${error.message}\n`);
    return 2;
  }
  // With a credential and no --worker, the server records the principal as
  // the worker: the logs should say the same name.
  const worker = options.identity === "" ? await principalName(client, options.worker) : options.worker;
  const log = createLogger(options.logLevel, { pretty: options.pretty, name: "actionq-executor" }).child({ worker });
  let journal: Journal;
  try {
    journal = await Journal.open(options.stateDir);
  } catch (error) {
    if (!(error instanceof JournalLockedError)) throw error;
    log.fatal({ stateDir: options.stateDir }, error.message);
    return 1;
  }

  const deps: ClaimDeps = {
    client,
    journal,
    worker: options.identity,
    mode: options.live ? "live" : "simulate",
    leaseSeconds: options.leaseSeconds,
    handlerFor: (actionType) => handlers.get(actionType),
    log,
  };
  const executor = new Executor(options, client, deps, log);

  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (!stop.signal.aborted) {
      log.info({ signal, held: executor.held }, "stopping: no new claims; finishing the ones held (signal again to leave them)");
      stop.abort();
      return;
    }
    // The journal keeps what is held; the next start on this state
    // directory resumes it (and takes over the lock of a process gone).
    log.warn({ signal, held: executor.held }, "second signal: leaving held claims to the next start");
    process.exit(0);
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

  log.info(
    {
      server: options.server,
      mode: deps.mode,
      types: options.types,
      maxInFlight: options.maxInFlight,
      leaseSeconds: options.leaseSeconds,
      stateDir: options.stateDir,
    },
    "executor started",
  );
  try {
    await executor.run(stop.signal);
  } catch (error) {
    if (!(error instanceof ExecutorFatalError)) throw error;
    log.fatal(error.message);
    return 1;
  } finally {
    await journal.close();
    await tracing?.shutdown();
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
  }
  log.info("executor stopped");
  return 0;
}

/** Live mode imports the plugged modules; simulation runs the built-in
 * simulator for every type and never imports plug-in code. */
async function prepareHandlers(options: ExecutorOptions): Promise<Map<string, Handler>> {
  const handlers = new Map<string, Handler>();
  if (options.live) {
    for (const [actionType, modulePath] of options.handlers) handlers.set(actionType, await loadHandler(actionType, modulePath));
    return handlers;
  }
  for (const [actionType, modulePath] of options.handlers) await checkHandlerFile(actionType, modulePath);
  const simulate = simulator(options.simulateDelayMs);
  for (const actionType of options.types) handlers.set(actionType, simulate);
  return handlers;
}

/** The principal the credential names, as the server sees it; the fallback
 * when the server cannot say (not up yet: the executor retries its calls
 * anyway, so this must not stop it). */
async function principalName(client: QueueClient, fallback: string): Promise<string> {
  try {
    const caller = await client.getCaller({}, { timeoutMs: 5_000 });
    return caller.authenticationEnabled ? caller.name : fallback;
  } catch {
    return fallback;
  }
}
