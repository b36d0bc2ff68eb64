// `actionq token`: roles checked as the server checks them, and --append
// adding a principal, or one more token to an existing one, to an auth file
// that a real server then accepts. A file that would become invalid is
// left as it was. These run the compiled command: `npm test` builds first.
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { status as GrpcCode } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requireBuiltCli, runToEnd } from "./support/processes.js";
import { bearer } from "./support/auth.js";
import { closeWithin, grpcError, startTestServer } from "./support/harness.js";

let dir: string;
beforeAll(async () => {
  requireBuiltCli();
  dir = await mkdtemp(path.join(tmpdir(), "actionq-token-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const tokenOf = (stdout: string) => /^token: (\S+)$/m.exec(stdout)?.[1];

describe("actionq token", () => {
  it("refuses a role the server does not know, naming the roles there are, and prints no token", async () => {
    const run = await runToEnd(["token", "--name", "human:x", "--role", "approver", "superuser"], {});
    expect(run.code).toBe(2);
    expect(run.stderr.trim()).toBe("actionq: --role superuser: not a role; the roles are producer, worker, approver, operator, viewer, admin");
    expect(run.stdout).toBe("");
  });

  it("--append creates the file (mode 600), adds principals and tokens, keeps comments, and a server accepts every token", async () => {
    const file = path.join(dir, "auth.yaml");
    const alice = await runToEnd(["token", "--name", "human:alice", "--role", "approver", "viewer", "--append", file], {});
    expect(alice.code).toBe(0);
    expect(alice.stderr).toContain(`added human:alice (approver, viewer) to ${file} (created)`);
    expect((await stat(file)).mode & 0o777).toBe(0o600);

    // A person's comment survives the next edit.
    await writeFile(file, `# who may do what\n${await readFile(file, "utf8")}`);
    const bob = await runToEnd(["token", "--name", "human:bob", "--role", "operator", "--append", file], {});
    expect(bob.code).toBe(0);
    const second = await runToEnd(["token", "--name", "human:alice", "--append", file], {});
    expect(second.code).toBe(0);
    expect(second.stderr).toContain("added a token to human:alice (approver, viewer)");
    const text = await readFile(file, "utf8");
    expect(text).toContain("# who may do what");
    expect(text).not.toContain(tokenOf(alice.stdout)!);

    const t = await startTestServer({ ACTIONQ_AUTH_FILE: file });
    try {
      for (const [run, name, roles] of [
        [alice, "human:alice", ["approver", "viewer"]],
        [second, "human:alice", ["approver", "viewer"]],
        [bob, "human:bob", ["operator"]],
      ] as const) {
        expect(await t.grpc.unary("GetCaller", {}, bearer(tokenOf(run.stdout)))).toMatchObject({ name, roles });
      }
    } finally {
      await closeWithin(t);
    }
  });

  it("refuses other roles for an existing principal, and leaves an invalid file untouched", async () => {
    const file = path.join(dir, "auth.json");
    expect((await runToEnd(["token", "--name", "svc:a", "--role", "worker", "--append", file], {})).code).toBe(0);
    const before = await readFile(file, "utf8");
    expect(JSON.parse(before).principals[0]).toMatchObject({ name: "svc:a", roles: ["worker"] });

    const clash = await runToEnd(["token", "--name", "svc:a", "--role", "admin", "--append", file], {});
    expect(clash.code).toBe(2);
    expect(clash.stderr).toContain("svc:a is already in");
    expect(await readFile(file, "utf8")).toBe(before);

    const broken = path.join(dir, "broken.yaml");
    await writeFile(broken, "principals:\n  - name: x\n    roles: [wizard]\n    tokens: []\n");
    await chmod(broken, 0o600);
    const run = await runToEnd(["token", "--name", "human:c", "--append", broken], {});
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("would be invalid");
    expect(await readFile(broken, "utf8")).toBe("principals:\n  - name: x\n    roles: [wizard]\n    tokens: []\n");
    expect(run.stdout).toBe("");
  });

  it("--group gives a new principal approver groups that GetCaller reports; a bad group or other groups for an existing one are refused", async () => {
    const file = path.join(dir, "groups.yaml");
    const lead = await runToEnd(["token", "--name", "human:lead", "--role", "approver", "--group", "sre-leads", "dba", "--append", file], {});
    expect(lead.code).toBe(0);
    expect(lead.stderr).toContain("added human:lead (approver; groups sre-leads, dba)");
    const before = await readFile(file, "utf8");

    const clash = await runToEnd(["token", "--name", "human:lead", "--group", "dba", "--append", file], {});
    expect(clash.code).toBe(2);
    expect(clash.stderr).toContain("human:lead is already in");
    expect(clash.stderr).toContain("with the groups sre-leads, dba");
    const bad = await runToEnd(["token", "--name", "human:x", "--group", "sre leads", "--append", file], {});
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--group "sre leads"');
    expect(await readFile(file, "utf8")).toBe(before);

    const t = await startTestServer({ ACTIONQ_AUTH_FILE: file });
    try {
      expect(await t.grpc.unary("GetCaller", {}, bearer(tokenOf(lead.stdout)))).toMatchObject({ name: "human:lead", groups: ["dba", "sre-leads"] });
    } finally {
      await closeWithin(t);
    }
  });

  it("--append without --name is refused", async () => {
    const run = await runToEnd(["token", "--append", path.join(dir, "x.yaml")], {});
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("--append needs --name");
  });
});

describe("a file made by --append alone", () => {
  it("serves its principal as a viewer by default, and refuses a token it does not hold", async () => {
    const file = path.join(dir, "other.yaml");
    const made = await runToEnd(["token", "--name", "human:z", "--append", file], {});
    expect(made.code).toBe(0);
    const t = await startTestServer({ ACTIONQ_AUTH_FILE: file });
    try {
      expect(await t.grpc.unary("GetCaller", {}, bearer(tokenOf(made.stdout)))).toMatchObject({ name: "human:z", roles: ["viewer"] });
      expect((await grpcError(t.grpc.unary("GetCaller", {}, bearer("aq_not-in-the-file")))).code).toBe(GrpcCode.UNAUTHENTICATED);
    } finally {
      await closeWithin(t);
    }
  });
});
