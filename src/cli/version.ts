// The version both commands print for --version: package.json's, read
// where the package is installed, whether running from src/ or dist/.
import { readFileSync } from "node:fs";
import path from "node:path";
import { packageRoot } from "../paths.js";

export function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(path.join(packageRoot, "package.json"), "utf8")) as { version?: string };
  return manifest.version ?? "unknown";
}
