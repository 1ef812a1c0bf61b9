// The scheduled handler end to end: the Worker in workerd, its KV binding,
// and its outbound Lambda calls going to a real `lambda-sim` process on
// loopback. Each test gets its own simulator. Time is moved by handing the
// cron a later scheduled time, never by waiting.

import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import type { Env } from "../src/env";
import { LambdaClient, LambdaError } from "../src/lambda";
import { FAST_SCENARIO, Sim } from "./sim";
import { allEvents, call, cronAt, heartbeatBody, sendHeartbeat } from "./worker";

const MIN = 60_000;
const secs = (ms: number) => String(Math.floor(ms / 1000));

let sims: Sim[] = [];
async function sim(scenario?: Record<string, unknown>): Promise<Sim> {
  const s = await Sim.start(scenario);
  sims.push(s);
  return s;
}
afterEach(async () => {
  await Promise.all(sims.map((s) => s.stop()));
  sims = [];
});

let seq = 0;
/** A unique instance name per test, as the CLI would make. */
const uniqueName = (what: string) => `soong-${what}-${Date.now().toString(36)}-${seq++}`;

function soongTags(launchedAt: number, hardDeadline: number) {
  return [
    { key: "soong:managed", value: "true" },
    { key: "soong:launched-at", value: secs(launchedAt) },
    { key: "soong:hard-deadline", value: secs(hardDeadline) },
    { key: "soong:lease-deadline", value: secs(launchedAt + 4 * 60 * MIN) },
    { key: "soong:model", value: "llama-3.1-8b" },
  ];
}

function envFor(s: Sim, over: Partial<Env> = {}): Partial<Env> {
  return { LAMBDA_API_URL: s.api, ...over };
}

async function eventsFor(id: string) {
  return allEvents(`instance=${id}`);
}

