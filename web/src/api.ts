// The one client the console has: the generated ActionQueueService client
// over the Connect protocol (connect-web), on the origin that served the
// page. The bearer token lives in sessionStorage only: gone when the
// browser session ends, never in a cookie or a URL.
import { Code, ConnectError, type Interceptor, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { ActionQueueService } from "../../gen/actionq/v1/action_queue_service_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";

const TOKEN_KEY = "actionq.token";
const NAME_KEY = "actionq.name";

function read(key: string): string | null {
  try {
    return sessionStorage.getItem(key);
  } catch {
    return null;
  }
}

function write(key: string, value: string | null): void {
  try {
    if (value === null) sessionStorage.removeItem(key);
    else sessionStorage.setItem(key, value);
  } catch {
    // Storage refused (private mode quotas): the session lasts this page.
  }
}

/** What this browser session remembers about who is at the keyboard. */
export const session = {
  token: () => read(TOKEN_KEY),
  setToken: (token: string | null) => write(TOKEN_KEY, token),
  /** Without authentication: the name the person gave, used as approver or actor. */
  name: () => read(NAME_KEY),
  setName: (name: string | null) => write(NAME_KEY, name),
  clear() {
    write(TOKEN_KEY, null);
    write(NAME_KEY, null);
  },
};

const bearer: Interceptor = (next) => (req) => {
  const token = session.token();
  if (token) req.header.set("authorization", `Bearer ${token}`);
  return next(req);
};

export const transport = createConnectTransport({
  baseUrl: window.location.origin,
  useBinaryFormat: true,
  interceptors: [bearer],
});

export const api = createClient(ActionQueueService, transport);

/** The server's own words for a failed call, without connect's "[code]" prefix. */
export function errorText(error: unknown): string {
  if (error instanceof ConnectError) return error.rawMessage || Code[error.code] || "the call failed";
  if (error instanceof Error) return error.message;
  return String(error);
}

/** The stable reason (`SELF_APPROVAL`, `ROLE_REQUIRED`...) of a failed call, when it has one. */
export function errorReason(error: unknown): string | undefined {
  if (!(error instanceof ConnectError)) return undefined;
  return error.findDetails(ErrorInfoSchema)[0]?.reason;
}

export function errorCode(error: unknown): Code | undefined {
  return error instanceof ConnectError ? error.code : undefined;
}

export { Code, ConnectError };
