// An actionq server: checks what must hold before anything starts (no open
// port without authentication, readable TLS files, a valid policy and
// webhooks file), brings
// up the database (embedded or given) and its schema, then starts the
// parts src/assemble.ts builds, in order. close() stops them in reverse,
// which is the order that loses nothing; a start that fails unwinds the
// same way.
import { readFile } from "node:fs/promises";
import type pg from "pg";
import type { Logger } from "pino";
import { type Parts, type TlsFiles, assemble } from "./assemble.js";
import { PrincipalsHolder } from "./auth/principals.js";
import type { Config } from "./config.js";
import type { WakeupMode } from "./dispatch/wakeups.js";
import { Lifecycle, component } from "./lifecycle.js";
import { loadWebhooks } from "./notify/webhooks-file.js";
import { PolicyHolder, warnUnreachableGroups } from "./policy/policy.js";
import { packageVersion } from "./cli/version.js";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "./store/embedded-postgres.js";
import { migrate } from "./store/migrate.js";
import { type Database, warnIfJitOn } from "./store/db.js";

/** Where the database is, for a log line: host, port and database name,
 * never the password. */
function describeDatabase(url: string): string {
  try {
    const parsed = new URL(url);
    const host = decodeURIComponent(parsed.hostname) || parsed.searchParams.get("host") || "local socket";
    return `postgres at ${host}${parsed.port ? `:${parsed.port}` : ""}${parsed.pathname || "/"}${parsed.username ? ` as ${decodeURIComponent(parsed.username)}` : ""}`;
  } catch {
    return "ACTIONQ_URL";
  }
}

export interface StartOptions {
  /** Extra settings for an embedded PostgreSQL (tests use fsync=off). */
  embeddedSettings?: string[];
  /** Serve without authentication on an address other than loopback
   * (`actionq serve --insecure`). */
  insecure?: boolean;
}

/** The server will not start as configured; the message says why and what
 * to change. `actionq serve` exits 2. */
export class StartRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StartRefused";
  }
}

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || /^::ffff:127\./i.test(host);
}

/** Secure by default: without principals, only this machine may connect,
 * unless the operator says --insecure. */
function refuseOpenWithoutAuth(config: Config, options: StartOptions, log: Logger): void {
  if (config.authFile || isLoopback(config.listen.host)) return;
  if (!options.insecure) {
    throw new StartRefused(
      `ACTIONQ_LISTEN=${config.listen.host}:${config.listen.port} is not a loopback address and ACTIONQ_AUTH_FILE is unset: anyone who can reach the port could enqueue, approve and complete actions. Set ACTIONQ_AUTH_FILE (see docs/security.md), or pass --insecure if something in front of actionq authenticates callers.`,
    );
  }
  log.warn(
    { listen: `${config.listen.host}:${config.listen.port}` },
    "INSECURE: serving without authentication on a non-loopback address (--insecure); every caller may do everything and name itself anyone",
  );
}

