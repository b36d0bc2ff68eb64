// The server's settings: one table, each row an environment variable with its
// default, its help line and the zod schema that parses it into its field of
// Config. Config is inferred from the table, so adding a setting is one row.
// Nothing else in the code base reads process.env for server settings.
import { z } from "zod";

/** Letters, digits and underscores, not starting with a digit; short enough
 * that `actionq_<schema>` is still a valid NOTIFY channel name. */
export const SCHEMA_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,47}$/;

// The schemas below give one message whatever is wrong with a number (not a
// number, fractional, out of range), because the range is what a person needs.
const seconds = (min: number, max: number) => {
  const error = `must be a number of seconds from ${min} to ${max}`;
  return z.coerce
    .number({ error })
    .min(min, { error })
    .max(max, { error })
    .transform((s) => Math.round(s * 1000));
};

const integer = (min: number, max: number) => {
  const error = `must be a whole number from ${min} to ${max}`;
  return z.coerce.number({ error }).int({ error }).min(min, { error }).max(max, { error });
};

const oneOf = <const T extends readonly [string, ...string[]]>(values: T) => z.enum(values, { error: `must be one of ${values.join(", ")}` });

const onOff = oneOf(["on", "off"]).transform((value) => value === "on");

const listenAddress = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, "must look like HOST:PORT, for example 127.0.0.1:50051")
  .transform((value, ctx) => {
    const colon = value.lastIndexOf(":");
    const host = value.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
    const port = Number(value.slice(colon + 1));
    if (port > 65535) ctx.addIssue({ code: "custom", message: "port must be at most 65535" });
    return { host, port };
  });

/** A comma-separated list; unset is the empty list. */
const origins = z
  .string()
  .optional()
  .transform((value = "") =>
    value
      .split(",")
      .map((origin) => origin.trim())
      .filter((origin) => origin !== ""),
  )
  .pipe(z.array(z.string().regex(/^(\*|https?:\/\/[^\s/,]+)$/, "must be * or origins such as https://ops.example.com, comma-separated")));

/** One environment variable: the row `actionq serve --help` prints and the
 * README documents, and the schema that turns its text into a Config field. */
export interface Setting<T extends z.ZodType = z.ZodType> {
  env: `ACTIONQ_${string}`;
  /** The value used when the variable is unset or empty, as it would be
   * written in the environment; without one the schema sees undefined. */
  fallback?: string;
  doc: string;
  schema: T;
}

const setting = <T extends z.ZodType>(env: Setting["env"], row: Omit<Setting<T>, "env">): Setting<T> => ({ env, ...row });

/** Fields of Config, each a setting or a group of them (`config.limits.*`). */
interface Rows {
  [field: string]: Setting | Rows;
}

const isSetting = (row: Setting | Rows): row is Setting => typeof row.env === "string";

/** One row per variable, keyed by its field of Config, in the order of
 * `actionq serve --help`. */
