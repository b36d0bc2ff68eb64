#!/usr/bin/env node
// `actionq serve` runs the server; `actionq migrate` only brings the schema
// up to date. Both take their settings from the environment. `actionq
// executor` is the reference worker, a client of a running server.
import { Command } from "commander";
import { ConfigError, describeSettings, loadConfig } from "../config.js";
import { runExecutor } from "../executor/main.js";
import type { RawOptions } from "../executor/options.js";
import { createLogger } from "../log.js";
import { PolicyError } from "../policy/policy.js";
import { AuthFileError, newToken } from "../auth/principals.js";
import { exitQuietlyOnClosedPipe } from "./output.js";
import { ActionqServer, StartRefused } from "../server.js";
import { startEmbeddedPostgres } from "../store/embedded-postgres.js";
import { migrate } from "../store/migrate.js";

function config() {
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`actionq: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}

const program = new Command("actionq").description("actionq: a gRPC action queue over PostgreSQL").showHelpAfterError();

program
  .command("serve")
  .description("serve gRPC, gRPC-Web and Connect on ACTIONQ_LISTEN")
  .option("--pretty", "human-readable logs instead of JSON lines")
  .option("--insecure", "allow serving without ACTIONQ_AUTH_FILE on an address other than loopback (something in front must authenticate callers)")
  .addHelpText("after", `\n${describeSettings()}`)
  .action(async (options: { pretty?: boolean; insecure?: boolean }) => {
    const settings = config();
    const log = createLogger(settings.logLevel, { pretty: options.pretty });
    let server: ActionqServer;
    try {
      server = await ActionqServer.start(settings, log, { insecure: options.insecure });
    } catch (error) {
      if (error instanceof PolicyError) {
        process.stderr.write(`actionq: ACTIONQ_POLICY ${error.message}\n`);
        process.exit(2);
      }
      if (error instanceof AuthFileError) {
        process.stderr.write(`actionq: ACTIONQ_AUTH_FILE ${error.message}\n`);
        process.exit(2);
      }
      if (error instanceof StartRefused) {
        process.stderr.write(`actionq: ${error.message}\n`);
        process.exit(2);
      }
      log.fatal({ err: error }, "could not start");
      process.exit(1);
    }
    process.on("SIGHUP", () => {
      server.reloadPolicy("server:sighup").catch((error: unknown) => log.error({ err: (error as Error).message }, "policy reload on SIGHUP failed"));
      server.reloadAuth().catch((error: unknown) => log.error({ err: (error as Error).message }, "ACTIONQ_AUTH_FILE reload on SIGHUP failed; the principals in force stay"));
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
  .description("print a new bearer token, and the line that names it in ACTIONQ_AUTH_FILE (only the hash is stored)")
  .option("--name <principal>", "the principal the token is for, to print a complete entry")
  .option("--role <role...>", "roles for the printed entry", ["viewer"])
  .action((options: { name?: string; role: string[] }) => {
    exitQuietlyOnClosedPipe();
    const { token, hash } = newToken();
    process.stdout.write(`token: ${token}\n`);
    if (options.name) {
      process.stdout.write(
        `\n# for ACTIONQ_AUTH_FILE:\nprincipals:\n  - name: ${JSON.stringify(options.name)}\n    roles: [${options.role.join(", ")}]\n    tokens: ["${hash}"]\n`,
      );
    } else {
      process.stdout.write(`hash:  ${hash}\n`);
    }
  });

program
  .command("migrate")
  .description("create or upgrade the schema, then exit")
  .addHelpText("after", `\n${describeSettings()}`)
  .action(async () => {
    const settings = config();
    const log = createLogger(settings.logLevel);
    const embedded = settings.databaseUrl ? undefined : await startEmbeddedPostgres({ dataDir: settings.dataDir, log });
    try {
      const applied = await migrate(settings.databaseUrl ?? embedded!.url, settings.schema, log);
      process.stdout.write(`${JSON.stringify({ schema: settings.schema, applied: applied.map((m) => m.id) })}\n`);
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
