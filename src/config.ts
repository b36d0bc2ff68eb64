// The server's settings: read from the environment once, validated, typed.
// Nothing else in the code base reads process.env.
import { z } from "zod";

/** Letters, digits and underscores, not starting with a digit; short enough
 * that `actionq_<schema>` is still a valid NOTIFY channel name. */
export const SCHEMA_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,47}$/;

const seconds = (min: number, max: number) =>
  z.coerce.number().min(min).max(max).transform((s) => Math.round(s * 1000));

const integer = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

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

interface Setting<T extends z.ZodType> {
  schema: T;
  /** The value used when the variable is unset, as it would be written in the environment. */
  fallback?: string;
  doc: string;
}

const setting = <T extends z.ZodType>(s: Setting<T>) => s;

/** One row per variable: its schema, its default and the line the README and
 * `actionq serve --help` print. */
export const SETTINGS = {
  ACTIONQ_URL: setting({
    schema: z.string().regex(/^postgres(ql)?:\/\//, "must be a postgres:// or postgresql:// URL").optional(),
    doc: "PostgreSQL connection URL. Unset: start an embedded PostgreSQL under ACTIONQ_DATA_DIR.",
  }),
  ACTIONQ_SCHEMA: setting({
    schema: z.string().regex(SCHEMA_PATTERN, "must be letters, digits and underscores, not starting with a digit, at most 48 characters"),
    fallback: "actionq",
    doc: "Schema holding actionq's tables.",
  }),
  ACTIONQ_LISTEN: setting({
    schema: listenAddress,
    fallback: "127.0.0.1:50051",
    doc: "HOST:PORT the server listens on: gRPC, gRPC-Web and Connect over HTTP/2 cleartext, and Connect and gRPC-Web over HTTP/1.1, on the same port. Port 0 picks a free port.",
  }),
  ACTIONQ_METRICS_LISTEN: setting({
    schema: listenAddress.optional(),
    doc: "HOST:PORT of the admin HTTP endpoint: Prometheus /metrics, /healthz and /readyz. Unset: off. Keep it on loopback or a private network.",
  }),
  ACTIONQ_CORS_ORIGINS: setting({
    schema: z
      .string()
      .transform((value) => value.split(",").map((origin) => origin.trim()).filter((origin) => origin !== ""))
      .pipe(z.array(z.string().regex(/^(\*|https?:\/\/[^\s/,]+)$/, "must be * or origins such as https://ops.example.com, comma-separated")))
      .optional(),
    doc: "Browser origins allowed to call the API (CORS), comma-separated, or *. Unset: no CORS headers.",
  }),
  ACTIONQ_DATA_DIR: setting({
    schema: z.string().min(1),
    fallback: "./.actionq",
    doc: "Where the embedded PostgreSQL keeps its data (only when ACTIONQ_URL is unset).",
  }),
  ACTIONQ_MAX_CHAIN_DEPTH: setting({
    schema: integer(0, 1000),
    fallback: "3",
    doc: "Deepest allowed parent/child chain; a deeper child is refused with FAILED_PRECONDITION.",
  }),
  ACTIONQ_RATE_LIMIT_PER_HOUR: setting({
    schema: integer(0, 10_000_000),
    fallback: "20",
    doc: "Enqueues allowed per rolling hour for each `agent:` or `script:` producer.",
  }),
  ACTIONQ_LEASE_SECONDS: setting({
    schema: seconds(1, 86_400),
    fallback: "300",
    doc: "Lease of a claim when the worker asks for none.",
  }),
  ACTIONQ_MAX_LEASE_SECONDS: setting({
    schema: seconds(1, 7 * 86_400),
    fallback: "86400",
    doc: "Longest lease a worker may ask for, in claims and extensions.",
  }),
  ACTIONQ_ACK_TIMEOUT_SECONDS: setting({
    schema: seconds(0.05, 3600),
    fallback: "10",
    doc: "How long a streamed claim may stay unacknowledged before it is released to other workers.",
  }),
  ACTIONQ_MAX_ATTEMPTS: setting({
    schema: integer(1, 1000),
    fallback: "1",
    doc: "How many times an action may fail (FailAction with `retryable`) before it stays FAILED, when its producer sets no `max_attempts`. 1: the first failure is final.",
  }),
  ACTIONQ_RETRY_BACKOFF_SECONDS: setting({
    schema: seconds(0.01, 86_400),
    fallback: "10",
    doc: "Wait before the first retry; it doubles with each failure, with jitter down to half.",
  }),
  ACTIONQ_RETRY_BACKOFF_MAX_SECONDS: setting({
    schema: seconds(0.01, 7 * 86_400),
    fallback: "3600",
    doc: "Longest wait between retries.",
  }),
  ACTIONQ_MAX_STREAM_AGE_SECONDS: setting({
    schema: seconds(1, 30 * 86_400),
    fallback: "3600",
    doc: "A claim stream older than this gets a Drain (cause MAX_AGE) and ends, so that long-lived workers reconnect and spread across replicas. Acknowledged claims are kept.",
  }),
  ACTIONQ_KEEPALIVE_SECONDS: setting({
    schema: seconds(0.05, 3600),
    fallback: "20",
    doc: "HTTP/2 PING interval on every connection; a connection that does not answer within the same time is closed and its unacknowledged claims released.",
  }),
  ACTIONQ_MAX_IN_FLIGHT: setting({
    schema: integer(1, 100_000),
    fallback: "1000",
    doc: "Largest `max_in_flight` a claim stream may ask for.",
  }),
  ACTIONQ_HEARTBEAT_SECONDS: setting({
    schema: seconds(0.05, 3600),
    fallback: "10",
    doc: "Quiet time after which a claim or event stream gets a heartbeat message.",
  }),
  ACTIONQ_SWEEP_INTERVAL_SECONDS: setting({
    schema: seconds(0.05, 3600),
    fallback: "5",
    doc: "How often each server requeues expired leases and unacknowledged deliveries.",
  }),
  ACTIONQ_RETENTION_SECONDS: setting({
    schema: seconds(60, 100 * 365 * 86_400).optional(),
    doc: "Finished actions older than this move from the hot table to actions_archive (GetAction still finds them; ListActions and GetQueueStats no longer count them). Events are never moved or deleted. Unset: finished actions stay.",
  }),
  ACTIONQ_POLL_INTERVAL_SECONDS: setting({
    schema: seconds(0.05, 3600),
    fallback: "5",
    doc: "Backstop poll for new work and events, in case a notification was missed.",
  }),
  ACTIONQ_POOL_SIZE: setting({
    schema: integer(2, 1000),
    fallback: "9",
    doc: "PostgreSQL connections in the pool; the LISTEN connection comes on top, so a server uses at most this plus one, whatever the number of streams.",
  }),
  ACTIONQ_SHUTDOWN_GRACE_SECONDS: setting({
    schema: seconds(0, 3600),
    fallback: "10",
    doc: "On SIGTERM or SIGINT, how long calls in progress may take to finish.",
  }),
  ACTIONQ_POLICY: setting({
    schema: z.string().min(1).optional(),
    doc: "Path of the approval policy file (YAML or JSON; see the safety model). Unset: the built-in standard policy. Reloaded on SIGHUP.",
  }),
  ACTIONQ_AUTH_FILE: setting({
    schema: z.string().min(1).optional(),
    doc: "Principals, their roles, scopes, token hashes and certificate subjects (YAML or JSON; see Security). Unset: no authentication, and the server listens only on loopback unless started with --insecure. Reloaded on SIGHUP.",
  }),
  ACTIONQ_TLS_CERT: setting({
    schema: z.string().min(1).optional(),
    doc: "PEM certificate chain of the server. With ACTIONQ_TLS_KEY, the port speaks TLS only.",
  }),
  ACTIONQ_TLS_KEY: setting({
    schema: z.string().min(1).optional(),
    doc: "PEM private key of the server.",
  }),
  ACTIONQ_TLS_CLIENT_CA: setting({
    schema: z.string().min(1).optional(),
    doc: "PEM CA bundle for client certificates (mutual TLS). A verified certificate identifies its principal by subject.",
  }),
  ACTIONQ_MAX_PAYLOAD_BYTES: setting({
    schema: integer(2, 16 * 1024 * 1024),
    fallback: "65536",
    doc: "Largest `payload` (and `rollback_payload`, event payload) as JSON, in bytes.",
  }),
  ACTIONQ_MAX_TEXT_LENGTH: setting({
    schema: integer(16, 1024 * 1024),
    fallback: "4096",
    doc: "Longest free-text field (reasons, notes), in characters.",
  }),
  ACTIONQ_MAX_REF_LENGTH: setting({
    schema: integer(16, 1024 * 1024),
    fallback: "1024",
    doc: "Longest reference field (target_ref, result_ref, source_refs entries, correlation_id, idempotency_key, node, service), in characters.",
  }),
  ACTIONQ_MAX_SOURCE_REFS: setting({
    schema: integer(0, 100_000),
    fallback: "64",
    doc: "Most `source_refs` entries on one action.",
  }),
  ACTIONQ_MAX_PAGE_SIZE: setting({
    schema: integer(1, 100_000),
    fallback: "1000",
    doc: "Largest `page_size` of ListActions and ListEvents; a larger one is refused.",
  }),
  ACTIONQ_MAX_BATCH: setting({
    schema: integer(1, 100_000),
    fallback: "1000",
    doc: "Most items in one EnqueueActions or CompleteActions call.",
  }),
  ACTIONQ_MAX_MESSAGE_BYTES: setting({
    schema: integer(1024, 1024 * 1024 * 1024),
    fallback: "4194304",
    doc: "Largest request message, in bytes; a larger one is refused with RESOURCE_EXHAUSTED.",
  }),
  ACTIONQ_MAX_STREAMS_PER_PRINCIPAL: setting({
    schema: integer(1, 1_000_000),
    fallback: "1000",
    doc: "Claim streams one principal (without authentication: one client address) may hold open on a server process.",
  }),
  ACTIONQ_MAX_WATCHERS_PER_PRINCIPAL: setting({
    schema: integer(1, 1_000_000),
    fallback: "100",
    doc: "WatchEvents streams one principal (without authentication: one client address) may hold open on a server process.",
  }),
  ACTIONQ_SLOW_CONSUMER_SECONDS: setting({
    schema: seconds(1, 3600),
    fallback: "30",
    doc: "A stream whose client has not read what the server sent for this long is reset (RESOURCE_EXHAUSTED), and its unacknowledged claims released.",
  }),
  ACTIONQ_LOG_LEVEL: setting({
    schema: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]),
    fallback: "info",
    doc: "pino log level.",
  }),
};

