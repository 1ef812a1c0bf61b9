// The scheduled policy as plain functions: every rule and its boundary,
// with an explicit clock. No I/O except where noted.

import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { parseApiUrl, parseThresholds, type Thresholds } from "../src/env";
import type { HeartbeatRecord } from "../src/heartbeat";
import { parseRetryAfter, retryDelay } from "../src/lambda";
import {
  decide,
  isManaged,
  nextStatusRecord,
  unixTagMs,
  type InstanceView,
  type StatusRecord,
} from "../src/rules";
import { runWatchdog } from "../src/scheduled";

const MIN = 60_000;
const T: Thresholds = { bootGraceMs: 20 * MIN, staleMs: 15 * MIN, overdueGraceMs: 10 * MIN, stuckMs: 30 * MIN };
const NOW = Date.parse("2026-06-01T12:00:00Z");
const secs = (ms: number) => String(Math.floor(ms / 1000));

function instance(over: Partial<InstanceView> & { tags?: InstanceView["tags"] } = {}): InstanceView {
  return {
    id: "0920582c7ff041399e34823a0be62549",
    name: "soong-test",
    status: "active",
    tags: [
      { key: "soong:managed", value: "true" },
      { key: "soong:launched-at", value: secs(NOW - 60 * MIN) },
      { key: "soong:hard-deadline", value: secs(NOW + 7 * 60 * MIN) },
    ],
    ...over,
  };
}

function heartbeat(over: Partial<HeartbeatRecord> = {}): HeartbeatRecord {
  return {
    instance_id: "0920582c7ff041399e34823a0be62549",
    instance_name: "soong-test",
    sent_at: new Date(NOW - MIN).toISOString(),
    state: "running",
    shutdown_at: new Date(NOW + 30 * MIN).toISOString(),
    shutdown_reason: "idle_timeout",
    terminate_error: null,
    received_at: new Date(NOW - MIN).toISOString(),
    ...over,
  };
}

function seen(status = "active", since = NOW - 60 * MIN): StatusRecord {
  return { status, since, first_seen: NOW - 60 * MIN };
}

function run(i: InstanceView, hb: HeartbeatRecord | null, st: StatusRecord = seen(i.status), now = NOW) {
  return decide({ instance: i, heartbeat: hb, status: st, thresholds: T, now, storeReadable: true });
}

describe("which instances are the watchdog's", () => {
  it("an instance tagged soong:managed=true is managed", () => {
    expect(isManaged(instance())).toBe(true);
  });

  it("an instance without the tag, with another value, or with no tags at all is not", () => {
    expect(isManaged(instance({ tags: [] }))).toBe(false);
    expect(isManaged(instance({ tags: null }))).toBe(false);
    expect(isManaged({ id: "x", status: "active" })).toBe(false);
    expect(isManaged(instance({ tags: [{ key: "soong:managed", value: "false" }] }))).toBe(false);
    expect(isManaged(instance({ tags: [{ key: "soong:managed", value: "TRUE" }] }))).toBe(false);
    expect(isManaged(instance({ name: "soong-lookalike", tags: [{ key: "owner", value: "soong" }] }))).toBe(false);
  });

  it("decide keeps an unmanaged instance even when every rule would fire", () => {
    const i = instance({ status: "unhealthy", tags: [{ key: "soong:hard-deadline", value: "1" }] });
    expect(run(i, null, seen("unhealthy", 0), NOW)).toEqual({ action: "keep" });
  });
});

