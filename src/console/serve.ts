// Serves the web console (built by `npm run build` into dist/web) on the
// API port: plain GETs that are not RPC paths. sirv does the file serving:
// content types, ETags, the precompressed .br/.gz siblings the build
// writes, and the fallback to the app for its own routes (/actions/42).
// What is ours: which requests are the console's, the caching of hashed
// assets, and the headers that keep a page showing producer-written text
// safe (no inline scripts, no other origins, no framing).
import { existsSync } from "node:fs";
import type http from "node:http";
import http2 from "node:http2";
import path from "node:path";
import sirv from "sirv";
import { packageRoot } from "../paths.js";

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;

export const consoleDir = path.join(packageRoot, "dist", "web");

/** The console's policy: scripts, styles and calls from this origin only;
 * nothing inline, nothing framed. */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": CONTENT_SECURITY_POLICY,
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
};

/** RPC paths are `/package.Service/Method`: a first segment with a dot,
 * followed by a slash. Nothing of the console's looks like that. */
const RPC_PATH = /^\/[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+\//;

export function isConsoleRequest(req: Request): boolean {
  return (req.method === "GET" || req.method === "HEAD") && !RPC_PATH.test(req.url ?? "/");
}

/** The app's own routes (web/src/app.tsx), answered with its page. Any
 * other path is 404: a scraper pointed at /metrics on this port, or a
 * mistyped link, gets a plain "not found", not the app. */
const APP_ROUTE = /^\/(?:(?:inbox|actions|schedules|overview|events|policy)(?:\/[^/]*)?\/?)?(?:\?.*)?$/;

export type ConsoleHandler = (req: Request, res: Response) => void;

/** The console's request handler, or a reason it cannot be served. */
export function consoleHandler(dir = consoleDir, onFileError?: (error: Error, url: string) => void): ConsoleHandler | { missing: string } {
  if (!existsSync(path.join(dir, "index.html"))) return { missing: `${dir} has no index.html: run npm run build` };
  const files = sirv(dir, {
    single: true,
    etag: true,
    gzip: true,
    brotli: true,
    dotfiles: false,
    setHeaders(res, pathname) {
      // Vite names assets by their content hash: a changed file is a new
      // name, so an old one may be cached for good. The page itself must be
      // revalidated, or a browser would keep asking for assets a new build
      // no longer has.
      res.setHeader("cache-control", pathname.startsWith("/assets/") ? "public, max-age=31536000, immutable" : "no-cache");
    },
  });
  const notFound = (res: Response) => {
    res.statusCode = 404;
    res.setHeader("content-type", "text/plain; charset=utf-8");
    res.end("not found\n");
  };
  return (req, res) => {
    // sirv pipes a file stream into the response without listening for its
    // errors; a file gone since the server started (a rebuild under a
    // running server) would throw from the stream and end the process. The
    // answer is cut instead: its headers are already sent.
    res.once("pipe", (source: NodeJS.ReadableStream) => {
      source.once("error", (error: Error) => {
        onFileError?.(error, req.url ?? "");
        if ("stream" in res) res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        else res.destroy();
      });
    });
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
    const url = req.url ?? "/";
    if (!url.startsWith("/assets/") && !APP_ROUTE.test(url)) return notFound(res);
    files(req as http.IncomingMessage, res as http.ServerResponse, () => notFound(res));
  };
}