type Settings = typeof SETTINGS;
type Parsed = { [K in keyof Settings]: z.output<Settings[K]["schema"]> };

/** Caps on what one request or one principal may ask for. */
export interface Limits {
  payloadBytes: number;
  textLength: number;
  refLength: number;
  sourceRefs: number;
  pageSize: number;
  batch: number;
  messageBytes: number;
  streamsPerPrincipal: number;
  watchersPerPrincipal: number;
}

export interface Config {
  databaseUrl: string | undefined;
  schema: string;
  listen: { host: string; port: number };
  corsOrigins: string[];
  metricsListen: { host: string; port: number } | undefined;
  dataDir: string;
  maxChainDepth: number;
  rateLimitPerHour: number;
  leaseMs: number;
  maxLeaseMs: number;
  ackTimeoutMs: number;
  maxInFlight: number;
  maxAttempts: number;
  retryBackoffMs: number;
  retryBackoffMaxMs: number;
  maxStreamAgeMs: number;
  keepaliveMs: number;
  heartbeatMs: number;
  sweepIntervalMs: number;
  pollIntervalMs: number;
  retentionMs: number | undefined;
  poolSize: number;
  shutdownGraceMs: number;
  policyPath: string | undefined;
  authFile: string | undefined;
  tls: { cert: string; key: string; clientCa: string | undefined } | undefined;
  limits: Limits;
  slowConsumerMs: number;
  logLevel: Parsed["ACTIONQ_LOG_LEVEL"];
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
  }
}