async function readTls(config: Config): Promise<TlsFiles | undefined> {
  if (!config.tls) return undefined;
  const read = async (variable: string, file: string) => {
    try {
      return await readFile(file);
    } catch (error) {
      throw new StartRefused(`${variable}=${file}: cannot read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
  };
  const cert = await read("ACTIONQ_TLS_CERT", config.tls.cert);
  const key = await read("ACTIONQ_TLS_KEY", config.tls.key);
  const ca = config.tls.clientCa ? await read("ACTIONQ_TLS_CLIENT_CA", config.tls.clientCa) : undefined;
  return { cert, key, ca };
}

export class ActionqServer {
  private closing: Promise<void> | undefined;

  private constructor(
    readonly config: Config,
    readonly log: Logger,
    readonly databaseUrl: string,
    private readonly parts: Parts,
    private readonly lifecycle: Lifecycle,
    private readonly auth: PrincipalsHolder | undefined,
    private readonly policy: PolicyHolder,
  ) {}

  get pool(): pg.Pool {
    return this.parts.pool;
  }

  get port(): number {
    return this.parts.port();
  }

  /** Reads the TLS certificate, key and client CA again (SIGHUP): new
   * connections use them, open ones keep theirs. Unreadable files throw
   * StartRefused and the files in force stay. */
  async reloadTls(): Promise<boolean> {
    const files = await readTls(this.config);
    if (!files) return false;
    this.parts.transport.setSecureContext(files);
    this.log.info("TLS certificate reloaded");
    return true;
  }

  /** Reads ACTIONQ_AUTH_FILE again (SIGHUP). An invalid file throws
   * AuthFileError and the principals in force stay. */
  async reloadAuth(): Promise<{ principals: number } | undefined> {
    if (!this.auth) return undefined;
    const result = await this.auth.reload();
    this.log.info({ principals: result.principals, source: this.auth.current.source }, "principals reloaded");
    warnUnreachableGroups(this.policy.current.policy, this.auth, this.log);
    return result;
  }

  /** Reads the policy file again and puts it in force (SIGHUP and the
   * ReloadPolicy RPC). An invalid file leaves the policy in force and is
   * refused with INVALID_ARGUMENT naming the bad key. */
  reloadPolicy(actor: string): Promise<{ version: string; changed: boolean }> {
    return this.parts.reloadPolicy(actor);
  }

  /** Reads ACTIONQ_WEBHOOKS_FILE again (SIGHUP). An invalid file throws
   * WebhooksFileError and the endpoints in force stay. */
  reloadWebhooks(): Promise<{ endpoints: number }> {
    return this.parts.reloadWebhooks();
  }

  /** What this server holds open right now. */
  get stats(): { claimStreams: number; waitingWorkers: string[]; watchers: number; listening: boolean; wakeups: WakeupMode } {
    return {
      claimStreams: this.parts.dispatcher.openStreams,
      waitingWorkers: this.parts.dispatcher.waitingWorkers,
      watchers: this.parts.hub.watchers,
      listening: this.parts.wakeups.listening,
      wakeups: this.parts.wakeups.mode,
    };
  }

  /** The admin endpoint's port, when ACTIONQ_METRICS_LISTEN is set. */
  get metricsPort(): number | undefined {
    return this.parts.admin()?.port;
  }

  get address(): string {
    const host = this.config.listen.host.includes(":") ? `[${this.config.listen.host}]` : this.config.listen.host;
    return `${host}:${this.port}`;
  }

  /** Throws PolicyError (or WebhooksFileError), before touching any
   * database, when the policy (or webhooks) file is invalid. */
  static async start(config: Config, log: Logger, options: StartOptions = {}): Promise<ActionqServer> {
    refuseOpenWithoutAuth(config, options, log);
    const auth = config.authFile ? await PrincipalsHolder.open(config.authFile) : undefined;
    if (auth) log.info({ principals: auth.current.byName.size, source: auth.current.source }, "principals loaded");
    const tlsFiles = await readTls(config);
    if (auth && !tlsFiles && !isLoopback(config.listen.host)) {
      log.warn("bearer tokens will cross the network in cleartext: set ACTIONQ_TLS_CERT and ACTIONQ_TLS_KEY unless a TLS proxy sits in front");
    }
    const policy = await PolicyHolder.open(config.policyPath);
    log.info({ policy: policy.current.version, source: policy.current.source ?? "built-in" }, "approval policy loaded");
    warnUnreachableGroups(policy.current.policy, auth, log);
    const webhooks = await loadWebhooks(config.webhooksFile);
    if (webhooks.source) log.info({ endpoints: webhooks.endpoints.length, source: webhooks.source }, "webhooks loaded");

    const lifecycle = new Lifecycle(log);
    let embedded: EmbeddedPostgres | undefined;
    let databaseUrl = config.databaseUrl ?? "";
    // The pooler setting speaks of ACTIONQ_URL; an embedded PostgreSQL is direct.
    const database = (): Database => ({ url: databaseUrl, schema: config.schema, pooler: embedded ? "none" : config.databasePooler });
    await lifecycle.start([
      component(
        "embedded PostgreSQL",
        async () => {
          if (databaseUrl) return;
          embedded = await startEmbeddedPostgres({ dataDir: config.dataDir, log, settings: options.embeddedSettings });
          databaseUrl = embedded.url;
        },
        () => embedded?.stop(),
      ),
      component("schema", async () => {
        await migrate(database(), log);
      }),
    ]);
    // Off, the SDK is never imported.
    const tracing = config.tracing ? (await import("./tracing/tracing.js")).startTracing(log, packageVersion()) : undefined;
    const parts = assemble({ config, log, database: database(), policy, auth, tlsFiles, webhooks, tracing });
    await lifecycle.start(parts.components);
    await warnIfJitOn(parts.pool, database(), log).catch((error: Error) => log.warn({ err: error.message }, "could not read the jit setting"));
    const server = new ActionqServer(config, log, databaseUrl, parts, lifecycle, auth, policy);
    log.info(
      {
        address: server.address,
        tls: tlsFiles ? (tlsFiles.ca ? "on, client certificates accepted" : "on") : "off",
        authentication: auth ? `on (${auth.current.byName.size} principal${auth.current.byName.size === 1 ? "" : "s"} from ${auth.current.source})` : "off",
        console: parts.consoleServed ? `${tlsFiles ? "https" : "http"}://${server.address}/` : "off",
        schema: config.schema,
        database: embedded ? `embedded (${embedded.dataDir})` : describeDatabase(databaseUrl),
        wakeups: parts.wakeups.listener
          ? `LISTEN on ${config.listenUrl ? describeDatabase(config.listenUrl) : "the same database"}`
          : `polling every ${config.fallbackPollMs} ms`,
      },
      "actionq is serving",
    );
    return server;
  }

  /** Graceful stop: refuse new connections, drain claim streams (releasing
   * what they never acknowledged), end watch streams, let unary calls in
   * progress finish within the grace period, then close the database. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.log.info("shutting down");
      await this.lifecycle.stop();
      this.log.info("stopped");
    })();
    return this.closing;
  }
}
