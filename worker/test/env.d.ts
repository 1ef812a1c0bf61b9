// The test runtime's `env` (from `cloudflare:workers`) is the Worker's Env.
type SoongWorkerEnv = import("../src/env").Env;
declare namespace Cloudflare {
  interface Env extends SoongWorkerEnv {}
}
