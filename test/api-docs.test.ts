// docs/api.md cannot drift: it must be exactly what scripts/gen-api-docs.mjs
// makes from the proto comments and docs/api-examples.json, and every curl
// example in it is run, in order, by bash against a real server, and must
// answer as the page says.
import { execFile, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, startTestServer } from "./support/harness.js";

const execFileAsync = promisify(execFile);
const root = path.resolve(import.meta.dirname, "..");
const docPath = path.join(root, "docs", "api.md");
const generator = path.join(root, "scripts", "gen-api-docs.mjs");

interface Examples {
  address: string;
  finalState: { action: string; status: string; attempt: number }[];
}
const examples = JSON.parse(readFileSync(path.join(root, "docs", "api-examples.json"), "utf8")) as Examples;

/** A fenced block the page marks to be run: `<!-- run: setup -->` or
 * `<!-- run: step N, expect HTTP S -->` right above it. */
interface RunBlock {
  name: string;
  step: number | undefined;
  expectStatus: number | undefined;
  code: string;
}

function runBlocks(markdown: string): RunBlock[] {
  const blocks: RunBlock[] = [];
  for (const match of markdown.matchAll(/<!-- run: ([^>]*?) -->\n```sh\n([\s\S]*?)\n```/g)) {
    const marker = match[1]!;
    const code = match[2]!;
    if (marker === "setup") {
      blocks.push({ name: "setup", step: undefined, expectStatus: undefined, code });
      continue;
    }
    const parsed = /^step (\d+), expect HTTP (\d{3})$/.exec(marker);
    if (!parsed) throw new Error(`unreadable run marker ${JSON.stringify(marker)}`);
    blocks.push({ name: `step${parsed[1]}`, step: Number(parsed[1]), expectStatus: Number(parsed[2]), code });
  }
  return blocks;
}

/** Every ```sh block on the page that calls curl (grpcurl is not curl). */
function curlBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/```sh\n([\s\S]*?)\n```/g)].map((m) => m[1]!).filter((code) => /(^|[^\w-])curl\s/m.test(code));
}

interface Frame {
  flags: number;
  json: unknown;
}

/** Connect stream frames: a flags byte, a big-endian length, the message. */
function connectFrames(body: Buffer): Frame[] {
  const frames: Frame[] = [];
  let offset = 0;
  while (offset < body.length) {
    if (body.length - offset < 5) throw new Error(`a truncated frame header at byte ${offset}`);
    const flags = body.readUInt8(offset);
    const length = body.readUInt32BE(offset + 1);
    const end = offset + 5 + length;
    if (end > body.length) throw new Error(`a truncated frame at byte ${offset}`);
    frames.push({ flags, json: JSON.parse(body.subarray(offset + 5, end).toString("utf8")) });
    offset = end;
  }
  return frames;
}

function runBash(script: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", ["-c", script], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the examples did not finish within ${timeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, timeoutMs);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("docs/api.md", () => {
  it("is exactly what scripts/gen-api-docs.mjs makes from the protos and the examples", async () => {
    const { stdout } = await execFileAsync(process.execPath, [generator, "--stdout"], { cwd: root, maxBuffer: 16 * 1024 * 1024 });
    const committed = await readFile(docPath, "utf8");
    // A plain equality would print two 1600-line strings; name the first difference.
    if (stdout !== committed) {
      const fresh = stdout.split("\n");
      const old = committed.split("\n");
      const line = fresh.findIndex((text, i) => text !== old[i]);
      throw new Error(`docs/api.md is stale (run npm run docs); first difference at line ${line + 1}:\n- ${old[line]}\n+ ${fresh[line]}`);
    }
  });

  it("marks every curl example to be run, numbered in order", async () => {
    const markdown = await readFile(docPath, "utf8");
    const blocks = runBlocks(markdown);
    const steps = blocks.filter((b) => b.step !== undefined);
    // Every block with curl in it is a run block, and nothing else is.
    expect(curlBlocks(markdown)).toEqual(steps.map((b) => b.code));
    expect(steps.map((b) => b.step)).toEqual(steps.map((_, i) => i + 1));
    expect(blocks[0]!.name).toBe("setup");
    expect(steps.length).toBeGreaterThanOrEqual(22);
  });
});

