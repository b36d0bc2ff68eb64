// What polling costs instead of LISTEN: two `actionq serve` processes on one
// schema, actions enqueued through the first at 20/s into an idle claim
// stream on the second, so that every claim waits for the wakeup to cross
// replicas. Measures enqueue call start -> claim received, p50/p99/max,
// once with LISTEN and once with ACTIONQ_LISTEN_URL=none at each fallback
// interval given. About 12 s per mode.
//
//   npm run build && npx tsc -p tsconfig.bench.json && node dist/bench/wakeups.js [--url postgres://...] [--intervals 0.25,0.1]
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import pg from "pg";
import { Counter, StreamWorker, enqueueRequest } from "./lib/actionq-load.js";
import { ActionqServerProcess, connect } from "./lib/actionq-server.js";
import { latencySummary } from "./lib/stats.js";

const RATE_PER_SECOND = 20;
const WARMUP = RATE_PER_SECOND;
const MEASURED = 10 * RATE_PER_SECOND;

interface Result {
  mode: string;
  p50_ms: number | null;
  p99_ms: number | null;
  max_ms: number | null;
  count: number;
}

async function measure(url: string, mode: string, env: Record<string, string>): Promise<Result> {
  const schema = `bench_wakeups_${randomBytes(3).toString("hex")}`;
  // The servers read ACTIONQ_* from BENCH_ACTIONQ_* (bench/lib/actionq-server.ts).
  for (const name of Object.keys(process.env)) if (name.startsWith("BENCH_ACTIONQ_")) delete process.env[name];
  for (const [name, value] of Object.entries(env)) process.env[`BENCH_${name}`] = value;
  const producerSide = await ActionqServerProcess.start(url, schema);
  const workerSide = await ActionqServerProcess.start(url, schema);
  const sentAt = new Map<number, number>();
  const samples: number[] = [];
  const received = new Counter();
  const completed = new Counter();
  const worker = new StreamWorker(
    workerSide.address,
    {
      name: "worker:bench-wakeups",
      maxInFlight: 4,
      onClaim: (claim, receivedAt) => {
        const seq = Number((claim.action!.payload as { seq?: number }).seq);
        const start = sentAt.get(seq);
        if (start !== undefined && seq >= WARMUP) samples.push(receivedAt - start);
        received.add();
      },
    },
    completed,
  ).start();
  const producer = connect(producerSide.address);
  try {
    await sleep(1000);
    const count = WARMUP + MEASURED;
    const t0 = performance.now();
    for (let seq = 0; seq < count; seq++) {
      const wait = t0 + (seq * 1000) / RATE_PER_SECOND - performance.now();
      if (wait > 0) await sleep(wait);
      sentAt.set(seq, performance.now());
      await producer.enqueueAction(enqueueRequest(seq, { seq }));
    }
    await received.reach(count, 30_000);
    await completed.reach(count, 30_000);
  } finally {
    await worker.close();
    await workerSide.stop();
    await producerSide.stop();
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await db.end();
  }
  return { mode, ...latencySummary(samples) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { url: { type: "string" }, intervals: { type: "string" } } });
  const url = values.url ?? process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
  const intervals = (values.intervals ?? "0.25").split(",");
  const results = [await measure(url, "listen", {})];
  for (const interval of intervals) {
    results.push(await measure(url, `poll ${interval} s`, { ACTIONQ_LISTEN_URL: "none", ACTIONQ_FALLBACK_POLL_SECONDS: interval }));
  }
  const fmt = (value: number | null) => (value === null ? "-" : value.toFixed(1));
  process.stdout.write(
    `${["| wakeups | p50 ms | p99 ms | max ms | claims |", "|---|---|---|---|---|", ...results.map((r) => `| ${r.mode} | ${fmt(r.p50_ms)} | ${fmt(r.p99_ms)} | ${fmt(r.max_ms)} | ${r.count} |`)].join("\n")}\n`,
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`wakeups bench failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