/** Reads the settings from an environment (process.env by default). Empty
 * strings count as unset. Throws ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const problems: string[] = [];
  const values: Record<string, unknown> = {};
  for (const [name, setting] of Object.entries(SETTINGS)) {
    const given = env[name];
    const raw = given === undefined || given === "" ? setting.fallback : given;
    const result = setting.schema.safeParse(raw);
    if (result.success) {
      values[name] = result.data;
    } else {
      const why = result.error.issues.map((issue) => issue.message).join("; ");
      problems.push(`${name}=${JSON.stringify(given)}: ${why}`);
    }
  }
  const v = values as Parsed;
  if (problems.length === 0 && Boolean(v.ACTIONQ_TLS_CERT) !== Boolean(v.ACTIONQ_TLS_KEY)) {
    problems.push("ACTIONQ_TLS_CERT and ACTIONQ_TLS_KEY: set both or neither");
  }
  if (problems.length === 0 && v.ACTIONQ_TLS_CLIENT_CA && !v.ACTIONQ_TLS_CERT) {
    problems.push("ACTIONQ_TLS_CLIENT_CA: needs ACTIONQ_TLS_CERT and ACTIONQ_TLS_KEY (client certificates only travel over TLS)");
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    databaseUrl: v.ACTIONQ_URL,
    schema: v.ACTIONQ_SCHEMA,
    listen: v.ACTIONQ_LISTEN,
    corsOrigins: v.ACTIONQ_CORS_ORIGINS ?? [],
    metricsListen: v.ACTIONQ_METRICS_LISTEN,
    dataDir: v.ACTIONQ_DATA_DIR,
    maxChainDepth: v.ACTIONQ_MAX_CHAIN_DEPTH,
    rateLimitPerHour: v.ACTIONQ_RATE_LIMIT_PER_HOUR,
    leaseMs: v.ACTIONQ_LEASE_SECONDS,
    maxLeaseMs: v.ACTIONQ_MAX_LEASE_SECONDS,
    ackTimeoutMs: v.ACTIONQ_ACK_TIMEOUT_SECONDS,
    maxInFlight: v.ACTIONQ_MAX_IN_FLIGHT,
    maxAttempts: v.ACTIONQ_MAX_ATTEMPTS,
    retryBackoffMs: v.ACTIONQ_RETRY_BACKOFF_SECONDS,
    retryBackoffMaxMs: v.ACTIONQ_RETRY_BACKOFF_MAX_SECONDS,
    maxStreamAgeMs: v.ACTIONQ_MAX_STREAM_AGE_SECONDS,
    keepaliveMs: v.ACTIONQ_KEEPALIVE_SECONDS,
    heartbeatMs: v.ACTIONQ_HEARTBEAT_SECONDS,
    sweepIntervalMs: v.ACTIONQ_SWEEP_INTERVAL_SECONDS,
    pollIntervalMs: v.ACTIONQ_POLL_INTERVAL_SECONDS,
    retentionMs: v.ACTIONQ_RETENTION_SECONDS,
    poolSize: v.ACTIONQ_POOL_SIZE,
    shutdownGraceMs: v.ACTIONQ_SHUTDOWN_GRACE_SECONDS,
    policyPath: v.ACTIONQ_POLICY,
    authFile: v.ACTIONQ_AUTH_FILE,
    tls: v.ACTIONQ_TLS_CERT && v.ACTIONQ_TLS_KEY ? { cert: v.ACTIONQ_TLS_CERT, key: v.ACTIONQ_TLS_KEY, clientCa: v.ACTIONQ_TLS_CLIENT_CA } : undefined,
    limits: {
      payloadBytes: v.ACTIONQ_MAX_PAYLOAD_BYTES,
      textLength: v.ACTIONQ_MAX_TEXT_LENGTH,
      refLength: v.ACTIONQ_MAX_REF_LENGTH,
      sourceRefs: v.ACTIONQ_MAX_SOURCE_REFS,
      pageSize: v.ACTIONQ_MAX_PAGE_SIZE,
      batch: v.ACTIONQ_MAX_BATCH,
      messageBytes: v.ACTIONQ_MAX_MESSAGE_BYTES,
      streamsPerPrincipal: v.ACTIONQ_MAX_STREAMS_PER_PRINCIPAL,
      watchersPerPrincipal: v.ACTIONQ_MAX_WATCHERS_PER_PRINCIPAL,
    },
    slowConsumerMs: v.ACTIONQ_SLOW_CONSUMER_SECONDS,
    logLevel: v.ACTIONQ_LOG_LEVEL,
  };
}

/** The variables as a table, for `actionq serve --help`. */
export function describeSettings(): string {
  const rows = Object.entries(SETTINGS).map(
    ([name, setting]) => `  ${name.padEnd(31)} ${(setting.fallback ?? "(unset)").padEnd(16)} ${setting.doc}`,
  );
  return ["Environment variables (name, default, meaning):", ...rows].join("\n");
}
