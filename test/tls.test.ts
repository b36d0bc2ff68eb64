// TLS and mutual TLS on the one port (issue 6), with certificates made in the
// run (tls-certs.ts): grpc-js with createSsl, the Connect client over gRPC
// with nodeOptions, Connect JSON over HTTP/1.1 with node:https, and actionctl
// with ACTIONQ_ADDR=https://... . A bearer token works over TLS; a client
// certificate whose subject the auth file maps authenticates as that
// principal; a certificate that does not verify or maps to nobody, a
// cleartext client and a call without any credential are refused.
import { execFile } from "node:child_process";
import https from "node:https";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ActionQueueService } from "../gen/actionq/v1/action_queue_service_pb.js";
import { type Outcome, type Principal, healthCheck, outcomeOf, principal, removeAuthDirs, writeAuthFile } from "./support/auth.js";
import { GrpcClient, type TestServer, snapshot, startTestServer } from "./support/harness.js";
import type { WireAction } from "./support/wire.js";
import { type Issued, type TlsFixtures, createTlsFixtures } from "./support/tls-certs.js";

const ACTIONCTL = path.resolve(import.meta.dirname, "..", "dist", "src", "cli", "actionctl.js");
const ROLES = ["producer", "worker", "viewer"] as const;

let tls: TlsFixtures;
let t: TestServer;
let port: number;
/** Authenticates with a bearer token only. */
const tokenUser: Principal = principal("app:tls-token", [...ROLES]);
/** Authenticates with its client certificate; the file lists the RDNs in another order than the certificate. */
const certUser: Principal = principal("svc:worker-a", [...ROLES], { certificateSubjects: ["O=ops,CN=worker-a"] });
let certA: Issued;
let otherCaCert: Issued;
let expiredCert: Issued;
let strangerCert: Issued;

const clients: { close(): void }[] = [];

beforeAll(async () => {
  tls = await createTlsFixtures();
  certA = await tls.client("worker-a", "CN=worker-a,O=ops");
  // The same subject, but signed by a CA the server does not trust.
  otherCaCert = await tls.client("worker-a-other-ca", "CN=worker-a,O=ops", { by: tls.otherCa });
  expiredCert = await tls.expiredClient("worker-a-expired", "CN=worker-a,O=ops");
  strangerCert = await tls.client("stranger", "CN=stranger,O=ops");
  const authFile = await writeAuthFile([tokenUser, certUser]);
  t = await startTestServer({
    ACTIONQ_AUTH_FILE: authFile,
    ACTIONQ_TLS_CERT: tls.server.certPath,
    ACTIONQ_TLS_KEY: tls.server.keyPath,
    ACTIONQ_TLS_CLIENT_CA: tls.ca.certPath,
    ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600",
  });
  port = t.server.port;
});

afterAll(async () => {
  for (const client of clients.splice(0)) client.close();
  await t?.close();
  await tls?.remove();
  await removeAuthDirs();
});

/** A grpc-js client of ActionQueueService over TLS, trusting the test CA. */
function grpcTls(options: { cert?: Issued; ca?: string; host?: string } = {}): GrpcClient {
  const credentials = grpc.credentials.createSsl(
    Buffer.from(options.ca ?? tls.ca.cert),
    options.cert ? Buffer.from(options.cert.key) : null,
    options.cert ? Buffer.from(options.cert.cert) : null,
  );
  const client = new GrpcClient(`${options.host ?? "127.0.0.1"}:${port}`, credentials);
  clients.push(client);
  return client;
}

function withToken(token: string): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  return metadata;
}

const uniqueType = (prefix: string) => `${prefix}_${Math.random().toString(16).slice(2, 10)}`;

async function enqueueOver(client: GrpcClient, metadata = new grpc.Metadata()): Promise<WireAction> {
  const { action } = await client.unary<{ action: WireAction }>("EnqueueAction", { actionType: uniqueType("tls"), createdBy: "" }, metadata);
  return action;
}

