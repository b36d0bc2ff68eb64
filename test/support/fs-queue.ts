// Trees in the filesystem queue layout of actionq's first design, for the
// import and export tests: a fixture with an action in every state, the
// documents such a queue gathers over the years (malformed, duplicated,
// conflicting), and a history.log in the shapes it was written in; and a
// reader of whole trees, to compare two exports byte for byte.
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readFile, readdir, rm, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

export const DIRECTORIES = ["pending", "approved", "running", "completed", "failed", "rejected"] as const;

/** Temporary directories made here, removed by removeTrees. */
const made: string[] = [];

export async function emptyTree(label = "tree"): Promise<string> {
  const root = await mkdtemp(path.join(os.tmpdir(), `actionq-fsq-${label}-`));
  made.push(root);
  return root;
}

export async function removeTrees(): Promise<void> {
  for (const root of made.splice(0)) await rm(root, { recursive: true, force: true });
}

/** A seed document (the old system's schema), with `overrides` on top. */
export function seedDocument(actionId: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    action_id: actionId,
    created_at: 1765000000.123456,
    proposed_by: "supervisor",
    correlation_id: "5b0f8a4e-0c7e-4bfa-9b53-0d5f2d0c9a11",
    node: "node-a",
    service: "nginx",
    action_type: "redeploy_service",
    risk_level: "guarded",
    confidence: 0.9,
    approval_required: true,
    autonomous_eligible: false,
    status: "pending",
    payload: { image: "nginx:1.27" },
    rollback_reference: null,
    ...overrides,
  };
}

/** The fixture's ids by what each document is. */
export interface Fixture {
  root: string;
  ids: {
    pending: string;
    dangerous: string;
    approved: string;
    running: string;
    completed: string;
    completedNoHistory: string;
    failed: string;
    rejected: string;
    cancelled: string;
    disagreeing: string;
    duplicate: string;
    conflict: string;
  };
  /** Source → the reason fragment the report must give. */
  malformed: Record<string, string>;
}

async function put(root: string, source: string, content: string): Promise<void> {
  await mkdir(path.dirname(path.join(root, source)), { recursive: true });
  await writeFile(path.join(root, source), content);
}

const json = (document: unknown) => `${JSON.stringify(document, null, 2)}\n`;

/** Every state, malformed documents, duplicates and a conflict, under fresh
 * ids (each call is a new queue, so one server can import several). */