describe("hard deadline", () => {
  it("terminates once now is past soong:hard-deadline", () => {
    const i = instance({ tags: [...instance().tags!.slice(0, 2), { key: "soong:hard-deadline", value: secs(NOW - 1000) }] });
    expect(run(i, heartbeat())).toMatchObject({ action: "terminate", reason: "hard_deadline" });
  });

  it("does not terminate at exactly the deadline", () => {
    const i = instance({ tags: [{ key: "soong:managed", value: "true" }, { key: "soong:hard-deadline", value: secs(NOW) }] });
    expect(run(i, heartbeat())).toEqual({ action: "keep" });
  });

  it("terminates past the hard deadline an instance that never sent a heartbeat", () => {
    const i = instance({
      tags: [
        { key: "soong:managed", value: "true" },
        { key: "soong:launched-at", value: secs(NOW - 5 * MIN) },
        { key: "soong:hard-deadline", value: secs(NOW - MIN) },
      ],
    });
    expect(run(i, null)).toMatchObject({ action: "terminate", reason: "hard_deadline" });
  });

  it("still applies when the store is unreadable, unlike every other rule", () => {
    const past = instance({ tags: [{ key: "soong:managed", value: "true" }, { key: "soong:hard-deadline", value: secs(NOW - 1000) }] });
    const silent = instance({ tags: [{ key: "soong:managed", value: "true" }, { key: "soong:launched-at", value: "1" }] });
    const d = (i: InstanceView) =>
      decide({ instance: i, heartbeat: null, status: seen("unhealthy", 0), thresholds: T, now: NOW, storeReadable: false });
    expect(d(past)).toMatchObject({ action: "terminate", reason: "hard_deadline" });
    expect(d(silent)).toEqual({ action: "keep" });
  });

  it("a malformed deadline tag is ignored, not read as zero", () => {
    for (const value of ["soon", "-5", "1.5", "", "1e9"]) {
      const i = instance({ tags: [{ key: "soong:managed", value: "true" }, { key: "soong:hard-deadline", value }] });
      expect(unixTagMs(i, "soong:hard-deadline")).toBeNull();
    }
  });
});

describe("boot grace: no heartbeat ever", () => {
  const launchedAgo = (ms: number) =>
    instance({ tags: [{ key: "soong:managed", value: "true" }, { key: "soong:launched-at", value: secs(NOW - ms) }] });

  it("keeps an instance within the boot grace", () => {
    expect(run(launchedAgo(19 * MIN), null)).toEqual({ action: "keep" });
    expect(run(launchedAgo(20 * MIN), null)).toEqual({ action: "keep" });
  });

  it("terminates one past the boot grace that never sent a heartbeat", () => {
    expect(run(launchedAgo(20 * MIN + 1000), null)).toMatchObject({ action: "terminate", reason: "no_heartbeat" });
  });

  it("without a launched-at tag, counts from when the watchdog first saw it", () => {
    const i = instance({ tags: [{ key: "soong:managed", value: "true" }] });
    const st = (firstSeen: number): StatusRecord => ({ status: "active", since: firstSeen, first_seen: firstSeen });
    expect(run(i, null, st(NOW - 10 * MIN))).toEqual({ action: "keep" });
    expect(run(i, null, st(NOW - 21 * MIN))).toMatchObject({ action: "terminate", reason: "no_heartbeat" });
  });

  it("a heartbeat stored under the same name for another instance id does not count", () => {
    const hb = heartbeat({ instance_id: "someone-else" });
    expect(run(launchedAgo(25 * MIN), hb)).toMatchObject({ action: "terminate", reason: "no_heartbeat" });
  });
});

describe("stale heartbeat", () => {
  it("keeps an instance whose heartbeat is 15 minutes old or younger", () => {
    expect(run(instance(), heartbeat({ received_at: new Date(NOW - 15 * MIN).toISOString() }))).toEqual({
      action: "keep",
    });
  });

  it("terminates one whose last heartbeat was received more than 15 minutes ago", () => {
    const hb = heartbeat({ received_at: new Date(NOW - 15 * MIN - 1000).toISOString() });
    expect(run(instance(), hb)).toMatchObject({ action: "terminate", reason: "stale_heartbeat" });
  });

  it("judges by the worker's receive time, not the daemon's sent_at", () => {
    const hb = heartbeat({ sent_at: new Date(NOW + 60 * MIN).toISOString(), received_at: new Date(NOW - 16 * MIN).toISOString() });
    expect(run(instance(), hb)).toMatchObject({ action: "terminate", reason: "stale_heartbeat" });
  });
});