async function actorsOf(id: string): Promise<string[]> {
  const { rows } = await t.db.query<{ actor: string }>("SELECT actor FROM events WHERE action_id = $1 AND actor NOT LIKE 'policy:%' ORDER BY id", [id]);
  return rows.map((r) => r.actor);
}

/** A call that must be refused and write nothing; returns how it failed. */
async function refused(call: () => Promise<unknown>): Promise<Outcome> {
  const before = await snapshot(t.db);
  const outcome = await outcomeOf(call());
  expect(outcome.code, outcome.message).not.toBe("OK");
  expect(await snapshot(t.db), "a refused call changes nothing").toBe(before);
  return outcome;
}

/** A Connect unary call with a JSON body over HTTP/1.1 and TLS (node:https). */
function h1Post(
  method: string,
  body: unknown,
  options: { headers?: Record<string, string>; cert?: Issued } = {},
): Promise<{ status: number; httpVersion: string; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: "127.0.0.1",
        port,
        method: "POST",
        path: `/actionq.v1.ActionQueueService/${method}`,
        ca: tls.ca.cert,
        ...(options.cert ? { cert: options.cert.cert, key: options.cert.key } : {}),
        agent: false,
        headers: { "content-type": "application/json", "connect-protocol-version": "1", ...options.headers },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
        res.on("end", () => resolve({ status: res.statusCode!, httpVersion: res.httpVersion, json: JSON.parse(text) as Record<string, unknown> }));
        res.on("error", reject);
      },
    );
    req.setTimeout(20_000, () => req.destroy(new Error("no answer within 20 s")));
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

describe("grpc-js over TLS", () => {
  it("a bearer token works over TLS, to 127.0.0.1 (SAN IP) and to localhost (SAN DNS)", async () => {
    for (const host of ["127.0.0.1", "localhost"]) {
      const action = await enqueueOver(grpcTls({ host }), withToken(tokenUser.tokens[0]!));
      expect(action.createdBy, host).toBe(tokenUser.name);
      expect(await actorsOf(action.id)).toEqual([tokenUser.name]);
    }
  });

  it("a cleartext client on the TLS port fails, and writes nothing", async () => {
    const cleartext = new GrpcClient(`127.0.0.1:${port}`);
    clients.push(cleartext);
    const outcome = await refused(() => enqueueOver(cleartext, withToken(tokenUser.tokens[0]!)));
    expect(outcome.code).toBe("UNAVAILABLE");
  });

  it("a client that does not trust the server's CA fails the handshake", async () => {
    const outcome = await refused(() => enqueueOver(grpcTls({ ca: tls.otherCa.cert }), withToken(tokenUser.tokens[0]!)));
    expect(outcome.code).toBe("UNAVAILABLE");
  });

  it("without any credential: UNAUTHENTICATED", async () => {
    const outcome = await refused(() => enqueueOver(grpcTls()));
    expect(outcome).toMatchObject({ code: "UNAUTHENTICATED", reason: "UNAUTHENTICATED" });
  });

  it("health needs no credential over TLS", async () => {
    const credentials = grpc.credentials.createSsl(Buffer.from(tls.ca.cert));
    expect(await healthCheck(`127.0.0.1:${port}`, credentials)).toMatchObject({ code: "OK", status: "SERVING" });
  });
});

