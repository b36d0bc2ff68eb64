// Helpers for the suites that run a server with authentication on: random
// bearer tokens and the `sha256:` lines of the auth file, the file itself
// (YAML or JSON, written into a temporary directory), per-call credentials
// for grpc-js, and the outcome of a call as code + ErrorInfo, which the
// authorization matrix compares with what the spec's role table says.
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { stringify } from "yaml";
import { protoDir } from "./harness.js";
import { errorInfoOf, messageOf } from "./wire.js";

export const ROLES = ["producer", "worker", "approver", "operator", "viewer", "admin"] as const;
export type Role = (typeof ROLES)[number];

/** A principal of the auth file, with the bearer tokens the test holds for it. */
export interface Principal {
  name: string;
  roles: Role[];
  tokens: string[];
  certificateSubjects?: string[];
  projects?: string[];
  actionTypes?: string[];
  groups?: string[];
}

/** A new random bearer token, as `actionq token` would print. */
export function newToken(): string {
  return randomBytes(32).toString("base64url");
}

/** The auth file's form of a token: `sha256:` and the hex SHA-256. */
export function tokenHash(token: string): string {
  return `sha256:${createHash("sha256").update(token).digest("hex")}`;
}

export function principal(name: string, roles: Role[], scope: Omit<Principal, "name" | "roles" | "tokens"> = {}): Principal {
  return { name, roles, tokens: [newToken()], ...scope };
}

/** The document of the auth file: hashes only, never the tokens. */
export function authDocument(principals: Principal[]): { principals: Record<string, unknown>[] } {
  return {
    principals: principals.map((p) => ({
      name: p.name,
      roles: p.roles,
      tokens: p.tokens.map(tokenHash),
      ...(p.certificateSubjects ? { certificate_subjects: p.certificateSubjects } : {}),
      ...(p.projects ? { projects: p.projects } : {}),
      ...(p.actionTypes ? { action_types: p.actionTypes } : {}),
      ...(p.groups ? { groups: p.groups } : {}),
    })),
  };
}

const authDirs: string[] = [];

/** Writes an auth file (YAML by default) into a fresh temporary directory. */
export async function writeAuthFile(content: Principal[] | string, format: "yaml" | "json" = "yaml"): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "actionq-auth-"));
  authDirs.push(dir);
  const file = path.join(dir, `auth.${format}`);
  await rewriteAuthFile(file, content, format);
  return file;
}

export async function rewriteAuthFile(file: string, content: Principal[] | string, format: "yaml" | "json" = "yaml"): Promise<void> {
  const text = typeof content === "string" ? content : format === "json" ? JSON.stringify(authDocument(content), null, 2) : stringify(authDocument(content));
  await writeFile(file, text, { mode: 0o600 });
}

export async function removeAuthDirs(): Promise<void> {
  for (const dir of authDirs.splice(0)) await rm(dir, { recursive: true, force: true });
}

/** grpc-js metadata carrying `authorization: Bearer <token>`; none without a token. */
export function bearer(token: string | undefined): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.set("authorization", `Bearer ${token}`);
  return metadata;
}

/** What a call came back with: OK, or a status code with its ErrorInfo. */
export interface Outcome {
  code: keyof typeof grpc.status;
  reason?: string;
  metadata?: Record<string, string>;
  message?: string;
}

export const OK: Outcome = { code: "OK" };

export function outcomeOfError(error: unknown): Outcome {
  const serviceError = error as grpc.ServiceError;
  if (typeof serviceError?.code !== "number") throw error;
  const info = errorInfoOf(serviceError);
  return {
    code: grpc.status[serviceError.code] as Outcome["code"],
    reason: info?.reason,
    metadata: info ? { ...info.metadata } : undefined,
    message: messageOf(serviceError),
  };
}

