// Puts the pieces together: database (embedded or given), migrations, the
// pool and the LISTEN connection, the dispatcher, the event hub, the sweeper
// and the server speaking gRPC, gRPC-Web and Connect (HTTP/2 and HTTP/1.1)
// on one port.
// close() undoes it all in the order that loses nothing.
import { setMaxListeners } from "node:events";
import { readFile } from "node:fs/promises";
import type http from "node:http";
import type http2 from "node:http2";
import { type ConnectRouter, cors as connectCors, createContextValues } from "@connectrpc/connect";
import type pg from "pg";
import type { Logger } from "pino";
import { ActionQueueService } from "../gen/actionq/v1/action_queue_service_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { StreamCounter, registerActionQueueService } from "./api/action-queue-service.js";
import { authInterceptor, kNodeRequest } from "./auth/access.js";
import { AuthFileError, PrincipalsHolder } from "./auth/principals.js";
import { SlowConsumers } from "./api/slow-consumers.js";
import cors from "cors";
import { withPlainGrpcMessages } from "./api/grpc-message.js";
import { DualProtocolServer } from "./api/http-server.js";
import { nodeAdapter } from "./api/node-adapter.js";
import { HealthState, registerHealthService } from "./api/health.js";
import { errorInterceptor, loggingInterceptor } from "./api/interceptors.js";
import { registerReflection } from "./api/reflection.js";
import type { Config } from "./config.js";
import { ActionqError } from "./errors.js";
import { PolicyError, PolicyHolder } from "./policy/policy.js";
import { ClaimDispatcher } from "./dispatch/claims.js";
import { EventHub } from "./dispatch/event-hub.js";
import { Listener } from "./dispatch/listener.js";
import { Scheduler } from "./dispatch/scheduler.js";
import { Sweeper } from "./dispatch/sweeper.js";
import { AdminServer } from "./metrics/admin-server.js";
import { Metrics } from "./metrics/metrics.js";
import { ActionStore } from "./store/actions.js";
import { createPool } from "./store/db.js";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "./store/embedded-postgres.js";
import { EventStore } from "./store/events.js";
import { listMigrations, migrate } from "./store/migrate.js";
import { PauseStore } from "./store/pauses.js";

/** CORS for browsers on the allowed origins: Connect's and gRPC-Web's
 * headers, plus x-request-id. */
function corsFor(origins: string[]) {
  if (origins.length === 0) return undefined;
  return cors({
    origin: origins.includes("*") ? "*" : origins,
    methods: [...connectCors.allowedMethods],
    allowedHeaders: [...connectCors.allowedHeaders, "X-Request-Id", "Authorization"],
    exposedHeaders: [...connectCors.exposedHeaders, "X-Request-Id"],
    maxAge: 7200,
  });
}

/** A connection can vanish without a FIN (a cut cable, a proxy dropping
 * state); its streams would hold their claims until the ack deadline and
 * never learn. A PING that is not answered in time closes it, which ends
 * its streams and releases what they did not acknowledge. */
function pingOrClose(session: http2.ServerHttp2Session, timeoutMs: number, log: Logger): void {
  if (session.closed || session.destroyed) return;
  const deadline = setTimeout(() => {
    log.info({ remote: session.socket?.remoteAddress }, "connection did not answer a keepalive PING; closing it");
    session.destroy();
  }, timeoutMs);
  deadline.unref();
  try {
    session.ping((error) => {
      clearTimeout(deadline);
      if (error && !session.destroyed) session.destroy();
    });
  } catch {
    // The session is closing already.
    clearTimeout(deadline);
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
      `ACTIONQ_LISTEN=${config.listen.host}:${config.listen.port} is not a loopback address and ACTIONQ_AUTH_FILE is unset: anyone who can reach the port could enqueue, approve and complete actions. Set ACTIONQ_AUTH_FILE (see the Security section of the README), or pass --insecure if something in front of actionq authenticates callers.`,
    );
  }
  log.warn({ listen: `${config.listen.host}:${config.listen.port}` }, "INSECURE: serving without authentication on a non-loopback address (--insecure); every caller may do everything and name itself anyone");
}