describe("mutual TLS", () => {
  it("a client certificate whose subject is mapped authenticates as that principal (RDN order does not matter)", async () => {
    const client = grpcTls({ cert: certA });
    const action = await enqueueOver(client);
    expect(action.createdBy).toBe(certUser.name);
    expect(await actorsOf(action.id)).toEqual([certUser.name]);
    const { claim } = await client.unary<{ claim: { action: WireAction; claimToken: string } }>("ClaimAction", { actionTypes: [action.actionType] });
    expect(claim.action.claimedBy).toBe(certUser.name);
    await client.unary("CompleteAction", { id: action.id, claimToken: claim.claimToken, resultRef: "mtls" });
    expect(await actorsOf(action.id)).toEqual([certUser.name, certUser.name, certUser.name]);
  });

  // The server takes the handshake (it asks for a certificate but does not
  // require one) and refuses the call: UNAUTHENTICATED, not a handshake failure.
  it.each([
    ["signed by another CA", () => otherCaCert],
    ["expired", () => expiredCert],
    ["valid, but its subject maps to no principal", () => strangerCert],
  ])("a client certificate %s is UNAUTHENTICATED", async (_name, cert) => {
    const outcome = await refused(() => enqueueOver(grpcTls({ cert: cert() })));
    expect(outcome).toMatchObject({ code: "UNAUTHENTICATED", reason: "UNAUTHENTICATED" });
  });

  // "A presented certificate that does not verify, or whose subject maps to
  // no principal, is UNAUTHENTICATED", even next to a good token.
  it.each([
    ["signed by another CA", () => otherCaCert],
    ["expired", () => expiredCert],
    ["valid, but its subject maps to no principal", () => strangerCert],
  ])("a client certificate %s is UNAUTHENTICATED even with a valid bearer token", async (_name, cert) => {
    const outcome = await refused(() => enqueueOver(grpcTls({ cert: cert() }), withToken(tokenUser.tokens[0]!)));
    expect(outcome).toMatchObject({ code: "UNAUTHENTICATED", reason: "UNAUTHENTICATED" });
  });
});

describe("the Connect client over TLS", () => {
  const connectClient = (nodeOptions: Record<string, unknown>, host = "127.0.0.1") =>
    createClient(ActionQueueService, createGrpcTransport({ baseUrl: `https://${host}:${port}`, nodeOptions: { ca: tls.ca.cert, ...nodeOptions } }));

  it("with a bearer token header", async () => {
    const client = connectClient({}, "localhost");
    const response = await client.enqueueAction({ actionType: uniqueType("connect_tls") }, { headers: { authorization: `Bearer ${tokenUser.tokens[0]!}` } });
    expect(response.action?.createdBy).toBe(tokenUser.name);
  });

  it("with a client certificate", async () => {
    const client = connectClient({ cert: certA.cert, key: certA.key });
    const response = await client.enqueueAction({ actionType: uniqueType("connect_mtls") });
    expect(response.action?.createdBy).toBe(certUser.name);
    expect(await actorsOf(String(response.action!.id))).toEqual([certUser.name]);
  });

  it("without a credential: Code.Unauthenticated", async () => {
    const client = connectClient({});
    const error = await client.getQueueStats({}).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(error?.code).toBe(Code.Unauthenticated);
  });
});

describe("Connect JSON over HTTP/1.1 with TLS", () => {
  it("works with a token; without one it is 401 unauthenticated", async () => {
    const ok = await h1Post("EnqueueAction", { actionType: uniqueType("h1_tls") }, { headers: { authorization: `Bearer ${tokenUser.tokens[0]!}` } });
    expect(ok.httpVersion).toBe("1.1");
    expect(ok.status).toBe(200);
    expect((ok.json.action as { createdBy: string }).createdBy).toBe(tokenUser.name);
    const denied = await h1Post("GetQueueStats", {});
    expect(denied.status).toBe(401);
    expect(denied.json.code).toBe("unauthenticated");
  });

  it("works with a mapped client certificate", async () => {
    const ok = await h1Post("EnqueueAction", { actionType: uniqueType("h1_mtls") }, { cert: certA });
    expect(ok.status, JSON.stringify(ok.json)).toBe(200);
    expect((ok.json.action as { createdBy: string }).createdBy).toBe(certUser.name);
  });

  // The handshake succeeds (the server asks for a certificate but does not
  // require one); the call is then refused, with or without a good token.
  it.each([
    ["signed by another CA", () => otherCaCert, false],
    ["expired", () => expiredCert, false],
    ["whose subject maps to no principal", () => strangerCert, false],
    ["signed by another CA, next to a valid token", () => otherCaCert, true],
    ["expired, next to a valid token", () => expiredCert, true],
    ["whose subject maps to no principal, next to a valid token", () => strangerCert, true],
  ])("a client certificate %s is 401 unauthenticated", async (_name, cert, withValidToken) => {
    const before = await snapshot(t.db);
    const headers: Record<string, string> = withValidToken ? { authorization: `Bearer ${tokenUser.tokens[0]!}` } : {};
    const denied = await h1Post("EnqueueAction", { actionType: uniqueType("h1_bad_cert") }, { cert: cert(), headers });
    expect(denied.status, JSON.stringify(denied.json)).toBe(401);
    expect(denied.json.code).toBe("unauthenticated");
    expect(await snapshot(t.db)).toBe(before);
  });
});

