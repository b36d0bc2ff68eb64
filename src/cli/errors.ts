// Every error actionctl can meet, said as one sentence a person can act on:
// what happened, then what to do. Transport failures (nothing listening, TLS
// on one side only, a certificate the client does not trust) arrive as Node
// socket and OpenSSL errors wrapped in a ConnectError; server refusals carry
// a gRPC code and an ErrorInfo reason. Each maps to an exit code of EXIT.
import { connect as tlsConnect } from "node:tls";
import type { JsonObject } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ClientSetupError } from "../client-transport.js";
import { ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { errorDocument } from "./output.js";

export const EXIT = {
  ok: 0,
  refused: 1,
  usage: 2,
  unreachable: 3,
  denied: 4,
  interrupted: 130,
} as const;

/** The exit code table of `--help` and the docs. */
export const EXIT_TABLE = `Exit codes:
  0    success (also \`events --follow\` ended by SIGTERM)
  1    the server refused the call: NOT_FOUND, FAILED_PRECONDITION (the
       action is not in a status that allows it), INVALID_ARGUMENT (naming
       the field), ALREADY_EXISTS, RESOURCE_EXHAUSTED, or a server fault
  2    usage error or bad setting (nothing was sent), or \`claim\` found
       nothing to claim
  3    the server could not be reached: nothing listening at the address,
       TLS on one side only, a certificate not trusted, no answer in time
  4    UNAUTHENTICATED or PERMISSION_DENIED: see ACTIONQ_TOKEN and
       \`actionctl whoami\`
  130  \`events --follow\` or \`stream-claims\` ended by SIGINT (Ctrl-C)`;

/** Where actionctl was sending calls, to name it in errors. */
export interface Target {
  /** As given: `host:port` or a URL. */
  address: string;
  url: string;
  tls: boolean;
  token: boolean;
  ca: string | undefined;
}

export interface Explained {
  exitCode: number;
  /** The sentence for people: what happened; what to do. */
  sentence: string;
  /** {"error":{code, message, reason, metadata, hint}} for the JSON modes. */
  document: JsonObject;
}

/** Certificate chain errors that mean "the client does not trust the CA". */
const UNTRUSTED = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_UNTRUSTED",
  "CERT_SIGNATURE_FAILURE",
]);

/** The Node error codes and messages along the cause chain. */
function causes(error: unknown): { codes: Set<string>; text: string } {
  const codes = new Set<string>();
  const texts: string[] = [];
  for (let current: unknown = error, depth = 0; current && depth < 6; current = (current as { cause?: unknown }).cause, depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string") codes.add(code);
    if (current instanceof Error) texts.push(current.message);
  }
  return { codes, text: texts.join(" | ") };
}

/** host:port of the target, for naming it and for suggesting the other scheme. */
function hostPort(target: Target): string {
  const url = new URL(target.url);
  return url.port ? `${url.hostname}:${url.port}` : url.host;
}

/** Whether the port completes a TLS handshake (certificate unchecked): the
 * way to tell a TLS server from a broken cleartext one. */
