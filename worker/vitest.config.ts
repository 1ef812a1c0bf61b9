// Tests run inside workerd through the Workers Vitest integration, with the
// real KV binding from wrangler.toml. Secrets are test values here; the
// simulator URL is handed to each integration test by the launcher in
// test/node/sim-launcher.ts.
import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

export default defineConfig({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: {
        bindings: {
          LAMBDA_API_URL: "http://127.0.0.1:9/api/v1",
          LAMBDA_API_KEY: "sim-api-key",
          WORKER_SECRET: "test-worker-secret",
          ADMIN_TOKEN: "test-admin-token",
        },
      },
    }),
  ],
  test: {
    globalSetup: ["./test/node/sim-launcher.ts"],
    include: ["test/**/*.test.ts"],
    // Files share the KV namespace (fetch-integration resets it), and on two
    // cores parallel files gain little: run them one after another.
    fileParallelism: false,
    // The Worker's own log lines are shown for failing tests only.
    silent: "passed-only",
    testTimeout: 60_000,
    hookTimeout: 30_000,
  },
});
