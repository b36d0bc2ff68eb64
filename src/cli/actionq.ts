#!/usr/bin/env node
// `actionq serve` runs the server; `actionq migrate` only brings the schema
// up to date. Both take their settings from the environment. `actionq
// executor` is the reference worker, a client of a running server.
import { Command } from "commander";
import { ConfigError, describeSettings, loadConfig } from "../config.js";
import { runExecutor } from "../executor/main.js";
import type { RawOptions } from "../executor/options.js";
import { createLogger } from "../log.js";
import { WebhooksFileError } from "../notify/webhooks-file.js";
import { PolicyError } from "../policy/policy.js";
import { AuthFileEditError, appendToken } from "../auth/auth-file-edit.js";
import { AuthFileError, ROLES, type Role, newToken } from "../auth/principals.js";
import { NAME_PATTERN } from "../domain/vocabulary.js";
import { EXIT, EXIT_CODES_HELP, StartupError, checkCanListen, databaseStartupError, listenStartupError } from "./actionq-errors.js";
import { exitQuietlyOnClosedPipe } from "./output.js";
import { packageVersion } from "./version.js";
import { ListenStartError } from "../dispatch/wakeups.js";
import { ActionqServer, StartRefused } from "../server.js";
import { startEmbeddedPostgres } from "../store/embedded-postgres.js";
import { migrate } from "../store/migrate.js";

function config() {
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      // One line per bad variable, like every other startup error.
      for (const problem of error.problems) process.stderr.write(`actionq: ${problem}\n`);
      process.exit(EXIT.badSettings);
    }
    throw error;
  }
}

/** Ends the process with one line for an error a person can fix. */
function exitWith(error: StartupError): never {
  process.stderr.write(`actionq: ${error.message}\n`);
  process.exit(error.exitCode);
}

const program = new Command("actionq")
  .description("actionq: a gRPC action queue over PostgreSQL")
  .version(packageVersion(), "-V, --version", "print actionq's version")
  .showHelpAfterError();

program
  .command("serve")
  .description("serve gRPC, gRPC-Web and Connect (and the web console) on ACTIONQ_LISTEN")
  .option("--pretty", "human-readable logs instead of JSON lines")
  .option("--insecure", "allow serving without ACTIONQ_AUTH_FILE on an address other than loopback (something in front must authenticate callers)")
  .addHelpText("after", `\n${describeSettings()}\n${EXIT_CODES_HELP}`)
  .action(async (options: { pretty?: boolean; insecure?: boolean }) => {
    const settings = config();
    const log = createLogger(settings.logLevel, { pretty: options.pretty });
    let server: ActionqServer;
    try {
      await checkCanListen(settings.listen.host, settings.listen.port);
      server = await ActionqServer.start(settings, log, { insecure: options.insecure });
    } catch (error) {
      if (error instanceof StartupError) exitWith(error);
      const known =
        error instanceof ListenStartError
          ? databaseStartupError(error.cause, error.url, settings.listenUrl ? "ACTIONQ_LISTEN_URL" : "ACTIONQ_URL")
          : (listenStartupError(error, settings.listen.host, settings.listen.port) ?? databaseStartupError(error, settings.databaseUrl));
      if (known) exitWith(known);
      if (error instanceof PolicyError) {
        process.stderr.write(`actionq: ACTIONQ_POLICY ${error.message}\n`);
        process.exit(EXIT.badSettings);
      }
      if (error instanceof WebhooksFileError) {
        process.stderr.write(`actionq: ACTIONQ_WEBHOOKS_FILE ${error.message}\n`);
        process.exit(EXIT.badSettings);
      }
      if (error instanceof AuthFileError) {
        process.stderr.write(`actionq: ACTIONQ_AUTH_FILE ${error.message}\n`);
        process.exit(EXIT.badSettings);
      }
      if (error instanceof StartRefused) {
        process.stderr.write(`actionq: ${error.message}\n`);
        process.exit(EXIT.badSettings);
      }
      log.fatal({ err: error }, "could not start");
      process.exit(EXIT.failed);
    }
    process.on("SIGHUP", () => {
      server.reloadPolicy("server:sighup").catch((error: unknown) => log.error({ err: (error as Error).message }, "policy reload on SIGHUP failed"));
      server
        .reloadAuth()
        .catch((error: unknown) => log.error({ err: (error as Error).message }, "ACTIONQ_AUTH_FILE reload on SIGHUP failed; the principals in force stay"));
      server
        .reloadWebhooks()
        .catch((error: unknown) => log.error({ err: (error as Error).message }, "ACTIONQ_WEBHOOKS_FILE reload on SIGHUP failed; the endpoints in force stay"));
      server.reloadTls().catch((error: unknown) => log.error({ err: (error as Error).message }, "TLS reload on SIGHUP failed; the certificate in force stays"));
    });
    let signals = 0;
    const stop = (signal: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        log.warn({ signal }, "second signal: exiting now");
        process.exit(130);
      }
      log.info({ signal }, "stopping");
      server.close().then(
        () => process.exit(0),
        (error: unknown) => {
          log.error({ err: error }, "shutdown failed");
          process.exit(1);
        },
      );
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
  });

