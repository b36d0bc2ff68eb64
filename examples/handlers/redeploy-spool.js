// An example live handler for `redeploy_service`, for `actionq executor`.
// It restarts nothing itself: it drops a restart request into a spool
// directory that a deploy agent on the node watches, and reports the
// request's path as the action's result.
//
//   actionq executor --live --handler redeploy_service=examples/handlers/redeploy-spool.js
//
// ACTIONQ_REDEPLOY_SPOOL names the spool directory (default:
// <tmpdir>/actionq-redeploy-spool).
//
// A handler module's default export is { apply(action, ctx) }: `action` is
// the claimed actionq.v1.Action (id is a bigint, payload a plain object);
// `ctx` has `signal` (aborts when the claim is lost), `resumed` (an earlier
// run of this claim may have got this far), `log` (pino) and `attempt`. It
// resolves { resultRef } or throws; the error's message becomes the
// action's failure reason.
import { access, mkdir, open, rename } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

const spool = process.env.ACTIONQ_REDEPLOY_SPOOL || path.join(tmpdir(), "actionq-redeploy-spool");

export default {
  async apply(action, ctx) {
    const service = action.service || action.targetRef;
    if (!service) throw new Error("redeploy_service needs a service (or a target_ref naming one)");
    // One request per action: a resumed run finds the request its first run
    // made and reports it, instead of asking for a second restart.
    const file = path.join(spool, `redeploy-${action.id}.json`);
    if (ctx.resumed && (await exists(file))) {
      ctx.log.info({ file }, "restart already requested by an earlier run");
      return { resultRef: `file://${file}` };
    }
    ctx.signal.throwIfAborted();

    const request = {
      action_id: String(action.id),
      service,
      node: action.node || null,
      image: typeof action.payload?.image === "string" ? action.payload.image : null,
      attempt: ctx.attempt,
      requested_at: new Date().toISOString(),
    };
    await mkdir(spool, { recursive: true });
    // Written whole or not at all, so the agent never reads half a request.
    const temporary = `${file}.${process.pid}.tmp`;
    const handle = await open(temporary, "w");
    try {
      await handle.writeFile(`${JSON.stringify(request)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, file);
    ctx.log.info({ file, service, node: request.node }, `requested a restart of service ${service}`);
    return { resultRef: `file://${file}` };
  },
};

async function exists(file) {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}