describe("overdue: the daemon's shutdown_at passed", () => {
  it("keeps an instance within the overdue grace", () => {
    expect(run(instance(), heartbeat({ shutdown_at: new Date(NOW - 10 * MIN).toISOString() }))).toEqual({
      action: "keep",
    });
  });

  it("terminates one whose shutdown_at passed more than the grace ago", () => {
    const hb = heartbeat({ shutdown_at: new Date(NOW - 10 * MIN - 1000).toISOString(), shutdown_reason: "lease_expired" });
    const d = run(instance(), hb);
    expect(d).toMatchObject({ action: "terminate", reason: "overdue" });
    expect(d.action === "terminate" && d.detail).toContain("lease_expired");
  });

  it("reads shutdown_at with any RFC 3339 offset", () => {
    const hb = heartbeat({ shutdown_at: "2026-06-01T13:45:00+02:00" }); // 11:45Z, 15 min ago
    expect(run(instance(), hb)).toMatchObject({ action: "terminate", reason: "overdue" });
  });
});

describe("the daemon reports it cannot terminate", () => {
  it("terminates at once when a terminating heartbeat carries terminate_error", () => {
    const hb = heartbeat({ state: "terminating", terminate_error: "HTTP 500 from the API" });
    expect(run(instance(), hb)).toMatchObject({ action: "terminate", reason: "terminate_failed" });
  });

  it("leaves a daemon that is terminating without an error to finish", () => {
    expect(run(instance(), heartbeat({ state: "terminating" }))).toEqual({ action: "keep" });
  });
});

describe("stuck in booting or unhealthy", () => {
  for (const status of ["booting", "unhealthy"]) {
    it(`keeps an instance ${status} for 30 minutes`, () => {
      expect(run(instance({ status }), heartbeat(), seen(status, NOW - 30 * MIN))).toEqual({ action: "keep" });
    });

    it(`terminates one ${status} for longer than 30 minutes`, () => {
      expect(run(instance({ status }), heartbeat(), seen(status, NOW - 31 * MIN))).toMatchObject({
        action: "terminate",
        reason: "stuck",
      });
    });
  }

  it("an active instance is never stuck, however long it has been active", () => {
    expect(run(instance(), heartbeat(), seen("active", 0))).toEqual({ action: "keep" });
  });

  it("the stuck clock restarts when the status changes", () => {
    const first = nextStatusRecord(null, "booting", NOW - 40 * MIN);
    expect(first).toEqual({ status: "booting", since: NOW - 40 * MIN, first_seen: NOW - 40 * MIN });
    expect(nextStatusRecord(first, "booting", NOW - 20 * MIN)).toBe(first);
    const active = nextStatusRecord(first, "active", NOW - 20 * MIN);
    const unhealthy = nextStatusRecord(active, "unhealthy", NOW - 5 * MIN);
    expect(unhealthy).toEqual({ status: "unhealthy", since: NOW - 5 * MIN, first_seen: NOW - 40 * MIN });
    expect(run(instance({ status: "unhealthy" }), heartbeat(), unhealthy)).toEqual({ action: "keep" });
  });
});

describe("instances already going away", () => {
  for (const status of ["terminating", "terminated"]) {
    it(`never terminates a ${status} instance again, even past its hard deadline`, () => {
      const i = instance({ status, tags: [{ key: "soong:managed", value: "true" }, { key: "soong:hard-deadline", value: "1" }] });
      expect(run(i, null)).toEqual({ action: "skip", why: "already_going_away" });
    });
  }
});

