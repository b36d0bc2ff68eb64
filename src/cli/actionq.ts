#!/usr/bin/env node
// `actionq serve` runs the server; `actionq migrate` only brings the schema
// up to date. Both take their settings from the environment.
import { Command } from "commander";
import { ConfigError, describeSettings, loadConfig } from "../config.js";
import { createLogger } from "../log.js";
import { ActionqServer } from "../server.js";
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
  .addHelpText("after", `\n${describeSettings()}`)
  .action(async (options: { pretty?: boolean }) => {
    const settings = config();
    const log = createLogger(settings.logLevel, { pretty: options.pretty });
    let server: ActionqServer;
    try {
      server = await ActionqServer.start(settings, log);
    } catch (error) {
      log.fatal({ err: error }, "could not start");
      process.exit(1);
    }
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

await program.parseAsync();
