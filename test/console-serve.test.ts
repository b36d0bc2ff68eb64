// The web console as files on the API port: plain GETs over HTTP/1.1 and
// HTTP/2, cleartext and TLS, with the right content types, precompressed
// bodies, caching of hashed assets, the fallback to the app for its own
// routes, and the headers that keep it safe. RPCs on the same port are
// untouched, and ACTIONQ_CONSOLE=off leaves the port to them. Runs against
// the real build in dist/web (`npm test` builds first).
import { readFileSync, readdirSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import path from "node:path";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { consoleDir } from "../src/console/serve.js";
import { type TestServer, closeWithin, startTestServer } from "./support/harness.js";
import { type TlsFixtures, createTlsFixtures } from "./support/tls-certs.js";

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One request over HTTP/1.1 (http: or https:). */
function get1(url: string, headers: Record<string, string> = {}, options: { method?: string; ca?: Buffer } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const module = url.startsWith("https:") ? https : http;
    const req = module.request(url, { method: options.method ?? "GET", headers, ca: options.ca, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    req.setTimeout(10_000, () => req.destroy(new Error("timed out")));
    req.end();
  });
}

/** One request over HTTP/2, on a session of its own. */
function get2(origin: string, pathname: string, headers: Record<string, string> = {}, ca?: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(origin, ca ? { ca } : {});
    session.on("error", reject);
    const stream = session.request({ ":method": "GET", ":path": pathname, ...headers });
    let status = 0;
    let answerHeaders: Answer["headers"] = {};
    stream.on("response", (h) => {
      status = Number(h[":status"]);
      answerHeaders = h as Answer["headers"];
    });
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => {
      session.close();
      resolve({ status, headers: answerHeaders, body: Buffer.concat(chunks) });
    });
    stream.on("error", reject);
    stream.setTimeout(10_000, () => stream.close());
  });
}

const assets = readdirSync(path.join(consoleDir, "assets"));
const script = `/assets/${assets.find((name) => name.endsWith(".js"))!}`;
const style = `/assets/${assets.find((name) => name.endsWith(".css"))!}`;
const indexHtml = readFileSync(path.join(consoleDir, "index.html"));

function expectSecurityHeaders(answer: Answer): void {
  const csp = String(answer.headers["content-security-policy"]);
  expect(csp).toContain("script-src 'self'");
  expect(csp).toContain("frame-ancestors 'none'");
  expect(csp).toContain("default-src 'none'");
  expect(csp).not.toContain("unsafe-inline");
  expect(answer.headers["x-content-type-options"]).toBe("nosniff");
  expect(answer.headers["x-frame-options"]).toBe("DENY");
}