program
  .command("token")
  .description("print a new bearer token, and the entry that names it in ACTIONQ_AUTH_FILE (only the hash is stored)")
  .option("--name <principal>", "the principal the token is for, such as human:alice, to print (or --append) a complete entry")
  .option("--role <role...>", `roles of a new entry: ${ROLES.join(", ")} (default: viewer)`)
  .option("--group <group...>", "approver groups of a new entry, such as sre-leads (what a policy's approvers requirements count)")
  .option("--append <file>", "add the entry to this auth file (YAML or .json; created when missing); an existing principal of that name gets one more token")
  .addHelpText(
    "after",
    "\nA running server reads the auth file again on SIGHUP.\n\nExit codes:\n  0  printed (and appended)\n  2  an unknown role, a bad name, or an auth file that is unreadable or would become invalid",
  )
  .action(async (options: { name?: string; role?: string[]; group?: string[]; append?: string }) => {
    exitQuietlyOnClosedPipe();
    const unknown = (options.role ?? []).filter((role) => !(ROLES as readonly string[]).includes(role));
    if (unknown.length > 0) exitWith(new StartupError(`--role ${unknown.join(", ")}: not a role; the roles are ${ROLES.join(", ")}`, EXIT.badSettings));
    const roles = options.role as Role[] | undefined;
    if (options.name !== undefined && (options.name === "" || /[\s\u0000-\u001f\u007f]/.test(options.name))) {
      exitWith(new StartupError("--name: a principal's name has no spaces or control characters, for example human:alice", EXIT.badSettings));
    }
    const badGroup = (options.group ?? []).find((group) => !NAME_PATTERN.test(group));
    if (badGroup !== undefined) {
      exitWith(
        new StartupError(`--group ${JSON.stringify(badGroup)}: a group is a name: a letter or digit, then letters, digits or _ . : / -`, EXIT.badSettings),
      );
    }
    if (options.append !== undefined && options.name === undefined)
      exitWith(new StartupError("--append needs --name: the principal the token is for", EXIT.badSettings));
    const { token, hash } = newToken();
    if (options.append !== undefined) {
      try {
        const result = await appendToken(options.append, options.name!, roles, hash, options.group);
        process.stdout.write(`token: ${token}\n`);
        const what = result.newPrincipal
          ? `added ${options.name} (${result.roles.join(", ")}${result.groups.length ? `; groups ${result.groups.join(", ")}` : ""})`
          : `added a token to ${options.name} (${result.roles.join(", ")})`;
        process.stderr.write(`${what} to ${options.append}${result.fileExisted ? "" : " (created)"}; send SIGHUP to the server to load it\n`);
      } catch (error) {
        if (error instanceof AuthFileEditError) exitWith(new StartupError(error.message, EXIT.badSettings));
        throw error;
      }
      return;
    }
    process.stdout.write(`token: ${token}\n`);
    if (options.name) {
      process.stdout.write(
        `\n# for ACTIONQ_AUTH_FILE:\nprincipals:\n  - name: ${JSON.stringify(options.name)}\n    roles: [${(roles ?? ["viewer"]).join(", ")}]\n    tokens: ["${hash}"]\n${options.group?.length ? `    groups: [${options.group.join(", ")}]\n` : ""}`,
      );
    } else {
      process.stdout.write(`hash:  ${hash}\n`);
    }
  });

program
  .command("migrate")
  .description("create or upgrade the schema, then exit")
  .addHelpText("after", `\n${describeSettings()}\n${EXIT_CODES_HELP}`)
  .action(async () => {
    const settings = config();
    // Synchronous: the result line must be the last line on stdout.
    const log = createLogger(settings.logLevel, { sync: true });
    const embedded = settings.databaseUrl ? undefined : await startEmbeddedPostgres({ dataDir: settings.dataDir, log });
    try {
      const database = embedded
        ? { url: embedded.url, schema: settings.schema, pooler: "none" as const }
        : { url: settings.databaseUrl!, schema: settings.schema, pooler: settings.databasePooler };
      const applied = await migrate(database, log);
      process.stdout.write(`${JSON.stringify({ schema: settings.schema, applied: applied.map((m) => m.id) })}\n`);
    } catch (error) {
      const known = databaseStartupError(error, settings.databaseUrl);
      if (!known) throw error;
      await embedded?.stop();
      exitWith(known);
    } finally {
      await embedded?.stop();
    }
  });

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

program
  .command("executor")
  .description("run approved actions: hold a claim stream, simulate (default) or apply each action, and record every step in the event log")
  .option("--server <addr>", "the actionq server, host:port or http://host:port (default: $ACTIONQ_ADDR or 127.0.0.1:50051)")
  .option("--worker <name>", "worker name, kept as claimed_by and as the actor of progress events (default: executor:<hostname>)")
  .option("--state-dir <dir>", "journal of held claims, for resuming after a crash (default: $XDG_STATE_HOME/actionq/executor/<worker>)")
  .option("--live", "apply actions with the plugged handlers; without it every action is only simulated")
  .option("--handler <type=module>", "handler module for a type, default export { apply(action, ctx) } (repeatable)", collect)
  .option("--types <types>", "comma-separated types to take (default: the four built-in types; in live mode, the types with a handler)", collect)
  .option("--max-in-flight <n>", "most claims held at once", "4")
  .option("--lease <seconds>", "lease of each claim, extended every third of it while a handler runs", "60")
  .option("--simulate-delay <ms>", "how long a simulated apply takes", "0")
  .option("--log-level <level>", "pino log level", "info")
  .option("--pretty", "human-readable logs instead of JSON lines")
  // Usage errors exit 2, as runExecutor's own checks do.
  .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : 2))
  .action(async (options: RawOptions) => {
    process.exit(await runExecutor(options));
  });

await program.parseAsync();
