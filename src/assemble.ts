// Builds a server's parts from its settings, once the database is there:
// the stores and the commit seam with its subscribers, the dispatcher, the
// event hub, the LISTEN connection, the sweeper and scheduler, the webhook
// notifier, the health probe, the transport and the admin endpoint. Nothing starts here: the
// result is the ordered list of components that src/server.ts starts and,
// in reverse, stops.
import { setMaxListeners } from "node:events";
import type { ConnectRouter } from "@connectrpc/connect";
import type pg from "pg";
import type { Logger } from "pino";
import { ActionQueueService } from "../gen/actionq/v1/action_queue_service_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { registerActionQueueService } from "./api/action-queue-service.js";
import { HealthState, registerHealthService } from "./api/health.js";
import { errorInterceptor, loggingInterceptor } from "./api/interceptors.js";
import { registerReflection } from "./api/reflection.js";
import { StreamCounter } from "./api/stream-counter.js";
import { authInterceptor, ownerMayEnqueue } from "./auth/access.js";
import type { PrincipalsHolder } from "./auth/principals.js";
import type { Config } from "./config.js";
import { consoleHandler, isConsoleRequest } from "./console/serve.js";
import { ClaimDispatcher } from "./dispatch/claims.js";
import { EventHub } from "./dispatch/event-hub.js";
import { Scheduler } from "./dispatch/scheduler.js";
import { Sweeper } from "./dispatch/sweeper.js";
import { Wakeups, listenTarget } from "./dispatch/wakeups.js";
import { WindowKeeper } from "./dispatch/windows.js";
import { ActionqError } from "./errors.js";
import { type Component, component } from "./lifecycle.js";
import { AdminServer } from "./metrics/admin-server.js";
import { Metrics } from "./metrics/metrics.js";
import { StateLog } from "./metrics/state-log.js";
import { Notifier } from "./notify/notifier.js";
import { type Webhooks, WebhooksFileError, loadWebhooks } from "./notify/webhooks-file.js";
import { type LoadedPolicy, PolicyError, type PolicyHolder, warnUnreachableGroups } from "./policy/policy.js";
import { ActionStore } from "./store/actions.js";
import { Commits } from "./store/commits.js";
import { type Database, createPool } from "./store/db.js";
import { timeCheckouts } from "./store/pool-waits.js";
import { EventStore } from "./store/events.js";
import { listMigrations } from "./store/migrate.js";
import { PauseStore } from "./store/pauses.js";
import { ScheduleStore } from "./store/schedules.js";
import { ScheduleRunner } from "./schedule/runner.js";
import { TemplateActions } from "./schedule/template.js";
import { Ticks } from "./schedule/ticks.js";
import * as check from "./api/validate.js";
import { WindowStore } from "./store/windows.js";
import type { Tracing } from "./tracing/tracing.js";
import { Transport } from "./transport/transport.js";

export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
}

export interface Inputs {
  config: Config;
  log: Logger;
  database: Database;
  policy: PolicyHolder;
  auth: PrincipalsHolder | undefined;
  tlsFiles: TlsFiles | undefined;
  /** The webhooks file as read at start. */
  webhooks: Webhooks;
  /** Loaded only when config.tracing is on. */
  tracing?: Tracing;
}

/** What the server holds on to once its parts run. */
export interface Parts {
  /** In start order. */
  components: Component[];
  pool: pg.Pool;
  transport: Transport;
  dispatcher: ClaimDispatcher;
  hub: EventHub;
  wakeups: Wakeups;
  /** The API port, once the transport started. */
  port(): number;
  /** The admin endpoint, once started, when ACTIONQ_METRICS_LISTEN is set. */
  admin(): AdminServer | undefined;
  /** Whether the console is served (it may be built or not). */
  consoleServed: boolean;
  reloadPolicy(actor: string): Promise<{ version: string; changed: boolean }>;
  /** Reads ACTIONQ_WEBHOOKS_FILE again and puts it in force; an invalid
   * file throws WebhooksFileError and the endpoints in force stay. */
  reloadWebhooks(): Promise<{ endpoints: number }>;
}