export async function buildFixture(): Promise<Fixture> {
  const root = await emptyTree("fixture");
  const id = (name: string) => `${name}-${randomUUID()}`;
  const ids: Fixture["ids"] = {
    pending: id("pending"),
    dangerous: id("dangerous"),
    approved: id("approved"),
    running: id("running"),
    completed: id("completed"),
    completedNoHistory: id("completed-quiet"),
    failed: id("failed"),
    rejected: id("rejected"),
    cancelled: id("cancelled"),
    disagreeing: id("disagreeing"),
    duplicate: id("duplicate"),
    conflict: id("conflict"),
  };
  const t0 = 1765000000;
  await put(root, `pending/${ids.pending}.json`, json(seedDocument(ids.pending, { created_at: t0 + 0.5 })));
  await put(
    root,
    `pending/${ids.dangerous}.json`,
    json(
      seedDocument(ids.dangerous, {
        action_type: "drop_database",
        risk_level: "dangerous",
        payload: { database: "orders" },
        rollback_reference: "restore_database",
      }),
    ),
  );
  await put(root, `approved/${ids.approved}.json`, json(seedDocument(ids.approved, { status: "approved", confidence: null, correlation_id: null })));
  await put(root, `running/${ids.running}.json`, json(seedDocument(ids.running, { status: "running", node: null, service: null })));
  await put(root, `completed/${ids.completed}.json`, json(seedDocument(ids.completed, { status: "completed", action_type: "restart_service" })));
  await put(root, `completed/${ids.completedNoHistory}.json`, json(seedDocument(ids.completedNoHistory, { status: "completed", payload: null })));
  await put(root, `failed/${ids.failed}.json`, json(seedDocument(ids.failed, { status: "failed" })));
  await put(root, `rejected/${ids.rejected}.json`, json(seedDocument(ids.rejected, { status: "rejected", risk_level: "safe" })));
  await put(root, `rejected/${ids.cancelled}.json`, json(seedDocument(ids.cancelled, { status: "cancelled" })));
  // The directory decides; the status field only earns a note.
  await put(root, `approved/${ids.disagreeing}.json`, json(seedDocument(ids.disagreeing, { status: "pending" })));
  // Moved to approved/ without being removed from pending/.
  await put(root, `pending/${ids.duplicate}.json`, json(seedDocument(ids.duplicate)));
  await put(root, `approved/${ids.duplicate}.json`, json(seedDocument(ids.duplicate, { status: "approved" })));
  // Finished twice, differently: neither can be believed.
  await put(root, `completed/${ids.conflict}.json`, json(seedDocument(ids.conflict, { status: "completed" })));
  await put(root, `failed/${ids.conflict}.json`, json(seedDocument(ids.conflict, { status: "failed" })));

  const malformed: Record<string, string> = {
    "pending/bad-json.json": "not JSON",
    "pending/an-array.json": "not a JSON object (an array)",
    "pending/no-id.json": "action_id is missing",
    "approved/empty-id.json": "action_id is empty",
    "pending/extreme.json": 'risk_level is "extreme", not safe, guarded or dangerous',
    "pending/payload-text.json": 'payload is "restart it", not an object or null',
    "pending/too-sure.json": "confidence is 1.5, not a number from 0 to 1 or null",
    "failed/rollback-number.json": "rollback_reference is 7, not a string or null",
    "running/no-type.json": "action_type is missing",
    "pending/created-words.json": 'created_at is "yesterday", not epoch seconds or an ISO 8601 time',
  };
  const { action_type: _, ...noType } = seedDocument(id("no-type"));
  const { action_id: __, ...noId } = seedDocument("x");
  await put(root, "pending/bad-json.json", '{"action_id": "broken", "created_at": 1765000000,\n');
  await put(root, "pending/an-array.json", json([seedDocument(id("array"))]));
  await put(root, "pending/no-id.json", json(noId));
  await put(root, "approved/empty-id.json", json(seedDocument("")));
  await put(root, "pending/extreme.json", json(seedDocument(id("extreme"), { risk_level: "extreme" })));
  await put(root, "pending/payload-text.json", json(seedDocument(id("payload-text"), { payload: "restart it" })));
  await put(root, "pending/too-sure.json", json(seedDocument(id("too-sure"), { confidence: 1.5 })));
  await put(root, "failed/rollback-number.json", json(seedDocument(id("rollback-number"), { rollback_reference: 7 })));
  await put(root, "running/no-type.json", json(noType));
  await put(root, "pending/created-words.json", json(seedDocument(id("created-words"), { created_at: "yesterday" })));
  // Not documents: an export's file being written, and a note.
  await put(root, `pending/.${ids.pending}.json.tmp-123`, "{");
  await put(root, "pending/README.txt", "the old queue\n");

  const quietFile = path.join(root, `completed/${ids.completedNoHistory}.json`);
  await utimes(quietFile, new Date((t0 + 7200) * 1000), new Date((t0 + 7200) * 1000));

  await put(
    root,
    "history.log",
    `${[
      JSON.stringify({ timestamp: t0 + 1, action_id: ids.completed, event: "created", from: null, to: "pending" }),
      `2025-12-06T05:46:50Z approved ${ids.completed} by human:alice`,
      JSON.stringify({ time: "2025-12-06T05:47:00Z", action_id: ids.completed, event: "started", worker: "w1" }),
      JSON.stringify({ ts: t0 + 130.25, action_id: ids.completed, event: "completed", to: "completed" }),
      `${t0 + 200} ${ids.failed} running -> failed`,
      JSON.stringify({ timestamp: t0 + 201, action_id: ids.failed, to: "failed", reason: "exit status 3" }),
      JSON.stringify({ timestamp: t0 + 300, action_id: ids.rejected, to: "rejected", reason: "not during the sale" }),
      JSON.stringify({ timestamp: t0 + 310, action_id: ids.cancelled, to: "cancelled", reason: "superseded by hand" }),
      JSON.stringify({ timestamp: t0 + 20, action_id: ids.approved, to: "approved", actor: "human:bob" }),
      "a line about no action at all",
      JSON.stringify({ timestamp: t0 + 5, action_id: "someone-else", note: `mentions ${ids.pending} in passing` }),
    ].join("\n")}\n`,
  );
  return { root, ids, malformed };
}

/** Every file of a tree (dotfiles and the cursor left out), path → bytes. */
export async function readTreeFiles(root: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for (const directory of DIRECTORIES) {
    const names = await readdir(path.join(root, directory)).catch(() => [] as string[]);
    for (const name of names.filter((n) => !n.startsWith(".")).sort())
      files.set(`${directory}/${name}`, await readFile(path.join(root, directory, name), "utf8"));
  }
  files.set("history.log", await readFile(path.join(root, "history.log"), "utf8").catch(() => ""));
  return files;
}

/** Where a document of `actionId` lies now, or undefined. */
export async function whereIs(root: string, actionId: string): Promise<string | undefined> {
  for (const directory of DIRECTORIES) {
    const names = await readdir(path.join(root, directory)).catch(() => [] as string[]);
    if (names.includes(`${actionId}.json`)) return directory;
  }
  return undefined;
}