describe("the console over cleartext", () => {
  let t: TestServer;
  let origin: string;
  beforeAll(async () => {
    t = await startTestServer();
    origin = `http://${t.address}`;
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("/ is the app's page, over HTTP/1.1 and HTTP/2, revalidated on every load, with the security headers", async () => {
    for (const answer of [await get1(`${origin}/`), await get2(origin, "/")]) {
      expect(answer.status).toBe(200);
      expect(answer.headers["content-type"]).toMatch(/^text\/html/);
      expect(answer.headers["cache-control"]).toBe("no-cache");
      expect(answer.body.equals(indexHtml)).toBe(true);
      expectSecurityHeaders(answer);
    }
  });

  it("the page loads no script inline, only the hashed bundle from this origin", () => {
    const html = indexHtml.toString("utf8");
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).toContain(`src="${script}"`);
  });

  it("hashed assets are cached for good, typed, and sent precompressed when the client accepts it", async () => {
    const plain = await get1(`${origin}${script}`);
    expect(plain.status).toBe(200);
    expect(plain.headers["content-type"]).toMatch(/^(text|application)\/javascript/);
    expect(plain.headers["cache-control"]).toBe("public, max-age=31536000, immutable");
    expect(plain.headers["content-encoding"]).toBeUndefined();
    expectSecurityHeaders(plain);

    const br = await get2(origin, script, { "accept-encoding": "gzip, br" });
    expect(br.headers["content-encoding"]).toBe("br");
    expect(br.headers.vary).toMatch(/accept-encoding/i);
    expect(brotliDecompressSync(br.body).equals(plain.body)).toBe(true);
    expect(br.body.length).toBeLessThan(plain.body.length / 2);

    const gzip = await get1(`${origin}${script}`, { "accept-encoding": "gzip" });
    expect(gzip.headers["content-encoding"]).toBe("gzip");
    expect(gunzipSync(gzip.body).equals(plain.body)).toBe(true);

    const css = await get1(`${origin}${style}`);
    expect(css.headers["content-type"]).toMatch(/^text\/css/);
  });

  it("an ETag answers a repeat visit with 304", async () => {
    const first = await get1(`${origin}${script}`);
    const again = await get1(`${origin}${script}`, { "if-none-match": String(first.headers.etag) });
    expect(again.status).toBe(304);
    expect(again.body.length).toBe(0);
  });

  it("the app's own routes fall back to the page; a missing file is 404, never the page", async () => {
    for (const route of ["/inbox", "/actions/42", "/events?after=10", "/schedules", "/schedules/nightly-diag"]) {
      const answer = await get1(`${origin}${route}`);
      expect(answer.status, route).toBe(200);
      expect(answer.body.equals(indexHtml), route).toBe(true);
    }
    for (const missing of ["/assets/index-00000000.js", "/favicon.ico", "/robots.txt", "/metrics", "/admin/", "/actions/1/2"]) {
      const answer = await get1(`${origin}${missing}`);
      expect(answer.status, missing).toBe(404);
      expect(answer.headers["content-type"], missing).toMatch(/^text\/plain/);
    }
  });

  it("HEAD answers like GET without a body", async () => {
    const answer = await get1(`${origin}/`, {}, { method: "HEAD" });
    expect(answer.status).toBe(200);
    expect(answer.headers["content-type"]).toMatch(/^text\/html/);
    expect(answer.body.length).toBe(0);
  });

  it("RPCs on the same port are untouched: a Connect GET, a Connect POST, and an unknown RPC path", async () => {
    const getPolicy = await get1(`${origin}/actionq.v1.ActionQueueService/GetPolicy?encoding=json&message=%7B%7D`);
    expect(getPolicy.status).toBe(200);
    expect(JSON.parse(getPolicy.body.toString())).toHaveProperty("policyVersion");
    expect(getPolicy.headers["content-security-policy"]).toBeUndefined();
    const unknown = await get1(`${origin}/actionq.v1.ActionQueueService/NoSuchMethod`);
    expect(unknown.status).toBe(404);
    expect(unknown.headers["content-type"] ?? "").not.toMatch(/html/);
    expect((await t.client.getQueueStats({})).claimable).toBe(0n);
  });
});

describe("the console over TLS", () => {
  let t: TestServer;
  let tls: TlsFixtures;
  let ca: Buffer;
  beforeAll(async () => {
    tls = await createTlsFixtures();
    ca = readFileSync(tls.ca.certPath);
    t = await startTestServer({ ACTIONQ_TLS_CERT: tls.server.certPath, ACTIONQ_TLS_KEY: tls.server.keyPath });
  });
  afterAll(async () => {
    await closeWithin(t);
    await tls?.remove();
  });

  it("serves the page over HTTPS with HTTP/1.1 and HTTP/2", async () => {
    const origin = `https://127.0.0.1:${t.server.port}`;
    for (const answer of [await get1(`${origin}/`, {}, { ca }), await get2(origin, "/actions/7", {}, ca)]) {
      expect(answer.status).toBe(200);
      expect(answer.body.equals(indexHtml)).toBe(true);
      expectSecurityHeaders(answer);
    }
  });
});

describe("ACTIONQ_CONSOLE=off", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ ACTIONQ_CONSOLE: "off" });
  });
  afterAll(async () => {
    await closeWithin(t);
  });

  it("leaves the port to RPCs: / and the assets are 404", async () => {
    const origin = `http://${t.address}`;
    expect((await get1(`${origin}/`)).status).toBe(404);
    expect((await get1(`${origin}${script}`)).status).toBe(404);
    expect((await get2(origin, "/inbox")).status).toBe(404);
    expect((await t.client.getQueueStats({})).claimable).toBe(0n);
  });
});

describe("a console file removed under a running server", () => {
  it("cuts that answer and goes on serving, instead of ending the process", async () => {
    const { cp, mkdtemp, rm, readdir } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const { consoleHandler } = await import("../src/console/serve.js");
    const dir = await mkdtemp(path.join(tmpdir(), "actionq-console-copy-"));
    const errors: string[] = [];
    const server = http.createServer();
    try {
      await cp(consoleDir, dir, { recursive: true });
      const handler = consoleHandler(dir, (error) => errors.push(error.message));
      if (typeof handler !== "function") throw new Error(handler.missing);
      server.on("request", handler);
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const origin = `http://127.0.0.1:${(server.address() as import("node:net").AddressInfo).port}`;
      const gone = (await readdir(path.join(dir, "assets"))).find((name) => name.endsWith(".js"))!;
      await rm(path.join(dir, "assets", gone));
      await expect(get1(`${origin}/assets/${gone}`)).rejects.toThrow();
      expect(errors.join()).toContain("ENOENT");
      const page = await get1(`${origin}/inbox`);
      expect(page.status).toBe(200);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    }
  });
});
