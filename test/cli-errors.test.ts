// Every error a person can cause with actionctl is one line on stderr that
// says what happened and what to do, with the exit code --help documents:
// no server at the address, TLS on one side only or a CA the client lacks,
// no or a wrong token, a role that does not allow the call, an unknown id,
// an action in the wrong status, a bad field, and a claim held back by a
// pause. On a terminal the line is a sentence; piped, it is JSON with a hint.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Principal, principal, removeAuthDirs, writeAuthFile } from "./support/auth.js";
import { type Run, actionctlAt, errorOf, killChildren, runActionctl, runInTerminal } from "./support/actionctl.js";
import { type TestServer, startTestServer } from "./support/harness.js";
import { type TlsFixtures, createTlsFixtures } from "./support/tls-certs.js";

/** One line, no stack trace. */
function oneLine(run: Run): string {
  const text = run.stdout + run.stderr;
  expect(text, "no stack trace").not.toMatch(/\n\s+at /);
  expect(text.endsWith("\n") && text.indexOf("\n") === text.length - 1, `one line: ${JSON.stringify(text)}`).toBe(true);
  return text.trimEnd();
}

describe("actionctl errors", () => {
  let t: TestServer;
  let tlsServer: TestServer;
  let authServer: TestServer;
  let tls: TlsFixtures;
  const viewer: Principal = principal("human:viewer", ["viewer"]);
  const admin: Principal = principal("human:admin", ["admin"]);
  const { ok, refused } = actionctlAt(() => t.address);
  const terminal = (args: string[], env: Record<string, string> = {}) => runInTerminal(args, { ACTIONQ_ADDR: t.address, ...env });

  beforeAll(async () => {
    tls = await createTlsFixtures();
    [t, tlsServer, authServer] = await Promise.all([
      startTestServer({ ACTIONQ_SWEEP_INTERVAL_SECONDS: "3600" }),
      startTestServer({ ACTIONQ_TLS_CERT: tls.server.certPath, ACTIONQ_TLS_KEY: tls.server.keyPath }),
      writeAuthFile([viewer, admin]).then((file) => startTestServer({ ACTIONQ_AUTH_FILE: file })),
    ]);
  });
  afterEach(killChildren);
  afterAll(async () => {
    await Promise.all([t?.close(), tlsServer?.close(), authServer?.close()]);
    await tls?.remove();
    await removeAuthDirs();
  });

  it("no server at the address: exit 3, naming the address, ACTIONQ_ADDR and --address", async () => {
    const line = oneLine(await terminal(["ls"], { ACTIONQ_ADDR: "127.0.0.1:1" }));
    expect(line).toBe(
      "actionctl: no server is listening at 127.0.0.1:1 (connection refused); start one with `actionq serve`, or set ACTIONQ_ADDR (or --address) to where it listens",
    );
    expect((await terminal(["ls"], { ACTIONQ_ADDR: "127.0.0.1:1" })).code).toBe(3);
    const flag = await runActionctl(["stats", "--address", "http://127.0.0.1:1"], {});
    expect(flag.code).toBe(3);
    expect(errorOf(flag)).toMatchObject({
      code: "unavailable",
      message: "connect ECONNREFUSED 127.0.0.1:1",
      hint: expect.stringContaining("no server is listening at 127.0.0.1:1"),
    });
  });

  describe("TLS on one side only, or a CA the client lacks", () => {
    const tlsAddress = () => `https://127.0.0.1:${tlsServer.server.port}`;

    it("a client without the CA is told to set ACTIONQ_TLS_CA", async () => {
      const run = await terminal(["stats"], { ACTIONQ_ADDR: tlsAddress() });
      expect(run.code).toBe(3);
      expect(oneLine(run)).toMatch(
        new RegExp(
          `^actionctl: the server at 127\\.0\\.0\\.1:${tlsServer.server.port} presented a certificate this client does not trust \\(.+\\); set ACTIONQ_TLS_CA to the PEM file of the CA that signed the server's certificate$`,
        ),
      );
    });

    it("a client with another CA is told that this CA did not sign it", async () => {
      const run = await runActionctl(["stats"], { ACTIONQ_ADDR: tlsAddress(), ACTIONQ_TLS_CA: tls.otherCa.certPath });
      expect(run.code).toBe(3);
      expect(errorOf(run).hint).toContain(`ACTIONQ_TLS_CA=${tls.otherCa.certPath} did not sign it`);
      // With the right CA, the same call works.
      expect((await runActionctl(["stats"], { ACTIONQ_ADDR: tlsAddress(), ACTIONQ_TLS_CA: tls.ca.certPath })).code).toBe(0);
    });

    it("cleartext to a TLS port is told the server speaks TLS and to use https://", async () => {
      const at = `127.0.0.1:${tlsServer.server.port}`;
      for (const args of [["stats"], ["events", "--follow"]]) {
        const run = await terminal(args, { ACTIONQ_ADDR: at });
        expect(run.code, `${args.join(" ")}: ${oneLine(run)}`).toBe(3);
        expect(oneLine(run)).toBe(
          `actionctl: the server at ${at} speaks TLS, and this client sent cleartext; use ACTIONQ_ADDR=https://${at} and set ACTIONQ_TLS_CA to the CA that signed its certificate`,
        );
      }
    });

    it("https:// to a cleartext port is told the server does not speak TLS", async () => {
      const at = `127.0.0.1:${t.server.port}`;
      const run = await terminal(["stats"], { ACTIONQ_ADDR: `https://${at}`, ACTIONQ_TLS_CA: tls.ca.certPath });
      expect(run.code).toBe(3);
      expect(oneLine(run)).toBe(
        `actionctl: the server at ${at} does not speak TLS; use ACTIONQ_ADDR=${at} (cleartext) without ACTIONQ_TLS_CA, or turn TLS on at the server (ACTIONQ_TLS_CERT, ACTIONQ_TLS_KEY)`,
      );
    });

    it("ACTIONQ_TLS_CA with a cleartext address is a setting error: exit 2, nothing sent", async () => {
      const run = await terminal(["stats"], { ACTIONQ_TLS_CA: tls.ca.certPath });
      expect(run.code).toBe(2);
      expect(oneLine(run)).toMatch(/^actionctl: ACTIONQ_TLS_\* is set but ACTIONQ_ADDR \(.+\) is not an https:\/\/ URL$/);
    });
  });

  describe("with authentication on", () => {
    const at = () => ({ ACTIONQ_ADDR: authServer.address });

    it("no token: UNAUTHENTICATED, exit 4, hinting at ACTIONQ_TOKEN", async () => {
      const run = await runInTerminal(["stats"], at());
      expect(run.code).toBe(4);
      expect(oneLine(run)).toMatch(
        /^actionctl: .+; set ACTIONQ_TOKEN to a bearer token listed in the server's auth file, or ACTIONQ_TLS_CLIENT_CERT and ACTIONQ_TLS_CLIENT_KEY$/,
      );
      const piped = await runActionctl(["stats"], at());
      expect(piped.code).toBe(4);
      expect(errorOf(piped)).toMatchObject({ code: "unauthenticated", reason: "UNAUTHENTICATED", hint: expect.stringContaining("ACTIONQ_TOKEN") });
    });

    it("a wrong token: exit 4, saying the server did not accept ACTIONQ_TOKEN", async () => {
      const run = await runInTerminal(["stats"], { ...at(), ACTIONQ_TOKEN: "not-a-token" });
      expect(run.code).toBe(4);
      expect(oneLine(run)).toMatch(/; the server did not accept ACTIONQ_TOKEN: check it against the server's auth file/);
    });

    it("a role that does not allow the call: PERMISSION_DENIED, exit 4, pointing at whoami, which names the principal", async () => {
      const run = await runInTerminal(["add", "--type", "err_denied"], { ...at(), ACTIONQ_TOKEN: viewer.tokens[0]! });
      expect(run.code).toBe(4);
      expect(oneLine(run)).toMatch(/^actionctl: .+; `actionctl whoami` shows who ACTIONQ_TOKEN names and its roles; this call needs another role or scope$/);
      expect(JSON.parse((await runActionctl(["whoami"], { ...at(), ACTIONQ_TOKEN: viewer.tokens[0]! })).stdout)).toEqual({
        authentication_enabled: true,
        name: "human:viewer",
        roles: ["viewer"],
      });
      const who = await runInTerminal(["whoami"], { ...at(), ACTIONQ_TOKEN: admin.tokens[0]! });
      expect(who.stdout).toMatch(/^principal +human:admin\nroles +admin\nprojects +all\naction types +all\ngroups +none\n$/);
    });
  });

  it("over the producer's hourly rate: RESOURCE_EXHAUSTED, exit 1, saying in how many seconds to try again", async () => {
    const producer = "agent:err-rate";
    const limit = t.server.config.rateLimitPerHour;
    await t.client.enqueueActions({ requests: Array.from({ length: limit }, () => ({ actionType: "err_rate", createdBy: producer })) });
    const run = await terminal(["add", "--type", "err_rate", "--created-by", producer]);
    expect(run.code).toBe(1);
    expect(oneLine(run)).toMatch(
      new RegExp(
        `^actionctl: created_by: producer ${producer} has enqueued ${limit} actions in the last hour; the limit is ${limit}; retry in (35\\d\\d|3600) s \\(at \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ\\)$`,
      ),
    );
    const json = await refused(["add", "--type", "err_rate", "--created-by", producer]);
    expect(json).toMatchObject({
      code: "resource_exhausted",
      reason: "RATE_LIMITED",
      metadata: { retry_after_seconds: expect.stringMatching(/^(35\d\d|3600)$/) },
    });
  });

  it("an unknown id: NOT_FOUND, exit 1, one line", async () => {
    const run = await terminal(["show", "999999999"]);
    expect(run.code).toBe(1);
    expect(oneLine(run)).toBe("actionctl: action 999999999 does not exist; `actionctl ls` lists the actions");
    expect(await refused(["show", "999999999"])).toMatchObject({ code: "not_found", reason: "ACTION_NOT_FOUND", hint: "`actionctl ls` lists the actions" });
  });

  it("an action in the wrong status: FAILED_PRECONDITION with its status now, exit 1", async () => {
    const added = await ok(["add", "--type", "err_status", "--created-by", "human:t"]);
    const run = await terminal(["retry", added.action.id, "--actor", "human:ops", "--reason", "again"]);
    expect(run.code).toBe(1);
    expect(oneLine(run)).toMatch(
      new RegExp(`^actionctl: action ${added.action.id} is APPROVED; .+; \`actionctl show ${added.action.id}\` shows where it stands$`),
    );
    expect(await refused(["retry", added.action.id, "--actor", "human:ops", "--reason", "again"])).toMatchObject({
      code: "failed_precondition",
      metadata: { current_status: "APPROVED" },
    });
  });

  it("a bad field: INVALID_ARGUMENT naming the field and its flag, exit 1", async () => {
    const run = await terminal(["add", "--type", "redeploy_service", "--risk", "safe", "--created-by", "human:t"]);
    expect(run.code).toBe(1);
    expect(oneLine(run)).toMatch(/^actionctl: risk_level: redeploy_service is GUARDED by policy.*; fix --risk \(field risk_level\)$/);
  });

  it("a claim during a pause says which pause holds it back, exit 2, on a terminal and as JSON", async () => {
    await ok(["add", "--type", "err_paused", "--project", "err-proj", "--created-by", "human:t"]);
    await ok(["pause", "--type", "err_paused", "--actor", "human:carol", "--reason", "deploy freeze"]);
    try {
      const run = await terminal(["claim", "--worker", "w", "--type", "err_paused"]);
      expect(run.code).toBe(2);
      expect(oneLine(run)).toMatch(
        /^actionctl: nothing to claim: claims of type err_paused paused by human:carol since \S+Z: deploy freeze; `actionctl resume --type err_paused` lifts it$/,
      );
      // Without a type filter, the type pause still explains it: that type has approved actions.
      const piped = await runActionctl(["claim", "--worker", "w", "--project", "err-proj"], { ACTIONQ_ADDR: t.address });
      expect(piped.code).toBe(2);
      expect(piped.stdout).toBe("");
      expect(errorOf(piped)).toMatchObject({
        code: "not_found",
        reason: "CLAIMS_PAUSED",
        metadata: { pause_kind: "action_type", pause_value: "err_paused", paused_by: "human:carol", pause_reason: "deploy freeze" },
      });

      await ok(["pause", "--all", "--actor", "human:ops", "--reason", "incident 42"]);
      const all = oneLine(await terminal(["claim", "--worker", "w", "--project", "err-proj"]));
      expect(all).toMatch(/^actionctl: nothing to claim: all claims paused by human:ops since \S+Z: incident 42; .*`actionctl resume --all` lifts the first$/);
    } finally {
      await ok(["resume", "--type", "err_paused", "--actor", "human:carol"]);
      await ok(["resume", "--all", "--actor", "human:ops"]).catch(() => undefined);
    }
    // Nothing paused and nothing approved: it says so.
    const none = oneLine(await terminal(["claim", "--worker", "w", "--type", "err_never"]));
    expect(none).toBe("actionctl: nothing to claim; no approved action matches (see `actionctl ls --status approved`)");
  });
});
