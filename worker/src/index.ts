//! The Worker's entry: a thin shell over `http.handle` and `runWatchdog`.

import type { Env } from "./env";
import { handle } from "./http";
import { runWatchdog } from "./scheduled";

export type { Env } from "./env";

export default {
  async fetch(request, env) {
    return handle(request, env, Date.now());
  },
  async scheduled(controller, env) {
    // The later of the cron's scheduled time and the clock: a run started
    // late judges by the real time, and a test can hand in a later `now`
    // through the controller instead of waiting minutes.
    await runWatchdog(env, Math.max(controller.scheduledTime, Date.now()));
  },
} satisfies ExportedHandler<Env>;