/** The outcome of a batch item (ItemError), in the same form. */
export function outcomeOfItem(item: { error?: { code: number; reason: string; metadata: Record<string, string>; message: string } | null }): Outcome {
  if (!item.error) return OK;
  return {
    code: grpc.status[item.error.code] as Outcome["code"],
    reason: item.error.reason,
    metadata: { ...item.error.metadata },
    message: item.error.message,
  };
}

/** Runs a call and returns its outcome instead of throwing. */
export async function outcomeOf(call: Promise<unknown>): Promise<Outcome> {
  try {
    await call;
    return OK;
  } catch (error) {
    return outcomeOfError(error);
  }
}

/** The first message of a server stream, or the error it failed with. */
export function firstMessage<T = Record<string, unknown>>(
  stream: grpc.ClientReadableStream<T>,
  accept: (message: T) => boolean = () => true,
  timeoutMs = 10_000,
): Promise<{ message: T } | { error: Outcome }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.cancel();
      reject(new Error(`the stream sent nothing within ${timeoutMs} ms`));
    }, timeoutMs);
    stream.on("data", (message: T) => {
      if (!accept(message)) return;
      clearTimeout(timer);
      resolve({ message });
    });
    stream.on("error", (error: grpc.ServiceError) => {
      clearTimeout(timer);
      if (error.code === grpc.status.CANCELLED) return;
      resolve({ error: outcomeOfError(error) });
    });
    stream.on("end", () => {
      clearTimeout(timer);
      reject(new Error("the stream ended without a message or an error"));
    });
  });
}

const healthPackage = grpc.loadPackageDefinition(
  protoLoader.loadSync("grpc/health/v1/health.proto", { includeDirs: [protoDir], longs: String, enums: String, defaults: true }),
) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } };
const reflectionPackage = grpc.loadPackageDefinition(
  protoLoader.loadSync("grpc/reflection/v1/reflection.proto", { includeDirs: [protoDir], longs: String, enums: String, defaults: true, oneofs: true }),
) as unknown as { grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } } };

/** grpc.health.v1.Health/Check for the whole server: "SERVING", or the failure. */
export async function healthCheck(
  address: string,
  credentials = grpc.credentials.createInsecure(),
  metadata = new grpc.Metadata(),
  options: grpc.ClientOptions = {},
): Promise<Outcome & { status?: string }> {
  const client = new healthPackage.grpc.health.v1.Health(address, credentials, options);
  try {
    return await new Promise((resolve) => {
      (client as unknown as Record<string, (...args: unknown[]) => void>).check!.call(
        client,
        { service: "" },
        metadata,
        { deadline: Date.now() + 10_000 },
        (error: grpc.ServiceError | null, response: { status: string }) => {
          resolve(error ? outcomeOfError(error) : { ...OK, status: response.status });
        },
      );
    });
  } finally {
    client.close();
  }
}

/** `grpcurl list` through grpc.reflection.v1: the service names, or the failure. */
export async function reflectionList(
  address: string,
  metadata: grpc.Metadata,
  credentials = grpc.credentials.createInsecure(),
): Promise<Outcome & { services?: string[] }> {
  const client = new reflectionPackage.grpc.reflection.v1.ServerReflection(address, credentials);
  const call = (
    client as unknown as Record<
      string,
      (metadata: grpc.Metadata) => grpc.ClientDuplexStream<unknown, { listServicesResponse?: { service: { name: string }[] } }>
    >
  ).serverReflectionInfo!.call(client, metadata);
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no reflection answer within 10 s")), 10_000);
      call.on("data", (response) => {
        clearTimeout(timer);
        resolve({ ...OK, services: response.listServicesResponse?.service.map((s: { name: string }) => s.name) ?? [] });
      });
      call.on("error", (error: grpc.ServiceError) => {
        clearTimeout(timer);
        resolve(outcomeOfError(error));
      });
      call.write({ listServices: "*" });
    });
  } finally {
    call.cancel();
    client.close();
  }
}
