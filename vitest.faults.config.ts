import { defineConfig } from "vitest/config";

// The fault suite (npm run test:faults): real servers, workers and
// databases killed and cut off on purpose. Scenarios run one at a time, so
// that their timings mean something on a small machine.
export default defineConfig({
  test: {
    include: ["test/faults/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    fileParallelism: false,
    maxWorkers: 1,
    testTimeout: 180_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
  },
});