describe("rule precedence", () => {
  it("reports the hard deadline first when several rules hold", () => {
    const i = instance({
      status: "unhealthy",
      tags: [{ key: "soong:managed", value: "true" }, { key: "soong:hard-deadline", value: secs(NOW - 1000) }],
    });
    const hb = heartbeat({ received_at: new Date(NOW - 60 * MIN).toISOString(), shutdown_at: new Date(NOW - 60 * MIN).toISOString() });
    expect(run(i, hb, seen("unhealthy", 0))).toMatchObject({ reason: "hard_deadline" });
  });

  it("reports overdue before stale when both hold", () => {
    const hb = heartbeat({ received_at: new Date(NOW - 60 * MIN).toISOString(), shutdown_at: new Date(NOW - 60 * MIN).toISOString() });
    expect(run(instance(), hb)).toMatchObject({ reason: "overdue" });
  });
});

describe("thresholds from vars", () => {
  it("defaults match DESIGN.md when unset", () => {
    expect(parseThresholds({})).toEqual({ ok: true, value: T });
  });

  it("accepts strings and numbers of minutes", () => {
    const r = parseThresholds({ BOOT_GRACE_MINUTES: "5", STALE_MINUTES: 2, OVERDUE_GRACE_MINUTES: "0.5", STUCK_MINUTES: "60" });
    expect(r).toEqual({ ok: true, value: { bootGraceMs: 5 * MIN, staleMs: 2 * MIN, overdueGraceMs: MIN / 2, stuckMs: 60 * MIN } });
  });

  it("refuses zero, negative, non-numeric and absurdly large values by name", () => {
    for (const bad of ["0", "-1", "ten", "1e3", "100000"]) {
      const r = parseThresholds({ STALE_MINUTES: bad });
      expect(r.ok).toBe(false);
      expect(!r.ok && r.errors[0]).toContain("STALE_MINUTES");
    }
  });

  it("reads the values in wrangler.toml", () => {
    expect(parseThresholds(env)).toEqual({ ok: true, value: T });
  });

  it("LAMBDA_API_URL must be an http(s) URL; a trailing slash is dropped", () => {
    expect(parseApiUrl("http://127.0.0.1:1/api/v1/")).toEqual({ ok: true, value: "http://127.0.0.1:1/api/v1" });
    expect(parseApiUrl(undefined).ok).toBe(false);
    expect(parseApiUrl("ftp://x").ok).toBe(false);
    expect(parseApiUrl("not a url").ok).toBe(false);
  });
});

describe("retry timing", () => {
  it("parses Retry-After as seconds or as an HTTP date", () => {
    expect(parseRetryAfter("3", 0)).toBe(3000);
    expect(parseRetryAfter("0.5", 0)).toBe(500);
    expect(parseRetryAfter("Wed, 21 Oct 2015 07:28:05 GMT", Date.parse("Wed, 21 Oct 2015 07:28:00 GMT"))).toBe(5000);
    expect(parseRetryAfter("garbage", 0)).toBeNull();
    expect(parseRetryAfter(null, 0)).toBeNull();
  });

  it("waits at least Retry-After, with a little jitter on top", () => {
    expect(retryDelay(1, 2000, 0)).toBe(2000);
    expect(retryDelay(1, 2000, 1)).toBe(2250);
  });

  it("backs off exponentially with jitter when the server gives no hint", () => {
    expect(retryDelay(1, null, 0)).toBe(250);
    expect(retryDelay(1, null, 1)).toBe(500);
    expect(retryDelay(3, null, 1)).toBe(2000);
    expect(retryDelay(20, null, 1)).toBe(8000);
  });
});

describe("a run that cannot reach the API", () => {
  it("records a configuration error and calls nothing when LAMBDA_API_KEY is unset", async () => {
    const report = await runWatchdog({ ...env, LAMBDA_API_KEY: undefined }, NOW);
    expect(report.ok).toBe(false);
    expect(report.errors.join()).toContain("LAMBDA_API_KEY");
    expect(report.terminations).toEqual([]);
  });
});
