// One PostgreSQL for the whole run: ACTIONQ_TEST_URL when set, else a
// testcontainers PostgreSQL when a Docker engine answers, else an embedded
// PostgreSQL in a temporary directory. Each test file makes its own schema.
import { existsSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { startEmbeddedPostgres } from "../../src/store/embedded-postgres.js";
import { startPgBouncer } from "./pgbouncer.js";

declare module "vitest" {
  export interface ProvidedContext {
    databaseUrl: string;
    databaseKind: string;
    /** Where test servers' pools connect: databaseUrl itself, or a
     * PgBouncer in front of it (ACTIONQ_TEST_PGBOUNCER=1). */
    serverDatabaseUrl: string;
  }
}

async function dockerAnswers(): Promise<boolean> {
  if (!process.env.DOCKER_HOST && !existsSync("/var/run/docker.sock")) return false;
  try {
    const { getContainerRuntimeClient } = await import("testcontainers");
    await getContainerRuntimeClient();
    return true;
  } catch {
    return false;
  }
}

/** With ACTIONQ_TEST_PGBOUNCER=1, test servers reach PostgreSQL through a
 * real PgBouncer in transaction mode (their LISTEN connection stays
 * direct): .ci/run runs a named subset of the suite that way. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const stopDatabase = await database(project);
  if (process.env.ACTIONQ_TEST_PGBOUNCER !== "1") {
    project.provide("serverDatabaseUrl", project.getProvidedContext().databaseUrl);
    return stopDatabase;
  }
  const bouncer = await startPgBouncer(project.getProvidedContext().databaseUrl);
  project.provide("serverDatabaseUrl", bouncer.url);
  return async () => {
    await bouncer.stop();
    await stopDatabase();
  };
}

async function database(project: TestProject): Promise<() => Promise<void>> {
  const given = process.env.ACTIONQ_TEST_URL;
  if (given) {
    project.provide("databaseUrl", given);
    project.provide("databaseKind", "ACTIONQ_TEST_URL");
    return async () => {};
  }
  if (await dockerAnswers()) {
    const { PostgreSqlContainer } = await import("@testcontainers/postgresql");
    const container = await new PostgreSqlContainer("postgres:17-alpine").start();
    project.provide("databaseUrl", container.getConnectionUri());
    project.provide("databaseKind", "testcontainers");
    return async () => {
      await container.stop();
    };
  }
  const dir = await mkdtemp(path.join(tmpdir(), "actionq-test-"));
  // The embedded server runs as the postgres user when we are root.
  await chmod(dir, 0o755);
  const embedded = await startEmbeddedPostgres({
    dataDir: dir,
    // Durability does not matter for a throwaway test database.
    settings: ["fsync=off", "synchronous_commit=off", "full_page_writes=off"],
  });
  project.provide("databaseUrl", embedded.url);
  project.provide("databaseKind", "embedded");
  return async () => {
    await embedded.stop();
    await rm(dir, { recursive: true, force: true });
  };
}
