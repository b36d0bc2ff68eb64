// A webhook receiver on loopback, as a user would write one: node:http,
// every request checked with the standardwebhooks library's Webhook.verify.
// Each path answers as the test says (a status, or never), and every
// request is recorded with what it was answered.
import { randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";

export interface Received {
  path: string;
  id: string;
  timestamp: string;
  body: { type: string; timestamp?: string; text?: string; data?: { event: Record<string, unknown>; action: Record<string, unknown> | null } };
  verified: boolean;
  /** What it was answered; null while the request is held open. */
  status: number | null;
  at: number;
}

export type Answer = number | "hang";

export const newSecret = () => `whsec_${randomBytes(32).toString("base64")}`;

export class Receiver {
  readonly received: Received[] = [];
  private readonly answers = new Map<string, (request: Received) => Answer>();
  private readonly held = new Set<http.ServerResponse>();

  private constructor(
    private readonly server: http.Server,
    readonly port: number,
  ) {}

  static async start(secret: string, port = 0): Promise<Receiver> {
    const verifier = new Webhook(secret);
    let receiver: Receiver | undefined;
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        const raw = Buffer.concat(chunks).toString("utf8");
        const headers = {
          "webhook-id": String(req.headers["webhook-id"] ?? ""),
          "webhook-timestamp": String(req.headers["webhook-timestamp"] ?? ""),
          "webhook-signature": String(req.headers["webhook-signature"] ?? ""),
        };
        let verified = false;
        try {
          verifier.verify(raw, headers);
          verified = true;
        } catch {
          verified = false;
        }
        let body: Received["body"];
        try {
          body = JSON.parse(raw) as Received["body"];
        } catch {
          body = { type: "(not JSON)" };
        }
        const record: Received = {
          path: req.url ?? "",
          id: headers["webhook-id"],
          timestamp: headers["webhook-timestamp"],
          body,
          verified,
          status: null,
          at: Date.now(),
        };
        receiver!.received.push(record);
        const answer = receiver!.answers.get(record.path)?.(record) ?? 204;
        if (answer === "hang") {
          receiver!.held.add(res);
          res.on("close", () => receiver!.held.delete(res));
          return;
        }
        record.status = answer;
        res.writeHead(answer).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    receiver = new Receiver(server, (server.address() as AddressInfo).port);
    return receiver;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** How `path` answers from now on. */
  answer(path: string, how: (request: Received) => Answer): void {
    this.answers.set(path, how);
  }

  /** Requests to `path` answered 2xx, in arrival order. */
  delivered(path: string): Received[] {
    return this.received.filter((r) => r.path === path && r.status !== null && r.status >= 200 && r.status < 300);
  }

  all(path: string): Received[] {
    return this.received.filter((r) => r.path === path);
  }

  /** Requests held open right now. */
  get hanging(): number {
    return this.held.size;
  }

  async close(): Promise<void> {
    for (const res of this.held) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
