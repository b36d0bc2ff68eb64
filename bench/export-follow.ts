// How soon `actionctl export --follow` moves a document after a transition:
// an `actionq serve` process, the built actionctl following into a temporary
// directory, and actions proposed then approved one after another. Measures
// from the start of the call to the moment the document is in its new
// directory, for each kind of move: proposed -> pending/, approved ->
// approved/. Prints a Markdown table, then the same as one JSON line.
//
//   npm run build && npx tsc -p tsconfig.bench.json && node dist/bench/export-follow.js [--url postgres://...] [--actions 50]
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import pg from "pg";
import { RiskLevel } from "../gen/actionq/v1/action_pb.js";
import { ActionqServerProcess, connect, packageRoot } from "./lib/actionq-server.js";
import { latencySummary } from "./lib/stats.js";

const WARMUP = 5;

/** Polls every millisecond: the resolution of the figures. */
async function appears(file: string, timeoutMs = 10_000): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  while (!existsSync(file)) {
    if (performance.now() > deadline) throw new Error(`${file} did not appear within ${timeoutMs} ms`);
    await sleep(1);
  }
  return performance.now();
}

function follow(root: string, address: string): { child: ChildProcess; stderr: () => string } {
  const cli = path.join(packageRoot(), "dist", "src", "cli", "actionctl.js");
  const child = spawn(process.execPath, [cli, "export", "--to-dir", root, "--follow", "-o", "jsonl"], {
    env: { ...process.env, ACTIONQ_ADDR: address },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  return { child, stderr: () => stderr };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { url: { type: "string" }, actions: { type: "string" } } });
  const url = values.url ?? process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
  const count = Number(values.actions ?? "50");
  const schema = `bench_export_${randomBytes(3).toString("hex")}`;
  const root = await mkdtemp(path.join(os.tmpdir(), "actionq-export-bench-"));
  const server = await ActionqServerProcess.start(url, schema);
  const follower = follow(root, server.address);
  const samples = { pending: [] as number[], approved: [] as number[] };
  try {
    const client = connect(server.address);
    for (const deadline = performance.now() + 30_000; !follower.stderr().includes("exported"); await sleep(20)) {
      if (performance.now() > deadline) throw new Error(`the follower did not start: ${follower.stderr()}`);
    }
    for (let i = 0; i < WARMUP + count; i++) {
      const proposedAt = performance.now();
      const { action } = await client.enqueueAction({
        actionType: "bench_export",
        // Producers are rate limited for GUARDED proposals; one each stays clear of it.
        createdBy: `agent:bench-${i}`,
        approvalRequired: true,
        riskLevel: RiskLevel.GUARDED,
        payload: { i },
      });
      const name = `${action!.externalId}.json`;
      const pendingAt = await appears(path.join(root, "pending", name));
      const approvingAt = performance.now();
      await client.approveAction({ id: action!.id, approver: "human:bench" });
      const approvedAt = await appears(path.join(root, "approved", name));
      if (i >= WARMUP) {
        samples.pending.push(pendingAt - proposedAt);
        samples.approved.push(approvedAt - approvingAt);
      }
    }
  } finally {
    follower.child.kill("SIGTERM");
    await server.stop();
    await rm(root, { recursive: true, force: true });
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await db.end();
  }
  const rows = [
    { move: "proposed -> pending/", ...latencySummary(samples.pending) },
    { move: "approved -> approved/", ...latencySummary(samples.approved) },
  ];
  const fmt = (value: number | null) => (value === null ? "-" : value.toFixed(1));
  process.stdout.write(
    `${[
      "| export --follow | p50 ms | p99 ms | max ms | moves |",
      "|---|---|---|---|---|",
      ...rows.map((r) => `| ${r.move} | ${fmt(r.p50_ms)} | ${fmt(r.p99_ms)} | ${fmt(r.max_ms)} | ${r.count} |`),
    ].join("\n")}\n`,
  );
  process.stdout.write(`${JSON.stringify({ bench: "export-follow", actions: count, rows })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`export-follow bench failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