describe("the curl examples in docs/api.md, run in order against a fresh server", () => {
  let t: TestServer;
  let work: string;
  let blocks: RunBlock[];
  let run: { code: number | null; stdout: string; stderr: string };
  let variables: Map<string, string>;

  beforeAll(async () => {
    for (const tool of ["bash", "curl", "jq", "perl"]) {
      const found = await execFileAsync("bash", ["-c", `command -v ${tool}`]).catch(() => undefined);
      if (!found) throw new Error(`the API examples need ${tool}, which is not installed`);
    }
    t = await startTestServer();
    work = await mkdtemp(path.join(tmpdir(), "actionq-api-docs-"));
    const markdown = await readFile(docPath, "utf8");
    blocks = runBlocks(markdown);
    const names = examples.finalState.map((row) => row.action);
    // Each block runs in the same shell, so variables carry from one to the
    // next, as they do for a reader. `curl` is wrapped to keep each answer's
    // headers and body; the page's address becomes the test server's.
    const script = [
      "set -euo pipefail",
      `WORK=${JSON.stringify(work)}`,
      'curl() { echo "$BLOCK" >> "$WORK/calls"; command curl -D "$WORK/$BLOCK.headers" "$@" | tee "$WORK/$BLOCK.body"; }',
      ...blocks.flatMap((block) => [`BLOCK=${block.name}`, `echo "=== $BLOCK"`, block.code.replaceAll(examples.address, t.address), `: > "$WORK/$BLOCK.done"`]),
      `printf '%s=%s\\n' ${names.map((name) => `${name} "$${name}"`).join(" ")} > "$WORK/variables"`,
    ].join("\n");
    await writeFile(path.join(work, "examples.sh"), script);
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: work, LC_ALL: "C.UTF-8", no_proxy: "*", NO_PROXY: "*" };
    run = await runBash(script, env, 90_000);
    variables = new Map();
    if (existsSync(path.join(work, "variables"))) {
      for (const line of (await readFile(path.join(work, "variables"), "utf8")).trim().split("\n")) {
        const at = line.indexOf("=");
        variables.set(line.slice(0, at), line.slice(at + 1));
      }
    }
  }, 120_000);

  afterAll(async () => {
    await t?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("runs every block to the end, each with exactly one curl call", async () => {
    const failed = blocks.find((block) => !existsSync(path.join(work, `${block.name}.done`)));
    if (failed || run.code !== 0) {
      throw new Error(
        `the examples stopped at ${failed?.name ?? "the end"} (bash exit ${run.code})\n--- stdout (tail)\n${run.stdout.slice(-3000)}\n--- stderr\n${run.stderr.slice(-3000)}`,
      );
    }
    const calls = (await readFile(path.join(work, "calls"), "utf8")).trim().split("\n");
    expect(calls).toEqual(blocks.filter((b) => b.step !== undefined).map((b) => b.name));
  });

  it("gets the documented HTTP status over HTTP/1.1 and a JSON body from every example", async () => {
    for (const block of blocks) {
      if (block.step === undefined) continue;
      const headers = await readFile(path.join(work, `${block.name}.headers`), "utf8");
      const body = await readFile(path.join(work, `${block.name}.body`));
      const statusLine = headers.split("\r\n")[0];
      expect(statusLine, block.name).toMatch(new RegExp(`^HTTP/1\\.1 ${block.expectStatus} `));
      const contentType = /^content-type: *(.*)$/im.exec(headers)?.[1]?.trim();
      if (contentType === "application/connect+json") {
        const frames = connectFrames(body);
        expect(frames.length, `${block.name}: a message and the end of the stream`).toBeGreaterThanOrEqual(2);
        const last = frames.at(-1)!;
        expect(last.flags & 2, `${block.name}: ends with an end-of-stream frame`).toBe(2);
        expect(last.json, `${block.name}: the stream ended cleanly`).toEqual({});
        for (const frame of frames.slice(0, -1)) expect(frame.flags, block.name).toBe(0);
      } else {
        expect(contentType, block.name).toBe("application/json");
        const json: unknown = JSON.parse(body.toString("utf8"));
        expect(typeof json, block.name).toBe("object");
        if (block.expectStatus !== 200) {
          const error = json as { code: string; details: { type: string; debug: { reason: string } }[] };
          expect(error.code, block.name).toBe("not_found");
          expect(error.details[0]?.type, block.name).toBe("google.rpc.ErrorInfo");
          expect(error.details[0]?.debug.reason, block.name).toBe("ACTION_NOT_FOUND");
        }
      }
    }
  });

  it("streams what the page says they stream", async () => {
    const messages = async (name: string) =>
      connectFrames(await readFile(path.join(work, `${name}.body`)))
        .slice(0, -1)
        .map((f) => f.json as Record<string, unknown>);
    const streamBlocks = blocks.filter((b) => b.step !== undefined && b.code.includes("connect_frame"));
    expect(streamBlocks.length).toBe(3);
    const [claims, events, health] = await Promise.all(streamBlocks.map((b) => messages(b.name)));
    // StreamClaims: a heartbeat first, then the diagnostics claim.
    expect(claims![0]).toHaveProperty("heartbeat");
    const claim = claims!.find((m) => "claim" in m) as { claim: { action: { id: string; attempt: number } } } | undefined;
    expect(claim?.claim.action.id).toBe(variables.get("DIAG_ID"));
    expect(claim?.claim.action.attempt).toBe(1);
    // WatchEvents: the diagnostics action's history up to the release.
    const types = events!.map((m) => (m.event as { eventType: string } | undefined)?.eventType).filter(Boolean);
    expect(types).toEqual(["action_enqueued", "action_approved", "action_claimed", "claim_released"]);
    expect(health).toEqual([{ status: "SERVING" }]);
  });

  it("leaves every action where the page says the sequence ends", async () => {
    const ids: string[] = [];
    for (const row of examples.finalState) {
      const id = variables.get(row.action);
      expect(id, row.action).toMatch(/^\d+$/);
      ids.push(id!);
      const { action } = await t.grpc.unary<{ action: { status: string; attempt: number } }>("GetAction", { id });
      expect({ action: row.action, status: action.status, attempt: action.attempt }).toEqual({ action: row.action, status: row.status, attempt: row.attempt });
    }
    // ...and there is no other action.
    const { rows } = await t.db.query<{ id: string }>("SELECT id::text FROM actions ORDER BY id");
    expect(rows.map((r) => r.id).sort()).toEqual([...ids].sort());
  });
});