describe("scheduled run against the simulator", () => {
  it("terminates a managed instance past its hard deadline that never sent a heartbeat, and records why", async () => {
    const s = await sim();
    const now = Date.now();
    const id = await s.launch(uniqueName("hard"), soongTags(now - 2 * MIN, now - MIN));

    await cronAt(now, envFor(s));

    expect(await s.status(id)).toBe("terminating");
    expect((await s.terminateCalls()).map((c) => c.ids)).toEqual([[id]]);
    const events = await eventsFor(id);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      type: "watchdog_terminate",
      source: "watchdog",
      instance_id: id,
      reason: "hard_deadline",
      data: { outcome: "terminating", status_before: "active" },
    });
  });

  it("never touches instances that are not tagged soong:managed=true, whatever their name or other tags", async () => {
    const s = await sim();
    const now = Date.now();
    const past = soongTags(now - 9 * 60 * MIN, now - 60 * MIN);
    const untagged = await s.launch("soong-not-ours", []);
    const other = await s.launch(uniqueName("other"), [{ key: "team", value: "ml" }]);
    const falseTag = await s.launch(uniqueName("false"), [{ key: "soong:managed", value: "false" }, ...past.slice(1)]);
    const unhealthy = await s.launch(uniqueName("sick"), past.slice(1));
    await s.forceStatus(unhealthy, "unhealthy");
    const ours = await s.launch(uniqueName("ours"), past);

    await cronAt(now, envFor(s));
    await cronAt(now + 3 * 60 * MIN, envFor(s));

    expect((await s.terminateCalls()).map((c) => c.ids)).toEqual([[ours]]);
    for (const id of [untagged, other, falseTag]) expect(await s.status(id)).toBe("active");
    expect(await s.status(unhealthy)).toBe("unhealthy");
    for (const id of [untagged, other, falseTag, unhealthy]) expect(await eventsFor(id)).toEqual([]);
  });

  it("does not terminate an instance again once it is terminating, or one already terminated", async () => {
    const s = await sim({ ...FAST_SCENARIO, terminate_delay: "0s" });
    const now = Date.now();
    const past = () => soongTags(now - 9 * 60 * MIN, now - MIN);
    const a = await s.launch(uniqueName("again"), past());
    const b = await s.launch(uniqueName("gone"), past());
    expect((await s.call("POST", "/instance-operations/terminate", { instance_ids: [b] })).status).toBe(200);
    await s.waitFor(b, (st) => st === "terminated");

    await cronAt(now, envFor(s));
    await s.waitFor(a, (st) => st === "terminated");
    await cronAt(now + 5 * MIN, envFor(s));
    await cronAt(now + 10 * MIN, envFor(s));

    // `b`'s only call is the test's own; `a` is terminated once, by the
    // first run, and the later runs see it terminated and leave it.
    expect((await s.terminateCalls()).map((c) => c.ids)).toEqual([[b], [a]]);
    expect(await eventsFor(a)).toHaveLength(1);
    expect(await eventsFor(b)).toEqual([]);
  });

  it("terminates an instance that never sent a heartbeat once the boot grace has passed", async () => {
    const s = await sim();
    const now = Date.now();
    const launched = Math.floor(now / 1000) * 1000; // the tag holds whole seconds
    const id = await s.launch(uniqueName("silent"), soongTags(launched - 5 * MIN, now + 7 * 60 * MIN));

    await cronAt(now, envFor(s));
    await cronAt(launched + 15 * MIN, envFor(s)); // 20 min after launch: still within the grace
    expect(await s.terminateCalls()).toEqual([]);

    await cronAt(launched + 15 * MIN + 5_000, envFor(s));
    expect(await s.status(id)).toBe("terminating");
    expect(await eventsFor(id)).toMatchObject([{ reason: "no_heartbeat" }]);
  });

  it("keeps an instance whose daemon heartbeats, past the boot grace", async () => {
    const s = await sim();
    const now = Date.now();
    const name = uniqueName("alive");
    const id = await s.launch(name, soongTags(now - 40 * MIN, now + 7 * 60 * MIN));
    expect((await sendHeartbeat(heartbeatBody(id, name))).status).toBe(200);

    await cronAt(now, envFor(s));
    await cronAt(now + 14 * MIN, envFor(s));

    expect(await s.terminateCalls()).toEqual([]);
    expect(await s.status(id)).toBe("active");
  });

  it("terminates an instance whose last heartbeat is older than STALE_MINUTES", async () => {
    const s = await sim();
    const now = Date.now();
    const name = uniqueName("stale");
    const id = await s.launch(name, soongTags(now - 30 * MIN, now + 7 * 60 * MIN));
    expect((await sendHeartbeat(heartbeatBody(id, name))).status).toBe(200);

    await cronAt(now + 14 * MIN, envFor(s));
    expect(await s.terminateCalls()).toEqual([]);

    await cronAt(now + 16 * MIN, envFor(s));
    expect(await s.status(id)).toBe("terminating");
    expect(await eventsFor(id)).toMatchObject([{ reason: "stale_heartbeat" }]);
  });

  it("terminates an instance whose daemon's shutdown_at passed more than OVERDUE_GRACE_MINUTES ago", async () => {
    const s = await sim();
    const now = Date.now();
    const name = uniqueName("overdue");
    const id = await s.launch(name, soongTags(now - 60 * MIN, now + 7 * 60 * MIN));
    const hb = heartbeatBody(id, name, {
      state: "terminating",
      shutdown_at: new Date(now - 9 * MIN).toISOString(),
      shutdown_reason: "lease_expired",
    });
    expect((await sendHeartbeat(hb)).status).toBe(200);

    await cronAt(now, envFor(s)); // 9 minutes overdue: the daemon may still be at it
    expect(await s.terminateCalls()).toEqual([]);

    await cronAt(now + 2 * MIN, envFor(s));
    expect(await s.status(id)).toBe("terminating");
    expect(await eventsFor(id)).toMatchObject([{ reason: "overdue" }]);
  });

  it("terminates at once an instance whose daemon reports it cannot terminate itself", async () => {
    const s = await sim();
    const now = Date.now();
    const name = uniqueName("stuck-daemon");
    const id = await s.launch(name, soongTags(now - 60 * MIN, now + 7 * 60 * MIN));
    const hb = heartbeatBody(id, name, {
      state: "terminating",
      shutdown_at: new Date(now - MIN).toISOString(),
      terminate_error: "POST /instance-operations/terminate: HTTP 403 global/account-inactive",
    });
    expect((await sendHeartbeat(hb)).status).toBe(200);

    await cronAt(now, envFor(s));
    expect(await s.status(id)).toBe("terminating");
    const [ev] = await eventsFor(id);
    expect(ev).toMatchObject({ reason: "terminate_failed" });
    expect(ev?.message).toContain("account-inactive");
  });

  for (const status of ["unhealthy", "booting"] as const) {
    it(`terminates an instance ${status} for longer than STUCK_MINUTES, timing from when the watchdog first saw it`, async () => {
      // A long boot keeps a launched instance `booting`; `unhealthy` is forced.
      const s = await sim({ ...FAST_SCENARIO, boot_delay: "1h" });
      const now = Date.now();
      const name = uniqueName(status);
      const id = await s.launch(name, soongTags(now - 60 * MIN, now + 7 * 60 * MIN), false);
      if (status === "unhealthy") await s.forceStatus(id, status);
      expect(await s.status(id)).toBe(status);
      // The daemon still heartbeats, so only the stuck rule can fire. A
      // shorter STUCK_MINUTES keeps the heartbeat fresh throughout.
      expect((await sendHeartbeat(heartbeatBody(id, name))).status).toBe(200);
      const vars = envFor(s, { STUCK_MINUTES: "10" });

      await cronAt(now, vars); // first seen here
      await cronAt(now + 10 * MIN, vars);
      expect(await s.terminateCalls()).toEqual([]);

      await cronAt(now + 11 * MIN, vars);
      expect(await s.status(id)).toBe("terminating");
      expect(await eventsFor(id)).toMatchObject([{ reason: "stuck", data: { status_before: status } }]);
    });
  }

  it("restarts the stuck clock when an instance recovers in between", async () => {
    const s = await sim();
    const now = Date.now();
    const name = uniqueName("flaky");
    const id = await s.launch(name, soongTags(now - 60 * MIN, now + 7 * 60 * MIN));
    expect((await sendHeartbeat(heartbeatBody(id, name))).status).toBe(200);
    const vars = envFor(s, { STUCK_MINUTES: "10" });

    await s.forceStatus(id, "unhealthy");
    await cronAt(now, vars);
    await s.forceStatus(id, "active");
    await cronAt(now + 5 * MIN, vars);
    await s.forceStatus(id, "unhealthy");
    await cronAt(now + 6 * MIN, vars);
    await cronAt(now + 14 * MIN, vars); // unhealthy for 8 min since it was seen again

    expect(await s.terminateCalls()).toEqual([]);
    expect(await s.status(id)).toBe("unhealthy");
  });

  it("retries a terminate answered 429, waiting the Retry-After it was given", async () => {
    const s = await sim();
    const now = Date.now();
    const id = await s.launch(uniqueName("retry"), soongTags(now - 60 * MIN, now - MIN));
    await s.setFaults({
      scripted: [{ method: "POST", path: "/instance-operations/terminate", status: 429, count: 1, retry_after: 2 }],
    });

    await cronAt(now, envFor(s));

    const calls = await s.terminateCalls();
    expect(calls.map((c) => [c.ids, c.status])).toEqual([
      [[id], 429],
      [[id], 200],
    ]);
    expect(calls[1]!.at - calls[0]!.at).toBeGreaterThanOrEqual(2000);
    expect(await eventsFor(id)).toMatchObject([{ reason: "hard_deadline", data: { outcome: "terminating" } }]);
  });

  it("retries a list answered 5xx and still does its work", async () => {
    const s = await sim();
    const now = Date.now();
    const id = await s.launch(uniqueName("5xx"), soongTags(now - 60 * MIN, now - MIN));
    await s.setFaults({ scripted: [{ method: "GET", path: "/instances", status: 503, count: 2 }] });

    await cronAt(now, envFor(s));

    const lists = (await s.requests()).filter((r) => r.method === "GET" && r.path.endsWith("/instances"));
    expect(lists.map((r) => r.status).slice(-3)).toEqual([503, 503, 200]);
    expect(await s.status(id)).toBe("terminating");
  });

  it("paces itself under the API's real rate limit: no request is answered 429", async () => {
    const s = await sim({ ...FAST_SCENARIO, rate_limit: { enabled: true } });
    const now = Date.now();
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await s.insert(uniqueName(`paced${i}`), soongTags(now - 60 * MIN, now - MIN)));
    // Let the test's own requests drain out of the sim's token bucket.
    await new Promise((r) => setTimeout(r, 2500));
    const before = (await s.requests()).length;

    await cronAt(now, envFor(s));

    const mine = (await s.requests()).slice(before).filter((r) => r.path.startsWith("/api/v1/"));
    expect(mine.filter((r) => r.status === 429)).toEqual([]);
    expect((await s.terminateCalls()).flatMap((c) => c.ids).sort()).toEqual([...ids].sort());
    for (let i = 1; i < mine.length; i++) {
      expect(mine[i]!.elapsed_ms - mine[i - 1]!.elapsed_ms).toBeGreaterThanOrEqual(950);
    }
  });

  it("records a terminate that keeps failing as an error event, reports unhealthy, and retries on the next run", async () => {
    const s = await sim();
    const now = Date.now();
    const id = await s.launch(uniqueName("fails"), soongTags(now - 60 * MIN, now - MIN));
    await s.setFaults({ scripted: [{ method: "POST", path: "/instance-operations/terminate", status: 500, count: 100 }] });

    await cronAt(now, envFor(s));

    expect((await s.terminateCalls()).every((c) => c.status === 500)).toBe(true);
    expect(await s.status(id)).toBe("active");
    const events = await eventsFor(id);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: "watchdog_error", reason: "hard_deadline", data: { status: 500 } });
    expect((await call("/health")).status).toBe(503);

    await s.setFaults({ scripted: [] });
    await cronAt(now + 5 * MIN, envFor(s));
    expect(await s.status(id)).toBe("terminating");
    expect((await call("/health")).status).toBe(200);
  });

  it("records a failed list as an error event and reports itself unhealthy", async () => {
    const s = await sim();
    const now = Date.now();
    await cronAt(now, envFor(s, { LAMBDA_API_KEY: "wrong-key" }));

    const errors = await allEvents("type=watchdog_error");
    const mine = errors.filter((e) => e.reason === "list" && e.ts >= new Date(now).toISOString());
    expect(mine.length).toBeGreaterThanOrEqual(1);
    expect(mine[0]!.message).toContain("401");
    const health = await call("/health");
    expect(health.status).toBe(503);
    expect(await health.json()).toEqual({ status: "unhealthy" });

    await cronAt(now + 1000, envFor(s));
    expect((await call("/health")).status).toBe(200);
  });

  describe("without a KV binding", () => {
    it("enforces hard deadlines from tags, and nothing that needs the store", async () => {
      const s = await sim();
      const now = Date.now();
      const hard = await s.launch(uniqueName("nokv-hard"), soongTags(now - 60 * MIN, now - MIN));
      const silent = await s.launch(uniqueName("nokv-silent"), soongTags(now - 60 * MIN, now + 60 * MIN));
      const sick = await s.launch(uniqueName("nokv-sick"), soongTags(now - 60 * MIN, now + 60 * MIN));
      await s.forceStatus(sick, "unhealthy");

      await cronAt(now + 60 * MIN - 1000, envFor(s, { SOONG_KV: undefined }));

      // A missing store is not a missing heartbeat: no mass termination.
      expect((await s.terminateCalls()).map((c) => c.ids)).toEqual([[hard]]);
      expect(await s.status(silent)).toBe("active");
      expect(await s.status(sick)).toBe("unhealthy");
      expect(await s.status(hard)).toBe("terminating");
    });
  });

  it("with an invalid threshold, enforces only hard deadlines and records the configuration error", async () => {
    const s = await sim();
    const now = Date.now();
    const silent = await s.launch(uniqueName("badvar"), soongTags(now - 60 * MIN, now + 60 * MIN));
    const hard = await s.launch(uniqueName("badvar-hard"), soongTags(now - 60 * MIN, now - MIN));

    await cronAt(now, envFor(s, { STALE_MINUTES: "fifteen" }));

    expect((await s.terminateCalls()).map((c) => c.ids)).toEqual([[hard]]);
    expect(await s.status(silent)).toBe("active");
    const config = (await allEvents("type=watchdog_error")).filter((e) => e.reason === "config");
    expect(config.some((e) => e.message?.includes("STALE_MINUTES"))).toBe(true);
  });

  it("uses the vars from wrangler.toml when none are overridden", () => {
    expect(env.BOOT_GRACE_MINUTES).toBe("20");
    expect(env.STALE_MINUTES).toBe("15");
    expect(env.OVERDUE_GRACE_MINUTES).toBe("10");
    expect(env.STUCK_MINUTES).toBe("30");
  });

  describe("the Lambda client against the simulator", () => {
    it("reads a terminate answered 404 global/object-does-not-exist as already gone", async () => {
      const s = await sim();
      const client = new LambdaClient({ baseUrl: s.api, apiKey: "sim-api-key" });
      expect(await client.terminate("0123456789abcdef0123456789abcdef")).toEqual({ outcome: "already_gone" });
      expect((await s.terminateCalls()).map((c) => c.status)).toEqual([404]);
    });

    it("does not retry an authentication failure, and carries the API's error code", async () => {
      const s = await sim();
      const client = new LambdaClient({ baseUrl: s.api, apiKey: "not-the-key" });
      const err = await client.listInstances().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LambdaError);
      expect(err).toMatchObject({ status: 401, attempts: 1 });
      expect((err as LambdaError).code).toMatch(/^global\//);
      expect((await s.requests()).filter((r) => r.path.endsWith("/instances"))).toHaveLength(1);
    });

    it("gives up on a Retry-After longer than it is allowed to wait", async () => {
      const s = await sim();
      await s.setFaults({ scripted: [{ method: "GET", path: "/instances", status: 429, count: 1, retry_after: 3600 }] });
      const client = new LambdaClient({ baseUrl: s.api, apiKey: "sim-api-key", maxRetryDelayMs: 5_000 });
      const started = Date.now();
      await expect(client.listInstances()).rejects.toMatchObject({ status: 429 });
      expect(Date.now() - started).toBeLessThan(5_000);
    });
  });
});
