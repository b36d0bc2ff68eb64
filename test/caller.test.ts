// GetCaller: who the server takes the caller to be, over the wire. With
// authentication on it names the principal of the credential, its roles and
// scope, whatever those roles are; without credentials it is refused like
// any other call. With authentication off it says so.
import { status as GrpcCode } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bearer, principal, removeAuthDirs, writeAuthFile } from "./support/auth.js";
import { type TestServer, closeWithin, grpcError, startTestServer } from "./support/harness.js";

const worker = principal("worker:lone", ["worker"]);
const scopedApprover = principal("team:payments", ["approver", "viewer"], { projects: ["payments"], actionTypes: ["refund"] });
const admin = principal("human:root", ["admin"]);

describe("GetCaller with authentication", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_AUTH_FILE: await writeAuthFile([worker, scopedApprover, admin]) });
  });
  afterAll(async () => {
    await closeWithin(t);
    await removeAuthDirs();
  });

  it("names the principal, its roles and its scope, for any role", async () => {
    expect(await t.grpc.unary("GetCaller", {}, bearer(worker.tokens[0]))).toEqual({
      authenticationEnabled: true,
      name: "worker:lone",
      roles: ["worker"],
      projects: [],
      actionTypes: [],
      groups: [],
    });
    expect(await t.grpc.unary("GetCaller", {}, bearer(scopedApprover.tokens[0]))).toEqual({
      authenticationEnabled: true,
      name: "team:payments",
      roles: ["approver", "viewer"],
      projects: ["payments"],
      actionTypes: ["refund"],
      groups: [],
    });
    expect(await t.grpc.unary("GetCaller", {}, bearer(admin.tokens[0]))).toMatchObject({ name: "human:root", roles: ["admin"] });
  });

  it("without a credential, or with an unknown one, is UNAUTHENTICATED", async () => {
    expect((await grpcError(t.grpc.unary("GetCaller", {}))).code).toBe(GrpcCode.UNAUTHENTICATED);
    expect((await grpcError(t.grpc.unary("GetCaller", {}, bearer("not-a-token")))).code).toBe(GrpcCode.UNAUTHENTICATED);
  });
});

describe("GetCaller without authentication", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("says that callers are not authenticated and name themselves", async () => {
    expect(await t.grpc.unary("GetCaller", {})).toEqual({ authenticationEnabled: false, name: "", roles: [], projects: [], actionTypes: [], groups: [] });
  });
});
