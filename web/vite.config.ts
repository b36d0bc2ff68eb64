// Builds the console into dist/web, where `actionq serve` finds it. Assets
// get content hashes (served with long-lived caching) and precompressed
// .br and .gz siblings (served without compressing on every request).
import path from "node:path";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";
import { compression } from "vite-plugin-compression2";

const root = import.meta.dirname;

export default defineConfig({
  root,
  base: "/",
  plugins: [react(), compression({ algorithms: ["gzip", "brotliCompress"], threshold: 1024, deleteOriginalAssets: false })],
  build: {
    outDir: path.resolve(root, "..", "dist", "web"),
    emptyOutDir: true,
    // The server's Content-Security-Policy forbids inline scripts, so the
    // preload polyfill must not be injected inline.
    modulePreload: { polyfill: false },
    sourcemap: false,
    reportCompressedSize: false,
    target: "es2022",
  },
  server: { port: 5173, proxy: { "/actionq.v1.ActionQueueService": "http://127.0.0.1:50051" } },
});