const TABLE = {
  databaseUrl: setting("ACTIONQ_URL", {
    schema: z
      .string()
      .regex(/^postgres(ql)?:\/\//, "must be a postgres:// or postgresql:// URL")
      .optional(),
    doc: "PostgreSQL connection URL. Unset: start an embedded PostgreSQL under ACTIONQ_DATA_DIR.",
  }),
  schema: setting("ACTIONQ_SCHEMA", {
    schema: z.string().regex(SCHEMA_PATTERN, "must be letters, digits and underscores, not starting with a digit, at most 48 characters"),
    fallback: "actionq",
    doc: "Schema holding actionq's tables.",
  }),
  listen: setting("ACTIONQ_LISTEN", {
    schema: listenAddress,
    fallback: "127.0.0.1:50051",
    doc: "HOST:PORT the server listens on: gRPC, gRPC-Web and Connect over HTTP/2 cleartext, and Connect and gRPC-Web over HTTP/1.1, on the same port. Port 0 picks a free port.",
  }),
  metricsListen: setting("ACTIONQ_METRICS_LISTEN", {
    schema: listenAddress.optional(),
    doc: "HOST:PORT of the admin HTTP endpoint: Prometheus /metrics, /healthz and /readyz. Unset: off. Keep it on loopback or a private network.",
  }),
  console: setting("ACTIONQ_CONSOLE", {
    schema: onOff,
    fallback: "on",
    doc: "Serve the web console on the API port at / (plain GETs over HTTP/1.1 and HTTP/2, cleartext or TLS like the API). off: the port answers RPCs only.",
  }),
  corsOrigins: setting("ACTIONQ_CORS_ORIGINS", {
    schema: origins,
    doc: "Browser origins allowed to call the API (CORS), comma-separated, or *. Unset: no CORS headers.",
  }),
  dataDir: setting("ACTIONQ_DATA_DIR", {
    schema: z.string().min(1),
    fallback: "./.actionq",
    doc: "Where the embedded PostgreSQL keeps its data (only when ACTIONQ_URL is unset).",
  }),
  maxChainDepth: setting("ACTIONQ_MAX_CHAIN_DEPTH", {
    schema: integer(0, 1000),
    fallback: "3",
    doc: "Deepest allowed parent/child chain; a deeper child is refused with FAILED_PRECONDITION.",
  }),
  rateLimitPerHour: setting("ACTIONQ_RATE_LIMIT_PER_HOUR", {
    schema: integer(0, 10_000_000),
    fallback: "20",
    doc: "Enqueues allowed per rolling hour for each `agent:` or `script:` producer.",
  }),
  leaseMs: setting("ACTIONQ_LEASE_SECONDS", {
    schema: seconds(1, 86_400),
    fallback: "300",
    doc: "Lease of a claim when the worker asks for none.",
  }),
  maxLeaseMs: setting("ACTIONQ_MAX_LEASE_SECONDS", {
    schema: seconds(1, 7 * 86_400),
    fallback: "86400",
    doc: "Longest lease a worker may ask for, in claims and extensions.",
  }),
  ackTimeoutMs: setting("ACTIONQ_ACK_TIMEOUT_SECONDS", {
    schema: seconds(0.05, 3600),
    fallback: "10",
    doc: "How long a streamed claim may stay unacknowledged before it is released to other workers.",
  }),
  maxAttempts: setting("ACTIONQ_MAX_ATTEMPTS", {
    schema: integer(1, 1000),
    fallback: "1",
    doc: "How many times an action may fail (FailAction with `retryable`) before it stays FAILED, when its producer sets no `max_attempts`. 1: the first failure is final.",
  }),
  retryBackoffMs: setting("ACTIONQ_RETRY_BACKOFF_SECONDS", {
    schema: seconds(0.01, 86_400),
    fallback: "10",
    doc: "Wait before the first retry; it doubles with each failure, with jitter down to half.",
  }),
  retryBackoffMaxMs: setting("ACTIONQ_RETRY_BACKOFF_MAX_SECONDS", {
    schema: seconds(0.01, 7 * 86_400),
    fallback: "3600",
    doc: "Longest wait between retries.",
  }),
  maxStreamAgeMs: setting("ACTIONQ_MAX_STREAM_AGE_SECONDS", {
    schema: seconds(1, 30 * 86_400),
    fallback: "3600",
    doc: "A claim stream older than this gets a Drain (cause MAX_AGE) and ends, so that long-lived workers reconnect and spread across replicas. Acknowledged claims are kept.",
  }),
  keepaliveMs: setting("ACTIONQ_KEEPALIVE_SECONDS", {
    schema: seconds(0.05, 3600),
    fallback: "20",
    doc: "HTTP/2 PING interval on every connection; a connection that does not answer within the same time is closed and its unacknowledged claims released.",
  }),
  maxInFlight: setting("ACTIONQ_MAX_IN_FLIGHT", {
    schema: integer(1, 100_000),
    fallback: "1000",
    doc: "Largest `max_in_flight` a claim stream may ask for.",
  }),
  handoff: setting("ACTIONQ_HANDOFF", {
    schema: onOff,
    fallback: "on",
    doc: "Hand an action to a claim stream of this server that waits for work in the enqueue's own statement (written already claimed, pushed after the commit), when nothing the stream accepts is ready before it. off: every claim comes from a claim statement after the enqueue's notification.",
  }),
  heartbeatMs: setting("ACTIONQ_HEARTBEAT_SECONDS", {
    schema: seconds(0.05, 3600),
    fallback: "10",
    doc: "Quiet time after which a claim or event stream gets a heartbeat message.",
  }),
  sweepIntervalMs: setting("ACTIONQ_SWEEP_INTERVAL_SECONDS", {
    schema: seconds(0.05, 3600),
    fallback: "5",
    doc: "How often each server requeues expired leases and unacknowledged deliveries.",
  }),
  retentionMs: setting("ACTIONQ_RETENTION_SECONDS", {
    schema: seconds(60, 100 * 365 * 86_400).optional(),
    doc: "Finished actions older than this move from the hot table to actions_archive (GetAction still finds them; ListActions and GetQueueStats no longer count them). Schedule ticks that enqueued nothing (skipped, failed) older than this are deleted. Events are never moved or deleted. Unset: finished actions stay.",
  }),
  scheduler: setting("ACTIONQ_SCHEDULER", {
    schema: onOff,
    fallback: "on",
    doc: "Run the scheduler, which enqueues the actions of schedules at their ticks. Any number of servers may run it (each tick is enqueued once); off: this server leaves ticks to the others.",
  }),
  pollIntervalMs: setting("ACTIONQ_POLL_INTERVAL_SECONDS", {
    schema: seconds(0.05, 3600),
    fallback: "5",
    doc: "Backstop poll for new work and events, in case a notification was missed.",
  }),
  poolSize: setting("ACTIONQ_POOL_SIZE", {
    schema: integer(2, 1000),
    fallback: "9",
    doc: "PostgreSQL connections in the pool; the LISTEN connection comes on top, so a server uses at most this plus one, whatever the number of streams (plus one more with webhook endpoints).",
  }),
  shutdownGraceMs: setting("ACTIONQ_SHUTDOWN_GRACE_SECONDS", {
    schema: seconds(0, 3600),
    fallback: "10",
    doc: "On SIGTERM or SIGINT, how long calls in progress may take to finish.",
  }),
  policyPath: setting("ACTIONQ_POLICY", {
    schema: z.string().min(1).optional(),
    doc: "Path of the approval policy file (YAML or JSON; see the safety model). Unset: the built-in standard policy. Reloaded on SIGHUP.",
  }),
  authFile: setting("ACTIONQ_AUTH_FILE", {
    schema: z.string().min(1).optional(),
    doc: "Principals, their roles, scopes, token hashes and certificate subjects (YAML or JSON; see Security). Unset: no authentication, and the server listens only on loopback unless started with --insecure. Reloaded on SIGHUP.",
  }),
  webhooksFile: setting("ACTIONQ_WEBHOOKS_FILE", {
    schema: z.string().min(1).optional(),
    doc: "Outgoing webhooks: endpoints, the notification kinds each wants, their secrets and filters (YAML or JSON; see Webhooks). Unset: nobody is notified. Reloaded on SIGHUP.",
  }),
  tls: {
    cert: setting("ACTIONQ_TLS_CERT", {
      schema: z.string().min(1).optional(),
      doc: "PEM certificate chain of the server. With ACTIONQ_TLS_KEY, the port speaks TLS only.",
    }),
    key: setting("ACTIONQ_TLS_KEY", {
      schema: z.string().min(1).optional(),
      doc: "PEM private key of the server.",
    }),
    clientCa: setting("ACTIONQ_TLS_CLIENT_CA", {
      schema: z.string().min(1).optional(),
      doc: "PEM CA bundle for client certificates (mutual TLS). A verified certificate identifies its principal by subject.",
    }),
  },
  limits: {
    payloadBytes: setting("ACTIONQ_MAX_PAYLOAD_BYTES", {
      schema: integer(2, 16 * 1024 * 1024),
      fallback: "65536",
      doc: "Largest `payload` (and `rollback_payload`, event payload) as JSON, in bytes.",
    }),
    textLength: setting("ACTIONQ_MAX_TEXT_LENGTH", {
      schema: integer(16, 1024 * 1024),
      fallback: "4096",
      doc: "Longest free-text field (reasons, notes), in characters.",
    }),
    refLength: setting("ACTIONQ_MAX_REF_LENGTH", {
      schema: integer(16, 1024 * 1024),
      fallback: "1024",
      doc: "Longest reference field (target_ref, result_ref, source_refs entries, correlation_id, idempotency_key, node, service), in characters.",
    }),
    sourceRefs: setting("ACTIONQ_MAX_SOURCE_REFS", {
      schema: integer(0, 100_000),
      fallback: "64",
      doc: "Most `source_refs` entries on one action.",
    }),
    pageSize: setting("ACTIONQ_MAX_PAGE_SIZE", {
      schema: integer(1, 100_000),
      fallback: "1000",
      doc: "Largest `page_size` of ListActions and ListEvents, and `max_batch` of WatchEvents; a larger one is refused.",
    }),
    batch: setting("ACTIONQ_MAX_BATCH", {
      schema: integer(1, 100_000),
      fallback: "1000",
      doc: "Most items in one EnqueueActions or CompleteActions call.",
    }),
    messageBytes: setting("ACTIONQ_MAX_MESSAGE_BYTES", {
      schema: integer(1024, 1024 * 1024 * 1024),
      fallback: "4194304",
      doc: "Largest request message, in bytes; a larger one is refused with RESOURCE_EXHAUSTED.",
    }),
    streamsPerPrincipal: setting("ACTIONQ_MAX_STREAMS_PER_PRINCIPAL", {
      schema: integer(1, 1_000_000),
      fallback: "1000",
      doc: "Claim streams one principal (without authentication: one client address) may hold open on a server process.",
    }),
    watchersPerPrincipal: setting("ACTIONQ_MAX_WATCHERS_PER_PRINCIPAL", {
      schema: integer(1, 1_000_000),
      fallback: "100",
      doc: "WatchEvents streams one principal (without authentication: one client address) may hold open on a server process.",
    }),
  },
  slowConsumerMs: setting("ACTIONQ_SLOW_CONSUMER_SECONDS", {
    schema: seconds(1, 3600),
    fallback: "30",
    doc: "A stream whose client has not read what the server sent for this long is reset (RESOURCE_EXHAUSTED), and its unacknowledged claims released.",
  }),
  logLevel: setting("ACTIONQ_LOG_LEVEL", {
    schema: oneOf(["fatal", "error", "warn", "info", "debug", "trace", "silent"]),
    fallback: "info",
    doc: "pino log level.",
  }),
} satisfies Rows;

type Values<R extends Rows> = { [K in keyof R]: R[K] extends Setting<infer T> ? z.output<T> : R[K] extends Rows ? Values<R[K]> : never };

/** The table as a zod object of the same shape, each setting's schema at its field. */
function objectOf(rows: Rows): z.ZodObject {
  return z.object(Object.fromEntries(Object.entries(rows).map(([field, row]) => [field, isSetting(row) ? row.schema : objectOf(row)])));
}

/** What the variable says; an empty string counts as unset, as in most shells' `VAR= cmd`. */
const given = (row: Setting, env: NodeJS.ProcessEnv) => (env[row.env] === "" ? undefined : env[row.env]);

/** The table's shape filled with each variable's text, or its fallback. */
function readEnvironment(rows: Rows, env: NodeJS.ProcessEnv): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(rows).map(([field, row]) => [field, isSetting(row) ? (given(row, env) ?? row.fallback) : readEnvironment(row, env)]),
  );
}

