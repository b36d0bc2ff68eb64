// The settings module: every variable validated with a message naming it,
// and the settings table in docs/operations.md kept true to the code.
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, SETTINGS, describeSettings, loadConfig } from "../src/config.js";

describe("configuration", () => {
  it("uses the documented defaults when nothing is set", () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      databaseUrl: undefined,
      schema: "actionq",
      listen: { host: "127.0.0.1", port: 50051 },
      dataDir: "./.actionq",
      maxChainDepth: 3,
      rateLimitPerHour: 20,
      leaseMs: 300_000,
      ackTimeoutMs: 10_000,
      poolSize: 9,
      logLevel: "info",
    });
  });

  it("refuses a schema name that is not a plain identifier, naming the variable", () => {
    for (const bad of ["1abc", "a-b", "a;drop table x", 'a"b', "a b", "x".repeat(49)]) {
      expect(() => loadConfig({ ACTIONQ_SCHEMA: bad })).toThrow(/ACTIONQ_SCHEMA/);
    }
    expect(loadConfig({ ACTIONQ_SCHEMA: "Queue_2" }).schema).toBe("Queue_2");
  });

  it("takes a postgres URL or none for the LISTEN connection, and a sub-second fallback poll by default", () => {
    expect(loadConfig({}).listenUrl).toBeUndefined();
    expect(loadConfig({}).fallbackPollMs).toBe(250);
    expect(loadConfig({ ACTIONQ_LISTEN_URL: "none" }).listenUrl).toBe("none");
    expect(loadConfig({ ACTIONQ_LISTEN_URL: "postgresql://pg-primary:5432/q" }).listenUrl).toBe("postgresql://pg-primary:5432/q");
    expect(() => loadConfig({ ACTIONQ_LISTEN_URL: "pgbouncer:6432" })).toThrow(
      /ACTIONQ_LISTEN_URL="pgbouncer:6432": must be a postgres:\/\/ or postgresql:\/\/ URL, or none/,
    );
    expect(() => loadConfig({ ACTIONQ_FALLBACK_POLL_SECONDS: "0" })).toThrow(/ACTIONQ_FALLBACK_POLL_SECONDS="0": must be a number of seconds from 0.01 to 60/);
  });

  it("names every bad variable at once", () => {
    let error: unknown;
    try {
      loadConfig({ ACTIONQ_LISTEN: "nonsense", ACTIONQ_POOL_SIZE: "0", ACTIONQ_LOG_LEVEL: "loud", ACTIONQ_URL: "mysql://x" });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join("\n");
    for (const name of ["ACTIONQ_LISTEN", "ACTIONQ_POOL_SIZE", "ACTIONQ_LOG_LEVEL", "ACTIONQ_URL"]) expect(problems).toContain(name);
  });

  it("parses IPv6 listen addresses and fractional seconds", () => {
    const config = loadConfig({ ACTIONQ_LISTEN: "[::1]:0", ACTIONQ_ACK_TIMEOUT_SECONDS: "0.25" });
    expect(config.listen).toEqual({ host: "::1", port: 0 });
    expect(config.ackTimeoutMs).toBe(250);
  });

  it("documents every variable with its default in docs/operations.md and in --help", () => {
    const readme = readFileSync(path.resolve(import.meta.dirname, "..", "docs", "operations.md"), "utf8");
    const help = describeSettings();
    for (const setting of SETTINGS) {
      const fallback = setting.fallback === undefined ? "(unset)" : `\`${setting.fallback}\``;
      expect(readme, `docs/operations.md row for ${setting.env}`).toContain(`| \`${setting.env}\` | ${fallback} |`);
      expect(help).toContain(setting.env);
    }
  });

  it("declares each variable once", () => {
    const names = SETTINGS.map((setting) => setting.env);
    expect(names.filter((name, index) => names.indexOf(name) !== index)).toEqual([]);
  });

  it("every documented default parses, so the defaults alone start a server", () => {
    for (const setting of SETTINGS) {
      if (setting.fallback === undefined) continue;
      expect(() => loadConfig({ [setting.env]: setting.fallback }), setting.env).not.toThrow();
    }
  });

  it("parses each kind of value into its typed field", () => {
    const config = loadConfig({
      ACTIONQ_CONSOLE: "off",
      ACTIONQ_CORS_ORIGINS: " https://ops.example.com, *,",
      ACTIONQ_METRICS_LISTEN: "0.0.0.0:9464",
      ACTIONQ_RETENTION_SECONDS: "3600",
      ACTIONQ_MAX_PAYLOAD_BYTES: "1024",
      ACTIONQ_TLS_CERT: "/etc/actionq/cert.pem",
      ACTIONQ_TLS_KEY: "/etc/actionq/key.pem",
    });
    expect(config).toMatchObject({
      console: false,
      corsOrigins: ["https://ops.example.com", "*"],
      metricsListen: { host: "0.0.0.0", port: 9464 },
      retentionMs: 3_600_000,
      limits: { payloadBytes: 1024, textLength: 4096 },
      tls: { cert: "/etc/actionq/cert.pem", key: "/etc/actionq/key.pem", clientCa: undefined },
    });
    expect(loadConfig({}).console).toBe(true);
    expect(loadConfig({}).corsOrigins).toEqual([]);
    expect(loadConfig({}).tls).toBeUndefined();
  });

  it("counts an empty variable as unset", () => {
    expect(loadConfig({ ACTIONQ_SCHEMA: "", ACTIONQ_RETENTION_SECONDS: "" })).toMatchObject({ schema: "actionq", retentionMs: undefined });
  });

  it("says what a bad value must be, one line per variable, naming it and its value", () => {
    const problemsOf = (env: Record<string, string>) => {
      try {
        loadConfig(env);
      } catch (error) {
        return (error as ConfigError).problems;
      }
      throw new Error("expected a ConfigError");
    };
    expect(problemsOf({ ACTIONQ_POOL_SIZE: "many" })).toEqual(['ACTIONQ_POOL_SIZE="many": must be a whole number from 2 to 1000']);
    expect(problemsOf({ ACTIONQ_POOL_SIZE: "1.5" })).toEqual(['ACTIONQ_POOL_SIZE="1.5": must be a whole number from 2 to 1000']);
    expect(problemsOf({ ACTIONQ_LEASE_SECONDS: "0" })).toEqual(['ACTIONQ_LEASE_SECONDS="0": must be a number of seconds from 1 to 86400']);
    expect(problemsOf({ ACTIONQ_CONSOLE: "yes" })).toEqual(['ACTIONQ_CONSOLE="yes": must be one of on, off']);
    expect(problemsOf({ ACTIONQ_LOG_LEVEL: "loud" })).toEqual(['ACTIONQ_LOG_LEVEL="loud": must be one of fatal, error, warn, info, debug, trace, silent']);
    expect(problemsOf({ ACTIONQ_LISTEN: "127.0.0.1:70000" })).toEqual(['ACTIONQ_LISTEN="127.0.0.1:70000": port must be at most 65535']);
    expect(problemsOf({ ACTIONQ_CORS_ORIGINS: "https://ok.example.com,ftp://x" })).toEqual([
      'ACTIONQ_CORS_ORIGINS="https://ok.example.com,ftp://x": must be * or origins such as https://ops.example.com, comma-separated',
    ]);
  });

  it("refuses TLS settings that do not make one whole TLS setup", () => {
    expect(() => loadConfig({ ACTIONQ_TLS_CERT: "/c.pem" })).toThrow("ACTIONQ_TLS_CERT and ACTIONQ_TLS_KEY: set both or neither");
    expect(() => loadConfig({ ACTIONQ_TLS_KEY: "/k.pem" })).toThrow("ACTIONQ_TLS_CERT and ACTIONQ_TLS_KEY: set both or neither");
    expect(() => loadConfig({ ACTIONQ_TLS_CLIENT_CA: "/ca.pem" })).toThrow("ACTIONQ_TLS_CLIENT_CA: needs ACTIONQ_TLS_CERT and ACTIONQ_TLS_KEY");
    expect(loadConfig({ ACTIONQ_TLS_CERT: "/c.pem", ACTIONQ_TLS_KEY: "/k.pem", ACTIONQ_TLS_CLIENT_CA: "/ca.pem" }).tls).toEqual({
      cert: "/c.pem",
      key: "/k.pem",
      clientCa: "/ca.pem",
    });
  });

  it("refuses a default lease longer than the longest allowed, and a first retry longer than the longest wait", () => {
    expect(() => loadConfig({ ACTIONQ_MAX_LEASE_SECONDS: "60" })).toThrow(
      'ACTIONQ_LEASE_SECONDS (default 300): the default lease must not be longer than ACTIONQ_MAX_LEASE_SECONDS="60", the longest a worker may ask for',
    );
    expect(() => loadConfig({ ACTIONQ_RETRY_BACKOFF_SECONDS: "7200" })).toThrow(
      'ACTIONQ_RETRY_BACKOFF_SECONDS="7200": the first retry\'s wait must not be longer than ACTIONQ_RETRY_BACKOFF_MAX_SECONDS (default 3600), the longest wait',
    );
    expect(loadConfig({ ACTIONQ_MAX_LEASE_SECONDS: "60", ACTIONQ_LEASE_SECONDS: "60" })).toMatchObject({ leaseMs: 60_000, maxLeaseMs: 60_000 });
  });

  it("checks across variables only once each is valid on its own", () => {
    let error: unknown;
    try {
      loadConfig({ ACTIONQ_TLS_CERT: "/c.pem", ACTIONQ_POOL_SIZE: "0" });
    } catch (caught) {
      error = caught;
    }
    expect((error as ConfigError).problems).toEqual(['ACTIONQ_POOL_SIZE="0": must be a whole number from 2 to 1000']);
  });
});
