// HTTP/1.1 keep-alive connections end when the server closes. Node's
// closeIdleConnections/closeAllConnections only know connections that a
// listening http.Server accepted, and ours arrive through the port's
// protocol router; without our own tracking a browser kept talking to a
// closed server (whose streams end at once) and never reached the server
// restarted on the same port.
import http from "node:http";
import type net from "node:net";
import { describe, expect, it } from "vitest";
import { createLogger } from "../src/log.js";
import { ActionqServer } from "../src/server.js";
import { startTestServer, testConfig } from "./support/harness.js";

/** A Connect unary call on `agent`'s kept-alive connection; resolves with its socket. */
function getCaller(address: string, agent: http.Agent): Promise<{ status: number; socket: net.Socket }> {
  const [host, port] = address.split(":");
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host, port: Number(port), method: "POST", path: "/actionq.v1.ActionQueueService/GetCaller", agent, headers: { "content-type": "application/json" } },
      (res) => {
        // Taken now: the agent detaches the socket once the body is read.
        const socket = res.socket as net.Socket;
        res.resume();
        res.on("end", () => resolve({ status: res.statusCode!, socket }));
      },
    );
    req.on("error", reject);
    req.end("{}");
  });
}

describe("HTTP/1.1 connections across a restart", () => {
  it("a kept-alive connection is closed by the server's close, and the next call reaches the server restarted on the same port", async () => {
    // A long shutdown grace, so that the forced cut at its end cannot be
    // what closes the connection below.
    const t = await startTestServer({ ACTIONQ_SHUTDOWN_GRACE_SECONDS: "60" });
    const port = t.address.slice(t.address.lastIndexOf(":") + 1);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let successor: ActionqServer | undefined;
    try {
      const first = await getCaller(t.address, agent);
      expect(first.status).toBe(200);
      const closed = new Promise<void>((resolve) => first.socket.once("close", () => resolve()));
      // By the close, not when Node's keep-alive timeout (5 s from the
      // answer just read) would end it: a busy client's connection never
      // idles that long. The bound leaves a loaded machine room and stays
      // under those 5 s.
      const closing = Date.now();
      const serverClosed = t.server.close();
      await closed;
      expect(Date.now() - closing).toBeLessThan(4_000);
      await serverClosed;
      successor = await ActionqServer.start(testConfig(t.schema, { ACTIONQ_LISTEN: `127.0.0.1:${port}` }), createLogger("silent"));
      const next = await getCaller(t.address, agent);
      expect(next.status).toBe(200);
      expect(next.socket).not.toBe(first.socket);
    } finally {
      agent.destroy();
      await successor?.close();
      await t.close();
    }
  });
});