// zod cannot infer the type of an object built at run time, so Values states
// the same shape at the type level. The transform runs only once every
// variable is valid on its own: checks across variables see parsed values.
const configSchema = (objectOf(TABLE) as unknown as z.ZodType<Values<typeof TABLE>>).transform(({ tls, ...values }, ctx) => {
  if (Boolean(tls.cert) !== Boolean(tls.key)) {
    ctx.addIssue("ACTIONQ_TLS_CERT and ACTIONQ_TLS_KEY: set both or neither");
  } else if (tls.clientCa && !tls.cert) {
    ctx.addIssue("ACTIONQ_TLS_CLIENT_CA: needs ACTIONQ_TLS_CERT and ACTIONQ_TLS_KEY (client certificates only travel over TLS)");
  }
  // TLS is one switch: on with both files, and then the client CA is optional.
  return { ...values, tls: tls.cert && tls.key ? { cert: tls.cert, key: tls.key, clientCa: tls.clientCa } : undefined };
});

export type Config = z.output<typeof configSchema>;

/** Caps on what one request or one principal may ask for. */
export type Limits = Config["limits"];

/** Every variable, in the table's order: for `--help`, and for the test that
 * keeps the README's table true to the code. */
export const SETTINGS: readonly Setting[] = (function flatten(rows: Rows): Setting[] {
  return Object.values(rows).flatMap((row) => (isSetting(row) ? [row] : flatten(row)));
})(TABLE);

