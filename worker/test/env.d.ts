// The test runtime's `env` and `exports` (from `cloudflare:workers`) are the
// Worker's: its Env, and the handlers of src/index.ts.
type SoongWorkerEnv = import("../src/env").Env;
declare namespace Cloudflare {
  interface Env extends SoongWorkerEnv {}
  interface GlobalProps {
    mainModule: typeof import("../src/index");
  }
}
