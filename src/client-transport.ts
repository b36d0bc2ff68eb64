// How actionq's own clients (actionctl, the executor) reach a server: the
// address, the bearer token and the TLS files, all from the environment.
import { readFileSync } from "node:fs";
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

export interface ClientEnvironment {
  ACTIONQ_ADDR?: string;
  ACTIONQ_TOKEN?: string;
  ACTIONQ_TLS_CA?: string;
  ACTIONQ_TLS_CLIENT_CERT?: string;
  ACTIONQ_TLS_CLIENT_KEY?: string;
}

export const DEFAULT_ADDRESS = "127.0.0.1:50051";

export class ClientSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ClientSetupError";
  }
}

/** `host:port` (cleartext), or a full `http://` or `https://` URL. */
export function baseUrl(address: string): string {
  return /^https?:\/\//i.test(address) ? address : `http://${address}`;
}

function read(variable: string, file: string | undefined): Buffer | undefined {
  if (!file?.trim()) return undefined;
  try {
    return readFileSync(file.trim());
  } catch (error) {
    throw new ClientSetupError(`${variable}=${file}: cannot read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

/** Whether calls carry a credential, so that identity fields are left for
 * the server to fill in. */
export function hasCredential(env: ClientEnvironment): boolean {
  return Boolean(env.ACTIONQ_TOKEN?.trim() || env.ACTIONQ_TLS_CLIENT_CERT?.trim());
}

/** A gRPC transport to `address` with the environment's token and TLS
 * settings. */
export function clientTransport(address: string, env: ClientEnvironment, options: { pingIntervalMs?: number; interceptors?: Interceptor[] } = {}): Transport {
  const url = baseUrl(address);
  const token = env.ACTIONQ_TOKEN?.trim();
  const ca = read("ACTIONQ_TLS_CA", env.ACTIONQ_TLS_CA);
  const cert = read("ACTIONQ_TLS_CLIENT_CERT", env.ACTIONQ_TLS_CLIENT_CERT);
  const key = read("ACTIONQ_TLS_CLIENT_KEY", env.ACTIONQ_TLS_CLIENT_KEY);
  if (Boolean(cert) !== Boolean(key)) throw new ClientSetupError("ACTIONQ_TLS_CLIENT_CERT and ACTIONQ_TLS_CLIENT_KEY: set both or neither");
  const tls = url.startsWith("https:");
  if (!tls && (ca || cert)) throw new ClientSetupError(`ACTIONQ_TLS_* is set but ACTIONQ_ADDR (${address}) is not an https:// URL`);
  const interceptors: Interceptor[] = [...(options.interceptors ?? [])];
  if (token) {
    interceptors.push((next) => (req) => {
      req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    });
  }
  return createGrpcTransport({
    baseUrl: url,
    interceptors,
    nodeOptions: tls ? { ca, cert, key } : undefined,
    ...(options.pingIntervalMs ? { pingIntervalMs: options.pingIntervalMs, pingTimeoutMs: options.pingIntervalMs } : {}),
  });
}
