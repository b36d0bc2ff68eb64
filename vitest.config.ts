import { configDefaults, defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The fault suite kills processes on purpose and takes minutes: it has
    // its own config (vitest.faults.config.ts, npm run test:faults).
    exclude: [...configDefaults.exclude, "test/faults/**"],
    globalSetup: ["test/support/global-setup.ts"],
    // Each file starts its own server on its own schema; files run in
    // parallel, tests within a file in order.
    fileParallelism: true,
    maxWorkers: 4,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
  },
});
