// Locates files shipped with the package (migrations, descriptors), whether
// the code runs from src/ under a TypeScript loader or from dist/.
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

function findPackageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, "package.json")) && existsSync(path.join(dir, "migrations"))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error("cannot find the actionq package root (no package.json beside migrations/)");
    dir = parent;
  }
}

export const packageRoot = findPackageRoot();
export const migrationsDir = path.join(packageRoot, "migrations");
export const descriptorSetPath = path.join(packageRoot, "gen", "actionq.binpb");