export class ConfigError extends Error {
  /** One line per bad variable, naming it, what it says and what it must be. */
  constructor(readonly problems: string[]) {
    super(`invalid configuration: ${problems.join("; ")}`);
    this.name = "ConfigError";
  }
}

/** The setting an issue's path leads to, or none for a check across variables. */
function settingAt(path: readonly PropertyKey[]): Setting | undefined {
  let row: Setting | Rows = TABLE;
  for (const key of path) {
    if (isSetting(row)) break;
    const next: Setting | Rows | undefined = row[String(key)];
    if (next === undefined) return undefined;
    row = next;
  }
  return isSetting(row) ? row : undefined;
}

/** Issues grouped by variable, one line each, repeated messages once. */
function problems(issues: readonly z.core.$ZodIssue[], env: NodeJS.ProcessEnv): string[] {
  const lines = new Map<string, Set<string>>();
  for (const issue of issues) {
    const row = settingAt(issue.path);
    const value = row && given(row, env);
    const subject = row ? (value === undefined ? `${row.env} (unset)` : `${row.env}=${JSON.stringify(value)}`) : "";
    lines.set(subject, (lines.get(subject) ?? new Set()).add(issue.message));
  }
  return [...lines].flatMap(([subject, messages]) => (subject === "" ? [...messages] : [`${subject}: ${[...messages].join("; ")}`]));
}