function speaksTls(target: Target, timeoutMs = 2_000): Promise<boolean> {
  const url = new URL(target.url);
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: url.hostname, port: Number(url.port || 80), rejectUnauthorized: false, ALPNProtocols: ["h2"], servername: undefined });
    const done = (answer: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once("secureConnect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/** What happened, what to do, and whether it lasts: a TLS mismatch does
 * not heal by reconnecting, a server that is down may come back. */
type Problem = [exitCode: number, what: string, todo: string, lasting?: "lasting"];

/** A transport failure as a Problem, or undefined when the error came from
 * the server. */
async function transportProblem(error: ConnectError, target: Target): Promise<Problem | undefined> {
  if (error.findDetails(ErrorInfoSchema).length > 0) return undefined;
  const { codes, text } = causes(error);
  const at = hostPort(target);
  const setAddress = "set ACTIONQ_ADDR (or --address) to where it listens";
  const has = (...names: string[]) => names.some((name) => codes.has(name));
  if (has("ECONNREFUSED"))
    return [EXIT.unreachable, `no server is listening at ${at} (connection refused)`, `start one with \`actionq serve\`, or ${setAddress}`];
  if (has("ENOTFOUND", "EAI_AGAIN")) return [EXIT.unreachable, `cannot resolve the host of ${target.address}`, `check ACTIONQ_ADDR (or --address)`];
  if (has("ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH"))
    return [EXIT.unreachable, `${at} cannot be reached (${[...codes].find((c) => c.startsWith("E"))})`, `check the network, or ${setAddress}`];
  if ([...codes].some((code) => UNTRUSTED.has(code))) {
    return [
      EXIT.unreachable,
      `the server at ${at} presented a certificate this client does not trust (${error.rawMessage})`,
      target.ca
        ? `ACTIONQ_TLS_CA=${target.ca} did not sign it: point ACTIONQ_TLS_CA at the PEM file of the CA that signed the server's certificate`
        : `set ACTIONQ_TLS_CA to the PEM file of the CA that signed the server's certificate`,
      "lasting",
    ];
  }
  if (has("ERR_TLS_CERT_ALTNAME_INVALID"))
    return [
      EXIT.unreachable,
      `the server's certificate is not issued for ${new URL(target.url).hostname}`,
      `connect by a host name or address the certificate lists`,
      "lasting",
    ];
  if (has("CERT_HAS_EXPIRED", "CERT_NOT_YET_VALID"))
    return [
      EXIT.unreachable,
      `the server at ${at} presented a certificate that ${codes.has("CERT_HAS_EXPIRED") ? "has expired" : "is not valid yet"}`,
      `renew the server's certificate (it rereads it on SIGHUP)`,
      "lasting",
    ];
  if (target.tls && (has("ERR_SSL_WRONG_VERSION_NUMBER") || /wrong version number|packet length too long|unknown protocol/i.test(text))) {
    return [
      EXIT.unreachable,
      `the server at ${at} does not speak TLS`,
      `use ACTIONQ_ADDR=${at} (cleartext) without ACTIONQ_TLS_CA, or turn TLS on at the server (ACTIONQ_TLS_CERT, ACTIONQ_TLS_KEY)`,
      "lasting",
    ];
  }
  if (error.code === Code.DeadlineExceeded) return [EXIT.unreachable, `no answer from ${at} in time`, `the server may be overloaded or stuck; check its logs`];
  // A cleartext HTTP/2 preface sent to a TLS port ends in a reset, which
  // connect-node reports as CANCELED or, when the reset wins the race with
  // the stream's own end, ABORTED.
  const broken = [Code.Canceled, Code.Aborted, Code.Unavailable, Code.Internal, Code.Unknown].includes(error.code);
  if (!target.tls && broken && (await speaksTls(target))) {
    return [
      EXIT.unreachable,
      `the server at ${at} speaks TLS, and this client sent cleartext`,
      `use ACTIONQ_ADDR=https://${at} and set ACTIONQ_TLS_CA to the CA that signed its certificate`,
      "lasting",
    ];
  }
  if (error.code === Code.Unavailable || error.code === Code.Canceled || (error.code === Code.Aborted && has("ECONNRESET", "EPIPE")))
    return [EXIT.unreachable, `the connection to ${at} failed (${error.rawMessage})`, `check that the server is running there, or ${setAddress}`];
  return undefined;
}

/** What a refusal from the server means for the person who caused it. */
function serverAdvice(error: ConnectError, target: Target): [number, string] {
  const info = error.findDetails(ErrorInfoSchema)[0];
  const metadata = info?.metadata ?? {};
  const reason = info?.reason ?? "";
  switch (error.code) {
    case Code.Unauthenticated:
      return [
        EXIT.denied,
        target.token
          ? "the server did not accept ACTIONQ_TOKEN: check it against the server's auth file (`actionq token` makes a new one)"
          : "set ACTIONQ_TOKEN to a bearer token listed in the server's auth file, or ACTIONQ_TLS_CLIENT_CERT and ACTIONQ_TLS_CLIENT_KEY",
      ];
    case Code.PermissionDenied:
      // The server's message already says another approver must.
      if (reason === "SELF_APPROVAL") return [EXIT.denied, ""];
      if (reason === "IDENTITY_MISMATCH")
        return [EXIT.denied, "leave --actor, --worker, --approver and --created-by out, or give your own principal's name (`actionctl whoami`)"];
      return [EXIT.denied, "`actionctl whoami` shows who ACTIONQ_TOKEN names and its roles; this call needs another role or scope"];
    case Code.NotFound:
      if (reason === "PAUSE_NOT_FOUND") return [EXIT.refused, "`actionctl stats` lists the pauses in force"];
      if (metadata.schedule_id) return [EXIT.refused, "`actionctl schedule list` lists the schedules"];
      return [EXIT.refused, metadata.action_id ? "`actionctl ls` lists the actions" : "check the ids given"];
    case Code.FailedPrecondition:
      if (reason === "SCHEDULE_REVISION_MISMATCH")
        return [
          EXIT.refused,
          `someone changed the schedule meanwhile: \`actionctl schedule get ${metadata.schedule_id ?? "ID"}\` shows it; run the update again`,
        ];
      return [EXIT.refused, metadata.action_id ? `\`actionctl show ${metadata.action_id}\` shows where it stands` : ""];
    case Code.InvalidArgument:
      return [EXIT.refused, metadata.field ? `fix ${flagOf(metadata.field)}` : "fix the request"];
    case Code.ResourceExhausted: {
      // The server's message already says when, if it knows.
      if (/\bretry in \d+ s\b/.test(error.rawMessage)) return [EXIT.refused, ""];
      const delay =
        error.findDetails(RetryInfoSchema)[0]?.retryDelay ?? (metadata.retry_after_seconds ? { seconds: BigInt(metadata.retry_after_seconds) } : undefined);
      return [EXIT.refused, delay ? `try again in ${delay.seconds} s` : "try again later, or with less"];
    }
    case Code.Unavailable:
    case Code.DeadlineExceeded:
      return [EXIT.unreachable, "try again; if it persists, check the server's logs"];
    default:
      return [EXIT.refused, ""];
  }
}

/** The request field a server names, as the flag that sets it. */
const FLAGS: Record<string, string> = {
  action_type: "--type",
  event_type: "--type",
  target_ref: "--target",
  source_refs: "--source",
  risk_level: "--risk",
  created_by: "--created-by",
  parent_id: "--parent",
  rollback_ref: "--rollback",
  rollback_payload: "--rollback-payload",
  supersedes_id: "--supersedes",
  idempotency_key: "--idempotency-key",
  run_after: "--run-after",
  max_attempts: "--max-attempts",
  concurrency_key: "--concurrency-key",
  concurrency_limit: "--concurrency-limit",
  claim_token: "--token",
  result_ref: "--result",
  lease_duration: "--lease",
  retry_delay: "--retry-delay",
  additional_attempts: "--attempts",
  page_size: "--limit",
  page_token: "--page-token",
  correlation_id: "--correlation-id",
  "scope.value": "the scope's value",
  // BackfillSchedule's interval.
  start_time: "--from",
  end_time: "--to",
  overlap_policy: "--overlap",
  owner: "--owner",
};

/** A schedule's own fields (`schedule.cron`...), as `schedule create` and
 * `update` set them; its template's fields are the flags of `add`. */
const SCHEDULE_FLAGS: Record<string, string> = {
  id: "the schedule id",
  interval: "--every",
  start_time: "--start",
  end_time: "--end",
  overlap_policy: "--overlap",
  catch_up_window: "--catch-up",
  clock: "--cron or --every",
};

function flagOf(field: string): string {
  const own = /^schedule\.([a-z_]+)$/.exec(field)?.[1];
  const inTemplate = /^schedule\.template\.([a-z_]+)$/.exec(field)?.[1];
  const name = inTemplate ?? own ?? field;
  const flag = (own !== undefined ? SCHEDULE_FLAGS[own] : undefined) ?? FLAGS[name] ?? (/^[a-z_]+$/.test(name) ? `--${name.replace(/_/g, "-")}` : undefined);
  return flag ? `${flag} (field ${field})` : `the field ${field}`;
}

const oneLine = (text: string) => text.replace(/\s+/g, " ").trim();

/** Whether retrying cannot help: a setting, a TLS mismatch, or a refusal
 * of the request or the credential. `events --follow` stops on these. */
export async function lasting(error: unknown, target: Target): Promise<boolean> {
  if (error instanceof ClientSetupError) return true;
  const connectError = ConnectError.from(error);
  if (
    [Code.InvalidArgument, Code.Unauthenticated, Code.PermissionDenied, Code.NotFound, Code.FailedPrecondition, Code.Unimplemented].includes(connectError.code)
  )
    return true;
  return (await transportProblem(connectError, target))?.[3] === "lasting";
}

export async function explain(error: unknown, target: Target): Promise<Explained> {
  if (error instanceof ClientSetupError) {
    const document = { error: { code: "invalid_argument", message: error.message, reason: "CLIENT_SETUP", metadata: {} } };
    return { exitCode: EXIT.usage, sentence: error.message, document };
  }
  const connectError = ConnectError.from(error);
  const problem = await transportProblem(connectError, target);
  if (problem) {
    const [exitCode, what, todo] = problem;
    const sentence = oneLine(`${what}; ${todo}`);
    return { exitCode, sentence, document: errorDocument(connectError, sentence) };
  }
  const [exitCode, todo] = serverAdvice(connectError, target);
  const status = ConnectError.from(error).findDetails(ErrorInfoSchema)[0]?.metadata.current_status;
  const what = status && !connectError.rawMessage.includes(status) ? `${connectError.rawMessage} (it is ${status})` : connectError.rawMessage;
  return { exitCode, sentence: oneLine(todo ? `${what}; ${todo}` : what), document: errorDocument(connectError, todo || undefined) };
}