async function readTls(config: Config): Promise<{ cert: Buffer; key: Buffer; ca?: Buffer } | undefined> {
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
    readonly pool: pg.Pool,
    readonly port: number,
    private readonly http: DualProtocolServer,
    private readonly sessions: Set<http2.ServerHttp2Session>,
    private readonly parts: {
      embedded: EmbeddedPostgres | undefined;
      listener: Listener;
      dispatcher: ClaimDispatcher;
      hub: EventHub;
      sweeper: Sweeper;
      scheduler: Scheduler;
      health: HealthState;
      healthTimer: NodeJS.Timeout;
      stopping: AbortController;
      forceStop: AbortController;
      reloadPolicy: (actor: string) => Promise<{ version: string; changed: boolean }>;
      admin: AdminServer | undefined;
      auth: PrincipalsHolder | undefined;
      slowConsumers: SlowConsumers;
    },
  ) {}

  /** Reads the TLS certificate, key and client CA again (SIGHUP): new
   * connections use them, open ones keep theirs. Unreadable files throw
   * StartRefused and the files in force stay. */
  async reloadTls(): Promise<boolean> {
    const files = await readTls(this.config);
    if (!files) return false;
    this.http.setSecureContext({ cert: files.cert, key: files.key, ca: files.ca });
    this.log.info("TLS certificate reloaded");
    return true;
  }

  /** Reads ACTIONQ_AUTH_FILE again (SIGHUP). An invalid file throws
   * AuthFileError and the principals in force stay. */
  async reloadAuth(): Promise<{ principals: number } | undefined> {
    const auth = this.parts.auth;
    if (!auth) return undefined;
    const result = await auth.reload();
    this.log.info({ principals: result.principals, source: auth.current.source }, "principals reloaded");
    return result;
  }

  /** Reads the policy file again and puts it in force (SIGHUP and the
   * ReloadPolicy RPC). An invalid file leaves the policy in force and is
   * refused with INVALID_ARGUMENT naming the bad key. */
  reloadPolicy(actor: string): Promise<{ version: string; changed: boolean }> {
    return this.parts.reloadPolicy(actor);
  }

  /** What this server holds open right now. */
  get stats(): { claimStreams: number; watchers: number; listening: boolean } {
    return { claimStreams: this.parts.dispatcher.openStreams, watchers: this.parts.hub.watchers, listening: this.parts.listener.connected };
  }

  /** The admin endpoint's port, when ACTIONQ_METRICS_LISTEN is set. */
  get metricsPort(): number | undefined {
    return this.parts.admin?.port;
  }

  get address(): string {
    const host = this.config.listen.host.includes(":") ? `[${this.config.listen.host}]` : this.config.listen.host;
    return `${host}:${this.port}`;
  }

  /** Throws PolicyError, before touching any database, when the policy
   * file is invalid. */
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
    let embedded: EmbeddedPostgres | undefined;
    let databaseUrl = config.databaseUrl;
    if (!databaseUrl) {
      embedded = await startEmbeddedPostgres({ dataDir: config.dataDir, log, settings: options.embeddedSettings });
      databaseUrl = embedded.url;
    }
    try {
      await migrate(databaseUrl, config.schema, log);
      return await ActionqServer.serve(config, log, databaseUrl, embedded, policy, auth, tlsFiles);
    } catch (error) {
      await embedded?.stop().catch(() => {});
      throw error;
    }
  }

  private static async serve(
    config: Config,
    log: Logger,
    databaseUrl: string,
    embedded: EmbeddedPostgres | undefined,
    policy: PolicyHolder,
    auth: PrincipalsHolder | undefined,
    tlsFiles: { cert: Buffer; key: Buffer; ca?: Buffer } | undefined,
  ): Promise<ActionqServer> {
    const pool = createPool(databaseUrl, config.schema, config.poolSize, log.child({ component: "pool" }));
    const actions = new ActionStore(pool, {
      maxChainDepth: config.maxChainDepth,
      rateLimitPerHour: config.rateLimitPerHour,
      ackTimeoutMs: config.ackTimeoutMs,
      retryBackoffMs: config.retryBackoffMs,
      retryBackoffMaxMs: config.retryBackoffMaxMs,
    }, { parallel: Math.max(1, Math.floor(config.poolSize / 2)), maxBatch: 500 });
    const events = new EventStore(pool);
    const pauses = new PauseStore(pool);
    // The event comes first: a policy is never in force without the record
    // of which version replaced which.
    const reloadPolicy = async (actor: string) => {
      let next;
      try {
        next = await policy.read();
      } catch (error) {
        if (!(error instanceof PolicyError)) throw error;
        log.warn({ err: error.message }, "policy reload refused; the policy in force stays");
        throw new ActionqError("invalid_argument", "INVALID_POLICY", `ACTIONQ_POLICY ${error.message}; the policy in force (${policy.current.version}) stays`, {
          source: error.source,
        });
      }
      const previous = policy.current;
      const changed = next.version !== previous.version;
      if (changed) {
        await events.append({ actionId: null, eventType: "policy_reloaded", actor, payload: { from: previous.version, to: next.version, source: next.source ?? "" } });
        policy.install(next);
      }
      log.info({ policy: next.version, changed, actor }, "approval policy reloaded");
      return { version: next.version, changed };
    };
    const dispatcher = new ClaimDispatcher(actions, config, log.child({ component: "dispatcher" }));
    const hub = new EventHub(events, config, log.child({ component: "events" }));
    const listener = new Listener(
      databaseUrl,
      config.schema,
      Math.max(config.pollIntervalMs, 5000),
      {
        onClaimable: (actionType) => dispatcher.onClaimable(actionType),
        onClaimEnded: (_session, actionId, attempt) => dispatcher.onClaimEnded(actionId, attempt),
        onEvents: () => hub.poke(),
        onResumed: () => dispatcher.wakeAll(),
        onResync: () => {
          dispatcher.wakeAll();
          void dispatcher.resync();
          hub.poke();
        },
      },
      log.child({ component: "listener" }),
    );
    try {
      await listener.start();
    } catch (error) {
      await pool.end();
      throw error;
    }
    const sweeper = new Sweeper(actions, config.sweepIntervalMs, log.child({ component: "sweeper" }), config.retentionMs);
    sweeper.start();
    const metrics = new Metrics({
      liveCounts: () => pauses.liveCounts(),
      claimable: () => pauses.claimable(),
      claimStreams: () => dispatcher.openStreams,
      watchers: () => hub.watchers,
      listening: () => listener.connected,
      pool,
    });
    const scheduler = new Scheduler(actions, config.pollIntervalMs, log.child({ component: "scheduler" }));
    scheduler.start();

    const stopping = new AbortController();
    const forceStop = new AbortController();
    // connect-node listens on the shutdown signal once per open call; a
    // server with thousands of streams is normal, not a leak.
    setMaxListeners(0, stopping.signal, forceStop.signal);
    const health = new HealthState([ActionQueueService.typeName, Health.typeName]);
    const healthTimer = setInterval(() => {
      if (stopping.signal.aborted) return;
      const timeout = new Promise<boolean>((resolve) => setTimeout(resolve, 2000, false).unref());
      void Promise.race([pool.query("SELECT 1").then(() => true, () => false), timeout]).then((ok) => {
        if (!stopping.signal.aborted) health.set(ok);
      });
    }, Math.min(5000, config.pollIntervalMs));
    healthTimer.unref();

    const routes = (router: ConnectRouter) => {
      registerActionQueueService(router, {
        config,
        actions,
        events,
        dispatcher,
        hub,
        pauses,
        metrics,
        scheduler,
        policy,
        reloadPolicy,
        shutdown: stopping.signal,
        openStreams: new StreamCounter(),
      });
      registerHealthService(router, health, stopping.signal);
      registerReflection(router, [ActionQueueService.typeName, Health.typeName]);
    };
    const slowConsumers = new SlowConsumers(config.slowConsumerMs, log.child({ component: "streams" }), metrics);
    const handler = nodeAdapter({
      routes,
      interceptors: [loggingInterceptor(log.child({ component: "rpc" }), metrics), errorInterceptor(log), authInterceptor(auth), slowConsumers.interceptor()],
      contextValues: (req) => createContextValues().set(kNodeRequest, req),
      readMaxBytes: config.limits.messageBytes,
      shutdownSignal: forceStop.signal,
      // An unknown field or enum name in JSON is an error, not something to
      // drop: "RISK_LEVEL_DANGEROUSS" must not become SAFE.
      jsonOptions: { ignoreUnknownFields: false },
      grpc: true,
      grpcWeb: true,
      connect: true,
      log: log.child({ component: "rpc" }),
    });
    const allowCors = corsFor(config.corsOrigins);
    const http = new DualProtocolServer((req, res) => {
      if ("stream" in res) withPlainGrpcMessages(res);
      if (!allowCors) return handler(req, res);
      allowCors(req as http.IncomingMessage, res as http.ServerResponse, () => handler(req, res));
    }, tlsFiles && { cert: tlsFiles.cert, key: tlsFiles.key, ca: tlsFiles.ca, requestCert: tlsFiles.ca !== undefined, rejectUnauthorized: false }, {
      // Room for a few requests of the largest allowed size in flight on one
      // connection (Node's default, 10 MB, resets every stream of a session
      // that goes over it).
      maxSessionMemory: Math.max(32, Math.ceil((4 * config.limits.messageBytes) / 2 ** 20)),
      // Frames for streams that already ended count as invalid, and Node
      // closes a session after 1000 of them; a client that cancels many
      // streams over a connection held for days would reach that.
      maxSessionInvalidFrames: 1_000_000,
    });
    const sessions = new Set<http2.ServerHttp2Session>();
    http.h2.on("session", (session) => {
      sessions.add(session);
      const keepalive = setInterval(() => pingOrClose(session, config.keepaliveMs, log), config.keepaliveMs);
      keepalive.unref();
      session.on("close", () => {
        clearInterval(keepalive);
        sessions.delete(session);
      });
      session.on("error", () => {});
    });
    const latest = listMigrations().at(-1)?.id ?? 0;
    const probes = {
      stopping: () => stopping.signal.aborted,
      notReady: async () => {
        if (stopping.signal.aborted) return "stopping";
        const { rows } = await pool.query<{ id: number | null }>("SELECT max(id) AS id FROM schema_migrations");
        const applied = rows[0]?.id ?? 0;
        return applied >= latest ? null : `schema is at migration ${applied}, this build needs ${latest}`;
      },
    };
    let port: number;
    let admin: AdminServer | undefined;
    try {
      port = await http.listen(config.listen.port, config.listen.host);
      if (config.metricsListen) admin = await AdminServer.start(config.metricsListen, metrics, probes, log.child({ component: "admin" }));
    } catch (error) {
      await Promise.allSettled([http.close(), sweeper.stop(), scheduler.stop(), listener.stop(), dispatcher.shutdown()]);
      hub.shutdown();
      slowConsumers.stop();
      clearInterval(healthTimer);
      await pool.end();
      throw error;
    }
    const server = new ActionqServer(config, log, databaseUrl, pool, port, http, sessions, {
      embedded,
      listener,
      dispatcher,
      hub,
      sweeper,
      scheduler,
      health,
      healthTimer,
      stopping,
      forceStop,
      reloadPolicy,
      admin,
      auth,
      slowConsumers,
    });
    log.info({ address: server.address, schema: config.schema, database: embedded ? `embedded (${embedded.dataDir})` : "ACTIONQ_URL" }, "actionq is serving");
    return server;
  }

  /** Graceful stop: refuse new connections, drain claim streams (releasing
   * what they never acknowledged), end watch streams, let unary calls in
   * progress finish within the grace period, then close the database. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const { embedded, listener, dispatcher, hub, sweeper, scheduler, health, healthTimer, stopping, forceStop, admin, slowConsumers } = this.parts;
    this.log.info("shutting down");
    health.set(false);
    clearInterval(healthTimer);
    const closed = this.http.close();
    await dispatcher.shutdown();
    hub.shutdown();
    stopping.abort();
    for (const session of this.sessions) session.close();
    this.http.closeIdle();
    const grace = new Promise<void>((resolve) => setTimeout(resolve, this.config.shutdownGraceMs).unref());
    await Promise.race([closed, grace]);
    forceStop.abort();
    for (const session of this.sessions) session.destroy();
    this.http.destroyAll();
    // A destroyed session does not always report 'close'; do not wait on it
    // for ever.
    await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
    slowConsumers.stop();
    await sweeper.stop();
    await admin?.close();
    await scheduler.stop();
    await listener.stop();
    await this.pool.end();
    if (embedded) await embedded.stop();
    this.log.info("stopped");
  }
}