/** Settings that are each valid but contradict each other: a default lease
 * that no worker could ask for, a first retry longer than the longest. */
function disagreements(config: z.output<typeof configSchema>, env: NodeJS.ProcessEnv): string[] {
  const named = (row: Setting) => {
    const value = given(row, env);
    return value === undefined ? `${row.env} (default ${row.fallback})` : `${row.env}=${JSON.stringify(value)}`;
  };
  const out: string[] = [];
  if (config.leaseMs > config.maxLeaseMs) {
    out.push(`${named(TABLE.leaseMs)}: the default lease must not be longer than ${named(TABLE.maxLeaseMs)}, the longest a worker may ask for`);
  }
  if (config.retryBackoffMs > config.retryBackoffMaxMs) {
    out.push(`${named(TABLE.retryBackoffMs)}: the first retry's wait must not be longer than ${named(TABLE.retryBackoffMaxMs)}, the longest wait`);
  }
  return out;
}

/** Reads the settings from an environment (process.env by default). Throws
 * ConfigError naming every bad variable at once. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const result = configSchema.safeParse(readEnvironment(TABLE, env));
  if (!result.success) throw new ConfigError(problems(result.error.issues, env));
  const conflicts = disagreements(result.data, env);
  if (conflicts.length > 0) throw new ConfigError(conflicts);
  return result.data;
}

/** The variables as a table, for `actionq serve --help`. */
export function describeSettings(): string {
  const rows = SETTINGS.map((row) => `  ${row.env.padEnd(31)} ${(row.fallback ?? "(unset)").padEnd(16)} ${row.doc}`);
  return ["Environment variables (name, default, meaning):", ...rows].join("\n");
}