describe("actionctl over TLS", () => {
  interface Run {
    code: number | null;
    stdout: string;
    stderr: string;
  }
  function actionctl(args: string[], env: Record<string, string>): Promise<Run> {
    const clean = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("ACTIONQ_")));
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        [ACTIONCTL, ...args],
        { env: { ...clean, ACTIONQ_ADDR: `https://127.0.0.1:${port}`, ...env }, timeout: 20_000 },
        (error, stdout, stderr) => {
          resolve({ code: error ? (typeof error.code === "number" ? error.code : null) : 0, stdout, stderr });
        },
      );
    });
  }

  it("ACTIONQ_TLS_CA and ACTIONQ_TOKEN", async () => {
    const run = await actionctl(["add", "--type", uniqueType("ctl_tls"), "--created-by", tokenUser.name], {
      ACTIONQ_TLS_CA: tls.ca.certPath,
      ACTIONQ_TOKEN: tokenUser.tokens[0]!,
    });
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout).action.created_by).toBe(tokenUser.name);
  });

  it("ACTIONQ_TLS_CLIENT_CERT and ACTIONQ_TLS_CLIENT_KEY (mTLS), no token", async () => {
    const run = await actionctl(["add", "--type", uniqueType("ctl_mtls"), "--created-by", certUser.name], {
      ACTIONQ_TLS_CA: tls.ca.certPath,
      ACTIONQ_TLS_CLIENT_CERT: certA.certPath,
      ACTIONQ_TLS_CLIENT_KEY: certA.keyPath,
    });
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout).action.created_by).toBe(certUser.name);
  });

  it("without the CA the server's certificate is not trusted; without a credential it is unauthenticated", async () => {
    // actionctl's exit codes: 3 the server could not be reached, 4 not authenticated.
    const untrusted = await actionctl(["stats"], { ACTIONQ_TOKEN: tokenUser.tokens[0]! });
    expect(untrusted.code).toBe(3);
    const anonymous = await actionctl(["stats"], { ACTIONQ_TLS_CA: tls.ca.certPath });
    expect(anonymous.code).toBe(4);
    expect(anonymous.stderr).toMatch(/unauthenticated/i);
  });
});

// Last: it replaces the server's certificate for the rest of the file.
describe("certificate rotation", () => {
  it("rereading the files (SIGHUP) puts a new server certificate in force for new connections", async () => {
    const before = await enqueueOver(grpcTls(), withToken(tokenUser.tokens[0]!));
    expect(before.createdBy).toBe(tokenUser.name);
    // Same paths, new certificate from another CA, as a renewal would leave them.
    await tls.otherCa.issueServer("server", ["localhost"], ["127.0.0.1"]);
    expect(await t.server.reloadTls()).toBe(true);
    const after = await enqueueOver(grpcTls({ ca: tls.otherCa.cert }), withToken(tokenUser.tokens[0]!));
    expect(after.createdBy).toBe(tokenUser.name);
    const stale = await refused(() => enqueueOver(grpcTls(), withToken(tokenUser.tokens[0]!)));
    expect(stale.code).toBe("UNAVAILABLE");
  });
});
