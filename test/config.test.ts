// The settings module: every variable validated with a message naming it,
// and the README's table kept true to the code.
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

  it("documents every variable with its default in the README and in --help", () => {
    const readme = readFileSync(path.resolve(import.meta.dirname, "..", "README.md"), "utf8");
    const help = describeSettings();
    for (const [name, setting] of Object.entries(SETTINGS)) {
      const fallback = setting.fallback === undefined ? "(unset)" : `\`${setting.fallback}\``;
      expect(readme, `README row for ${name}`).toContain(`| \`${name}\` | ${fallback} |`);
      expect(help).toContain(name);
    }
  });
});