export function assemble({ config, log, database, policy, auth, tlsFiles, webhooks, tracing }: Inputs): Parts {
  const pool = createPool(database, config.poolSize, log.child({ component: "pool" }));
  tracing?.traceQueries(pool);
  const commits = new Commits((name, error) => log.error({ err: (error as Error).message, listener: name }, "an effect of a commit failed"));
  const actions = new ActionStore(pool, config, commits, { parallel: Math.max(1, Math.floor(config.poolSize / 2)), maxBatch: 500 });
  const events = new EventStore(pool);
  const pauses = new PauseStore(pool, commits);
  const windows = new WindowStore(pool);
  const schedules = new ScheduleStore(pool);
  const templates = new TemplateActions(check.bounded(config.limits), config.maxAttempts, policy, (owner, project, actionType) =>
    ownerMayEnqueue(auth, owner, project, actionType),
  );
  const ticks = new Ticks(actions, templates, log.child({ component: "schedules" }), (tally) => metrics.onScheduleTicks(tally));
  // At most a second between looks, so that a schedule created on another
  // replica ticks on time here too.
  const scheduleRunner = new ScheduleRunner(ticks, pool, Math.min(config.pollIntervalMs, 1000), log.child({ component: "schedules" }));
  schedules.onChange(() => scheduleRunner.poke());
  const notifier = new Notifier(pool, webhooks, {
    database,
    pollIntervalMs: config.pollIntervalMs,
    log: log.child({ component: "webhooks" }),
    onOutcome: (endpoint, outcome) => metrics.onWebhookDelivery(endpoint, outcome),
  });
  const reloadWebhooks = async (): Promise<{ endpoints: number }> => {
    let next: Webhooks;
    try {
      next = await loadWebhooks(config.webhooksFile);
    } catch (error) {
      if (error instanceof WebhooksFileError) log.warn({ err: error.message }, "webhooks reload refused; the endpoints in force stay");
      throw error;
    }
    await notifier.reconfigure(next);
    log.info({ endpoints: next.endpoints.length, source: next.source }, "webhooks reloaded");
    return { endpoints: next.endpoints.length };
  };

  const dispatcher = new ClaimDispatcher(actions, config, log.child({ component: "dispatcher" }));
  actions.handOffTo({ offer: (actionType, project) => dispatcher.offerHandoff(actionType, project) });
  const windowKeeper = new WindowKeeper(windows, policy, () => dispatcher.wakeAll(), config.pollIntervalMs, log.child({ component: "windows" }));
  const reloadPolicy = policyReloader(
    policy,
    auth,
    events,
    log,
    () => windowKeeper.policyChanged(),
    () => notifier.poke(),
  );
  const hub = new EventHub(events, config, log.child({ component: "events" }));
  // Commits made on other replicas arrive as NOTIFY: they reach the
  // dispatcher and the event hub, the two effects every replica needs.
  // Without a LISTEN connection, a poll looks for what they would say.
  const wakeups = new Wakeups(
    listenTarget(config.listenUrl, database),
    Math.max(config.pollIntervalMs, 5000),
    config.fallbackPollMs,
    {
      onClaimable: (actionType) => dispatcher.onClaimable(actionType),
      onClaimEnded: (_session, actionId, attempt) => dispatcher.onClaimEnded(actionId, attempt),
      onEvents: () => hub.poke(),
      onResumed: () => {
        dispatcher.wakeAll();
        windowKeeper.poke();
      },
      onNotifications: () => notifier.poke(),
      onSchedulesChanged: () => scheduleRunner.poke(),
      onResync: () => {
        scheduleRunner.poke();
        dispatcher.wakeAll();
        windowKeeper.poke();
        void dispatcher.resync();
        hub.poke();
        notifier.poke();
      },
      // Schedules need nothing here: the runner looks every second anyway.
      // Nor do change windows: the claim statement reads them, by the
      // database's clock.
      onPoll: () => {
        dispatcher.poll();
        hub.poke();
        notifier.poke();
      },
    },
    log.child({ component: "listener" }),
  );
  const sweeper = new Sweeper(actions, config.sweepIntervalMs, log.child({ component: "sweeper" }), config.retentionMs, schedules);
  const scheduler = new Scheduler(actions, config.pollIntervalMs, log.child({ component: "scheduler" }));
  const metrics = new Metrics({
    liveCounts: () => pauses.liveCounts(),
    claimable: () => pauses.claimable(),
    heldByWindow: () => windows.heldCounts(),
    claimStreams: () => dispatcher.openStreams,
    waitingStreams: () => dispatcher.waitingWorkers.length,
    watchers: () => hub.watchers,
    listening: () => wakeups.listening,
    wakeupMode: () => wakeups.mode,
    webhookBacklog: () => notifier.backlog(),
    pool,
  });
  timeCheckouts(pool, (seconds) => metrics.onPoolWait(seconds));
  // Commits made here reach every effect through the one seam.
  const stateLog = new StateLog(log.child({ component: "state" }));
  commits.subscribe("dispatcher", (change) => dispatcher.committed(change));
  commits.subscribe("scheduler", (change) => scheduler.committed(change));
  commits.subscribe("metrics", (change) => metrics.committed(change));
  commits.subscribe("state log", (change) => stateLog.committed(change));
  commits.subscribe("webhooks", (change) => notifier.committed(change));
  commits.subscribe("schedules", (change) => scheduleRunner.committed(change));
  // With LISTEN, this server's own commits wake its streams and watchers
  // through NOTIFY like everyone else's. Polling, they need not wait for
  // the poll: what the commit made claimable, and its events, are known
  // here. (A concurrency key's room freed by a finish still waits for it.)
  commits.subscribe("local wakeups", (change) => {
    if (wakeups.mode !== "poll") return;
    if ("action" in change && change.action.status === "approved" && !change.action.deferred) dispatcher.onClaimable(change.action.action_type);
    hub.poke();
  });
  if (tracing) commits.subscribe("traces", (change) => tracing.committed(change));

  const stopping = new AbortController();
  const forceStop = new AbortController();
  // connect-node listens on the shutdown signal once per open call; a
  // server with thousands of streams is normal, not a leak.
  setMaxListeners(0, stopping.signal, forceStop.signal);
  const health = new HealthState([ActionQueueService.typeName, Health.typeName]);
  let healthTimer: NodeJS.Timeout | undefined;

  const routes = (router: ConnectRouter) => {
    registerActionQueueService(router, {
      config,
      actions,
      events,
      dispatcher,
      hub,
      pauses,
      windows,
      policy,
      schedules,
      templates,
      ticks,
      reloadPolicy,
      webhookBacklog: () => notifier.backlog(),
      shutdown: stopping.signal,
      openStreams: new StreamCounter(),
    });
    registerHealthService(router, health, stopping.signal);
    registerReflection(router, [ActionQueueService.typeName, Health.typeName]);
  };
  const webConsole = config.console
    ? consoleHandler(undefined, (error, url) =>
        log.warn({ url, err: error.message }, "a console file could not be read; was dist/web rebuilt under the running server?"),
      )
    : undefined;
  if (webConsole && "missing" in webConsole) log.warn({ reason: webConsole.missing }, "the web console cannot be served");
  const transport = new Transport({
    listen: config.listen,
    tls: tlsFiles,
    rpc: {
      routes,
      interceptors: [
        ...(tracing ? [tracing.interceptor] : []),
        loggingInterceptor(log.child({ component: "rpc" }), metrics),
        errorInterceptor(log),
        authInterceptor(auth),
      ],
      readMaxBytes: config.limits.messageBytes,
      shutdownSignal: forceStop.signal,
      // An unknown field or enum name in JSON is an error, not something
      // to drop: "RISK_LEVEL_DANGEROUSS" must not become SAFE.
      jsonOptions: { ignoreUnknownFields: false },
      grpc: true,
      grpcWeb: true,
      connect: true,
    },
    beside: (req, res) => {
      if (!webConsole || !isConsoleRequest(req)) return false;
      if (typeof webConsole === "function") webConsole(req, res);
      else {
        res.writeHead(503, { "content-type": "text/plain; charset=utf-8" });
        res.end(`the web console is not built: ${webConsole.missing}\n`);
      }
      return true;
    },
    corsOrigins: config.corsOrigins,
    messageBytes: config.limits.messageBytes,
    keepaliveMs: config.keepaliveMs,
    slowConsumerMs: config.slowConsumerMs,
    metrics,
    log,
  });
  const latest = listMigrations().at(-1)?.id ?? 0;
  const probes = {
    stopping: () => stopping.signal.aborted,
    notReady: async () => {
      if (stopping.signal.aborted) return "stopping";
      if (port === undefined) return "starting";
      const { rows } = await pool.query<{ id: number | null }>("SELECT max(id) AS id FROM /*schema*/schema_migrations");
      const applied = rows[0]?.id ?? 0;
      return applied >= latest ? null : `schema is at migration ${applied}, this build needs ${latest}`;
    },
  };
  let port: number | undefined;
  let admin: AdminServer | undefined;

  // Start order; shutdown runs it backwards: health turns NOT_SERVING
  // first, then the transport drains claim streams (releasing what they
  // never acknowledged) and ends watch streams before it asks connections
  // to close, and calls still running after the grace period see the force
  // signal; the database closes last. The dispatcher and the event hub are
  // shut down inside the transport's drain, and again by their own stop,
  // which then finds nothing left: it is there for a start that fails
  // before the transport listens.
  const components: Component[] = [
    // Stopped last, so that the spans of the shutdown itself are exported.
    component(
      "traces",
      () => {},
      () => tracing?.shutdown(),
    ),
    component(
      "pool",
      () => {},
      () => pool.end(),
    ),
    component(
      "listener",
      () => wakeups.start(),
      () => wakeups.stop(),
    ),
    component(
      "dispatcher",
      () => dispatcher.start(),
      () => dispatcher.shutdown(),
    ),
    component(
      "change windows",
      () => windowKeeper.start(),
      () => windowKeeper.stop(),
    ),
    component(
      "event hub",
      () => hub.start(),
      () => hub.shutdown(),
    ),
    component(
      "scheduler",
      () => scheduler.start(),
      () => scheduler.stop(),
    ),
    // Ticks are acted on only where ACTIONQ_SCHEDULER is on; any replica
    // may, and row locks let one act on each tick.
    component(
      "schedules",
      () => {
        if (config.scheduler) scheduleRunner.start();
      },
      () => scheduleRunner.stop(),
    ),
    component(
      "sweeper",
      () => sweeper.start(),
      () => sweeper.stop(),
    ),
    // Off the request path, on its own connection: stopping it aborts
    // requests in flight (they are sent again by whoever sends next).
    component(
      "webhooks",
      () => notifier.start(),
      () => notifier.stop(),
    ),
    component(
      "admin endpoint",
      async () => {
        if (config.metricsListen) admin = await AdminServer.start(config.metricsListen, metrics, probes, log.child({ component: "admin" }));
      },
      () => admin?.close(),
    ),
    component(
      "transport",
      async () => {
        port = await transport.start();
      },
      () =>
        transport.stop({
          graceMs: config.shutdownGraceMs,
          drain: async () => {
            await dispatcher.shutdown();
            hub.shutdown();
            stopping.abort();
          },
          force: () => forceStop.abort(),
        }),
    ),
    component(
      "health",
      () => {
        healthTimer = setInterval(
          () => {
            if (stopping.signal.aborted) return;
            const timeout = new Promise<boolean>((resolve) => setTimeout(resolve, 2000, false).unref());
            void Promise.race([
              pool.query("SELECT 1").then(
                () => true,
                () => false,
              ),
              timeout,
            ]).then((ok) => {
              if (!stopping.signal.aborted) health.set(ok);
            });
          },
          Math.min(5000, config.pollIntervalMs),
        );
        healthTimer.unref();
      },
      () => {
        health.set(false);
        clearInterval(healthTimer);
      },
    ),
  ];

  return {
    components,
    pool,
    transport,
    dispatcher,
    hub,
    wakeups,
    port: () => {
      if (port === undefined) throw new Error("the transport has not started");
      return port;
    },
    admin: () => admin,
    consoleServed: typeof webConsole === "function",
    reloadPolicy,
    reloadWebhooks,
  };
}

/** Reads the policy file again and puts it in force. The event comes
 * first: a policy is never in force without the record of which version
 * replaced which. */
function policyReloader(
  policy: PolicyHolder,
  auth: PrincipalsHolder | undefined,
  events: EventStore,
  log: Logger,
  installed: () => Promise<void>,
  appended: () => void,
) {
  return async (actor: string): Promise<{ version: string; changed: boolean }> => {
    let next: LoadedPolicy;
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
      await events.append({
        actionId: null,
        eventType: "policy_reloaded",
        actor,
        payload: { from: previous.version, to: next.version, source: next.source ?? "" },
      });
      // Not a change of an action, so not on the commit seam: the event
      // may notify webhook endpoints.
      appended();
      policy.install(next);
      // Its change windows replace those in force, on every server.
      await installed();
    }
    log.info({ policy: next.version, changed, actor }, "approval policy reloaded");
    if (changed) warnUnreachableGroups(next.policy, auth, log);
    return { version: next.version, changed };
  };
}
