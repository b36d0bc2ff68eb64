// Who is on the other end of a call, as the socket says: the remote address
// and the TLS client certificate. The adapter puts each call's Node request
// in the context (kNodeRequest); auth, limits and logs ask here rather than
// reach into sockets, whose shape differs between HTTP/1.1 and HTTP/2.
import type http from "node:http";
import type http2 from "node:http2";
import type { TLSSocket } from "node:tls";
import type { X509Certificate } from "node:crypto";
import { createContextKey } from "@connectrpc/connect";

export type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;

/** The Node request under a call, put in the context by the adapter. */
export const kNodeRequest = createContextKey<NodeRequest | undefined>(undefined, { description: "actionq node request" });

/** The certificate a TLS client presented, and whether it chains to the
 * client CA. */
export interface PeerCertificate {
  certificate: X509Certificate;
  authorized: boolean;
  /** Why it is not authorized, as Node's TLS layer says. */
  authorizationError: Error | string | undefined;
}

function socketOf(raw: NodeRequest) {
  // Under HTTP/2 this is Node's proxy of the session's socket: `in` does
  // not see through it, a property read does.
  return "stream" in raw ? raw.stream.session?.socket : raw.socket;
}

export function remoteAddress(raw: NodeRequest | undefined): string {
  if (!raw) return "unknown";
  return socketOf(raw)?.remoteAddress ?? "unknown";
}

/** The client certificate, when the call came over TLS with one. */
export function peerCertificate(raw: NodeRequest | undefined): PeerCertificate | undefined {
  if (!raw) return undefined;
  const socket = socketOf(raw) as Partial<TLSSocket> | undefined;
  if (typeof socket?.getPeerX509Certificate !== "function") return undefined;
  const certificate = socket.getPeerX509Certificate();
  if (!certificate) return undefined;
  return { certificate, authorized: socket.authorized === true, authorizationError: socket.authorizationError };
}
