// Summarizes a V8 CPU profile of the server (node --cpu-prof, e.g. through
// BENCH_ACTIONQ_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR") by component:
// where the server's CPU went, as a share of the samples and, given how many
// actions the profiled window handled, in ms per action.
//
//   node dist/bench/profile.js PROFILE.cpuprofile [--actions N] [--top 25]
//
// A component is where a function's code lives: actionq's own folders
// (src/api, src/store, ...), each dependency (pg, pino, @bufbuild/protobuf,
// @connectrpc/connect-node, ...), Node's internals by area (http2, net,
// streams, timers), the garbage collector, and time with no JavaScript on
// the stack ("(idle)" is left out of the totals).
import { readFileSync } from "node:fs";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Which component a frame belongs to. */
export function componentOf(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (url === "") {
    if (functionName === "(garbage collector)") return "gc";
    if (functionName === "(idle)" || functionName === "(program)" || functionName === "(root)") return functionName;
    return "native";
  }
  const modules = url.lastIndexOf("/node_modules/");
  if (modules >= 0) {
    const rest = url.slice(modules + "/node_modules/".length).split("/");
    return rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (url.startsWith("node:")) {
    const name = url.slice("node:".length);
    if (name.includes("http2")) return "node:http2";
    if (name.includes("stream")) return "node:streams";
    if (name.includes("timers")) return "node:timers";
    if (name.startsWith("internal/async_hooks") || name.startsWith("internal/process/task_queues")) return "node:async";
    if (name.includes("net") || name.includes("tcp")) return "node:net";
    return "node:other";
  }
  const src = url.indexOf("/dist/src/");
  if (src >= 0) {
    const parts = url.slice(src + "/dist/src/".length).split("/");
    return parts.length > 1 ? `actionq:${parts[0]}` : `actionq:${parts[0]!.replace(/\.js$/, "")}`;
  }
  const gen = url.indexOf("/dist/gen/");
  if (gen >= 0) return "actionq:gen";
  return "other";
}

export interface Summary {
  totalMs: number;
  byComponent: { component: string; ms: number }[];
  byFunction: { name: string; component: string; ms: number }[];
}

/** Self time per component and per function, idle excluded. */
export function summarize(profile: Profile): Summary {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, index) => {
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0) / 1000);
  });
  const byComponent = new Map<string, number>();
  const byFunction = new Map<string, { name: string; component: string; ms: number }>();
  let totalMs = 0;
  for (const [id, ms] of self) {
    const frame = nodes.get(id)!.callFrame;
    const component = componentOf(frame);
    if (component === "(idle)") continue;
    totalMs += ms;
    byComponent.set(component, (byComponent.get(component) ?? 0) + ms);
    const file = frame.url.split("/").slice(-2).join("/");
    const key = `${frame.functionName || "(anonymous)"} ${file}:${frame.lineNumber + 1}`;
    const entry = byFunction.get(key) ?? { name: key, component, ms: 0 };
    entry.ms += ms;
    byFunction.set(key, entry);
  }
  return {
    totalMs,
    byComponent: [...byComponent].map(([component, ms]) => ({ component, ms })).sort((a, b) => b.ms - a.ms),
    byFunction: [...byFunction.values()].sort((a, b) => b.ms - a.ms),
  };
}

function main(): void {
  const args = process.argv.slice(2);
  const file = args.find((arg) => !arg.startsWith("--"));
  if (!file) {
    process.stderr.write("usage: node dist/bench/profile.js PROFILE.cpuprofile [--actions N] [--top N]\n");
    process.exit(2);
  }
  const option = (name: string) => {
    const index = args.indexOf(name);
    return index >= 0 ? Number(args[index + 1]) : undefined;
  };
  const actions = option("--actions");
  const top = option("--top") ?? 25;
  const summary = summarize(JSON.parse(readFileSync(file, "utf8")) as Profile);
  const perAction = (ms: number) => (actions ? (ms / actions).toFixed(3) : "–");
  const share = (ms: number) => `${((100 * ms) / summary.totalMs).toFixed(1)}%`;
  const lines = [
    `CPU profile ${file}: ${summary.totalMs.toFixed(0)} ms busy${actions ? `, ${actions} actions` : ""}`,
    "",
    "| component | ms | share | ms per action |",
    "|---|--:|--:|--:|",
    ...summary.byComponent.map((row) => `| ${row.component} | ${row.ms.toFixed(0)} | ${share(row.ms)} | ${perAction(row.ms)} |`),
    "",
    `| top ${top} functions (self time) | component | ms | share |`,
    "|---|---|--:|--:|",
    ...summary.byFunction.slice(0, top).map((row) => `| \`${row.name}\` | ${row.component} | ${row.ms.toFixed(0)} | ${share(row.ms)} |`),
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}

if (process.argv[1]?.endsWith("profile.js")) main();
