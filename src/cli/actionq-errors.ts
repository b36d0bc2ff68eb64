// What `actionq serve` and `actionq migrate` say when they cannot start
// for a reason a person can fix: one line on stderr naming what happened
// and what to do, and an exit code a supervisor can tell apart. Anything
// else is a bug and keeps its stack trace.
import net from "node:net";

/** Exit codes of `actionq serve` and `actionq migrate`. */
export const EXIT = {
  /** An unexpected failure (a bug): the log has the stack. */
  failed: 1,
  /** A setting, the policy file or the auth file is invalid. */
  badSettings: 2,
  /** PostgreSQL cannot be reached or refuses the connection. */
  database: 3,
  /** The listen address is in use or not available. */
  address: 4,
} as const;

export const EXIT_CODES_HELP = `
Exit codes:
  0  stopped on SIGTERM or SIGINT after draining
  1  unexpected failure (a bug; the log has the details)
  2  invalid settings, policy file or auth file
  3  PostgreSQL cannot be reached, or refuses the connection
  4  the listen address is in use or cannot be used`;

export class StartupError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/** Where ACTIONQ_URL points, without its password. */
function where(url: string | undefined): string {
  if (!url) return "the embedded PostgreSQL";
  try {
    const parsed = new URL(url);
    // A Unix socket directory as host comes percent-encoded (%2Ftmp%2F...).
    const host = decodeURIComponent(parsed.hostname) || parsed.searchParams.get("host") || "the local socket";
    return `PostgreSQL at ${host}${parsed.port ? `:${parsed.port}` : ""}`;
  } catch {
    return "PostgreSQL (ACTIONQ_URL)";
  }
}

function databaseName(url: string | undefined): string {
  try {
    return decodeURIComponent(new URL(url ?? "").pathname.slice(1)) || "postgres";
  } catch {
    return "?";
  }
}

/** A database error a person can fix, as a StartupError; undefined for
 * anything else. */
export function databaseStartupError(
  error: unknown,
  url: string | undefined,
  setting: "ACTIONQ_URL" | "ACTIONQ_LISTEN_URL" = "ACTIONQ_URL",
): StartupError | undefined {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  const at = where(url);
  const text = typeof message === "string" ? message : String(error);
  switch (code) {
    case "ECONNREFUSED":
      return new StartupError(
        `cannot reach ${at}: connection refused. Is PostgreSQL running there? Check ${setting}${setting === "ACTIONQ_URL" ? ", or unset it to use the embedded PostgreSQL" : ""}.`,
        EXIT.database,
      );
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return new StartupError(`cannot reach ${at}: the host name does not resolve. Check the host in ${setting}.`, EXIT.database);
    case "ETIMEDOUT":
      return new StartupError(`cannot reach ${at}: the connection timed out. Check the host and port in ${setting}, and any firewall between.`, EXIT.database);
    case "ENOENT":
      return new StartupError(`cannot reach ${at}: its Unix socket is not there. Is PostgreSQL running? Check ${setting}.`, EXIT.database);
    case "3D000":
      return new StartupError(
        `${at} has no database "${databaseName(url)}": create it (createdb ${databaseName(url)}) or name another in ${setting}.`,
        EXIT.database,
      );
    case "28P01":
    case "28000":
      return new StartupError(`${at} refused the login: ${text}. Check the user and password in ${setting}.`, EXIT.database);
    case "57P03":
      return new StartupError(`${at} is starting up or shutting down: ${text}. Try again in a moment.`, EXIT.database);
    case "42501":
      return new StartupError(
        `${at} denied a permission actionq needs: ${text}. The user in ${setting} must be able to create the schema and its tables.`,
        EXIT.database,
      );
    default:
      if (/unsupported startup parameter/i.test(text)) {
        return new StartupError(
          `${at} refused a startup parameter (${text}): it looks like a transaction pooler such as PgBouncer. Set ACTIONQ_DATABASE_POOLER=transaction, and jit = off on the role (see docs/operations.md).`,
          EXIT.database,
        );
      }
      if (/self[- ]signed certificate|unable to verify the first certificate|The server does not support SSL connections/i.test(text)) {
        return new StartupError(`cannot open a TLS connection to ${at}: ${text}. Check sslmode and the certificates in ${setting}.`, EXIT.database);
      }
      return undefined;
  }
}

/** A listen error a person can fix, as a StartupError. */
export function listenStartupError(error: unknown, host: string, port: number): StartupError | undefined {
  const code = (error as { code?: unknown })?.code;
  const address = `${host.includes(":") ? `[${host}]` : host}:${port}`;
  switch (code) {
    case "EADDRINUSE":
      return new StartupError(
        `${address} is already in use (another actionq, or another program): stop it, or set ACTIONQ_LISTEN to a free HOST:PORT.`,
        EXIT.address,
      );
    case "EACCES":
      return new StartupError(`not allowed to listen on ${address}: ports below 1024 need privileges. Set ACTIONQ_LISTEN to a port above 1023.`, EXIT.address);
    case "EADDRNOTAVAIL":
      return new StartupError(
        `cannot listen on ${address}: this machine has no such address. Set ACTIONQ_LISTEN to one of its addresses, such as 127.0.0.1 or 0.0.0.0.`,
        EXIT.address,
      );
    default:
      return undefined;
  }
}

/** Fails fast, before an embedded PostgreSQL is started for nothing, when
 * the listen address cannot be bound. The server binds it again for real;
 * a program that takes it in between is reported the same way then. */
export async function checkCanListen(host: string, port: number): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", (error) => reject(listenStartupError(error, host, port) ?? error));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}
