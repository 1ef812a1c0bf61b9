// The HTTP API through the Worker's real fetch entry point in workerd, with
// its real KV binding: auth, validation, storage and pagination.

import { reset } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import { heartbeatToken } from "../src/crypto";
import { EVENT_PREFIX } from "../src/events";
import { HEARTBEAT_PREFIX, LAST_RUN_KEY } from "../src/store";
import { ADMIN, admin, allEvents, call, callWith, heartbeatBody, postJson, sendHeartbeat, type EventOut } from "./worker";

beforeEach(async () => {
  await reset();
});

const kv = () => env.SOONG_KV!;

async function errorOf(res: Response): Promise<{ status: number; code: string; type: string | null }> {
  const body = (await res.json()) as { error?: { code?: string; message?: string } };
  expect(typeof body.error?.message).toBe("string");
  return { status: res.status, code: body.error?.code ?? "", type: res.headers.get("content-type") };
}

describe("GET /health", () => {
  it("is public and says only ok", async () => {
    const res = await call("/health");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok" });
  });

  it("is unhealthy, and says nothing more, when the KV binding is missing", async () => {
    const res = await callWith({ ...env, SOONG_KV: undefined }, "/health");
    expect(res.status).toBe(503);
    expect(await res.text()).toBe('{"status":"unhealthy"}');
  });

  it("is unhealthy when a secret is missing or a threshold is invalid", async () => {
    for (const broken of [{ WORKER_SECRET: undefined }, { ADMIN_TOKEN: "" }, { LAMBDA_API_KEY: undefined }, { STUCK_MINUTES: "-3" }]) {
      expect((await callWith({ ...env, ...broken }, "/health")).status).toBe(503);
    }
  });

  it("is unhealthy when the watchdog has not run for three cron periods", async () => {
    const run = { ok: true, listed: 0, managed: 0, terminated: 0, errors: 0 };
    await kv().put(LAST_RUN_KEY, JSON.stringify({ ...run, at: new Date(Date.now() - 16 * 60_000).toISOString() }));
    expect((await call("/health")).status).toBe(503);
    await kv().put(LAST_RUN_KEY, JSON.stringify({ ...run, at: new Date(Date.now() - 4 * 60_000).toISOString() }));
    expect((await call("/health")).status).toBe(200);
  });
});

describe("POST /heartbeat", () => {
  it("stores a heartbeat signed for its own instance name, stamped with the worker's receive time", async () => {
    const body = heartbeatBody("i-1", "soong-one", { sent_at: "2020-01-01T00:00:00Z" });
    const before = Date.now();
    const res = await sendHeartbeat(body);
    expect(res.status).toBe(200);
    const stored = (await kv().get(`${HEARTBEAT_PREFIX}soong-one`, "json")) as Record<string, string>;
    expect(stored).toMatchObject(body);
    expect(Date.parse(stored.received_at!)).toBeGreaterThanOrEqual(before - 1000);
  });

  it("sets a TTL on the stored heartbeat", async () => {
    await sendHeartbeat(heartbeatBody("i-1", "soong-ttl"));
    const list = await kv().list({ prefix: HEARTBEAT_PREFIX });
    const exp = list.keys[0]?.expiration;
    expect(exp).toBeGreaterThan(Date.now() / 1000 + 24 * 3600);
    expect(exp).toBeLessThanOrEqual(Date.now() / 1000 + 48 * 3600 + 60);
  });

  it("refuses a token made for another instance: no cross-instance forgery", async () => {
    await sendHeartbeat(heartbeatBody("i-victim", "soong-victim", { shutdown_at: "2030-01-01T00:00:00Z" }));
    const before = await kv().get(`${HEARTBEAT_PREFIX}soong-victim`);

    // The attacker holds a valid token, but for its own name.
    const forged = heartbeatBody("i-victim", "soong-victim", { shutdown_at: "2099-01-01T00:00:00Z" });
    const res = await sendHeartbeat(forged, "soong-attacker");
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect(await kv().get(`${HEARTBEAT_PREFIX}soong-victim`)).toBe(before);
    expect(await kv().get(`${HEARTBEAT_PREFIX}soong-attacker`)).toBeNull();
  });

  it("refuses a missing, malformed or wrong token with 401", async () => {
    const body = heartbeatBody("i-1", "soong-auth");
    const good = await heartbeatToken(env.WORKER_SECRET!, "soong-auth");
    const headers: Record<string, string>[] = [
      {},
      { authorization: good },
      { authorization: `Basic ${good}` },
      { authorization: `Bearer ${good.toUpperCase()}` },
      { authorization: `Bearer ${good.slice(0, 63)}` },
      { authorization: `Bearer ${await heartbeatToken("another-secret", "soong-auth")}` },
    ];
    for (const h of headers) {
      const res = await postJson("/heartbeat", body, h);
      expect((await errorOf(res)).status).toBe(401);
    }
    expect(await kv().get(`${HEARTBEAT_PREFIX}soong-auth`)).toBeNull();
  });

  it("answers malformed bodies with 400 JSON errors, never 500", async () => {
    const token = await heartbeatToken(env.WORKER_SECRET!, "soong-bad");
    const auth = { authorization: `Bearer ${token}` };
    const good = heartbeatBody("i-1", "soong-bad");
    const bodies: unknown[] = [
      "",
      "{",
      "null",
      "[]",
      '"soong-bad"',
      { ...good, state: "napping" },
      { ...good, shutdown_at: "tomorrow" },
      { ...good, instance_id: "" },
      { ...good, shutdown_reason: null },
    ];
    for (const b of bodies) {
      const res = await postJson("/heartbeat", b, auth);
      expect(await errorOf(res)).toMatchObject({ status: 400, type: "application/json" });
    }
    const bytes = new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]);
    const res = await call("/heartbeat", { method: "POST", headers: auth, body: bytes });
    expect((await errorOf(res)).status).toBe(400);
  });

  it("refuses a body over 16 KiB with 413", async () => {
    const token = await heartbeatToken(env.WORKER_SECRET!, "soong-big");
    const body = { ...heartbeatBody("i-1", "soong-big"), padding: "x".repeat(17 * 1024) };
    const res = await postJson("/heartbeat", body, { authorization: `Bearer ${token}` });
    expect((await errorOf(res)).status).toBe(413);
  });

  it("fails closed when the KV binding is missing: 503, nothing accepted", async () => {
    const body = heartbeatBody("i-1", "soong-nokv");
    const token = await heartbeatToken(env.WORKER_SECRET!, "soong-nokv");
    const res = await callWith({ ...env, SOONG_KV: undefined }, "/heartbeat", {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });
    expect(await errorOf(res)).toMatchObject({ status: 503, code: "store_unavailable" });
  });

  it("answers other methods with 405 and an Allow header", async () => {
    const res = await call("/heartbeat");
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("POST");
  });
});

describe("admin endpoints", () => {
  const endpoints: [string, RequestInit][] = [
    ["/events", {}],
    ["/instances", {}],
    ["/events", { method: "POST", body: JSON.stringify({ type: "launch" }) }],
  ];

  for (const [path, init] of endpoints) {
    it(`${init.method ?? "GET"} ${path} needs the admin token`, async () => {
      for (const authorization of [undefined, "Bearer wrong", `Bearer ${env.ADMIN_TOKEN}x`, `Basic ${env.ADMIN_TOKEN}`]) {
        const res = await call(path, { ...init, headers: authorization ? { authorization } : {} });
        expect(res.status).toBe(401);
        expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
      }
      // A heartbeat token is not an admin token.
      const hb = await heartbeatToken(env.WORKER_SECRET!, "soong-x");
      expect((await call(path, { ...init, headers: { authorization: `Bearer ${hb}` } })).status).toBe(401);
    });
  }

  it("are closed, not open, when ADMIN_TOKEN is unset", async () => {
    for (const token of [undefined, ""]) {
      const res = await callWith({ ...env, ADMIN_TOKEN: token }, "/events", { headers: { authorization: "Bearer " } });
      expect(res.status).toBe(503);
    }
  });

  it("GET /instances lists the latest heartbeat of each instance", async () => {
    await sendHeartbeat(heartbeatBody("i-a", "soong-a", { shutdown_reason: "idle_timeout" }));
    await sendHeartbeat(heartbeatBody("i-b", "soong-b"));
    await sendHeartbeat(heartbeatBody("i-a", "soong-a", { shutdown_reason: "lease_expired" }));
    const res = await admin("/instances");
    expect(res.status).toBe(200);
    const { instances } = (await res.json()) as { instances: Record<string, unknown>[] };
    expect(instances.map((i) => [i.instance_name, i.shutdown_reason])).toEqual([
      ["soong-a", "lease_expired"],
      ["soong-b", "idle_timeout"],
    ]);
    expect(instances[0]).toHaveProperty("received_at");
    expect(instances[0]).toHaveProperty("heartbeat_age_seconds");
  });

  it("fail closed without a KV binding", async () => {
    const e = { ...env, SOONG_KV: undefined };
    const post = await callWith(e, "/events", { method: "POST", headers: ADMIN, body: JSON.stringify({ type: "launch" }) });
    expect(post.status).toBe(503);
    expect((await callWith(e, "/events", { headers: ADMIN })).status).toBe(503);
    expect((await callWith(e, "/instances", { headers: ADMIN })).status).toBe(503);
  });
});

describe("events", () => {
  async function post(body: unknown): Promise<Response> {
    return postJson("/events", body, ADMIN);
  }

  it("POST /events stores an event with a key and time the worker chose", async () => {
    const res = await post({ type: "launch", instance_id: "i-1", instance_name: "soong-x", data: { gpu: "gpu_1x_a10" } });
    expect(res.status).toBe(201);
    const { event } = (await res.json()) as { event: EventOut };
    expect(event).toMatchObject({ type: "launch", source: "api", instance_id: "i-1", data: { gpu: "gpu_1x_a10" } });
    expect(Math.abs(Date.parse(event.ts) - Date.now())).toBeLessThan(60_000);
    const keys = await kv().list({ prefix: EVENT_PREFIX });
    expect(keys.keys.map((k) => k.name)).toEqual([EVENT_PREFIX + event.id]);
  });

  it("POST /events refuses client-chosen ids and times, and malformed bodies, with 400", async () => {
    for (const body of [{ type: "launch", id: "0000" }, { type: "launch", ts: "2000-01-01T00:00:00Z" }, { type: "" }, {}, "[", "7"]) {
      expect((await errorOf(await post(body))).status).toBe(400);
    }
    expect((await kv().list({ prefix: EVENT_PREFIX })).keys).toEqual([]);
  });

  it("POST /events refuses an event too large to store with 413, rather than cutting it", async () => {
    const res = await post({ type: "launch", message: "é".repeat(500), data: { a: "x".repeat(120), b: "y".repeat(120) } });
    expect(await errorOf(res)).toMatchObject({ status: 413, code: "event_too_large" });
  });

  it("GET /events refuses malformed queries with 400", async () => {
    for (const q of ["since=soon", "limit=0", "limit=5000", "cursor=AAAA", "cursor=%FF", "type=Launch", "bogus=1"]) {
      expect((await errorOf(await admin(`/events?${q}`))).status).toBe(400);
    }
  });

  describe("pagination over more than 1,000 events", () => {
    const TOTAL = 1234;
    let posted: EventOut[] = [];

    beforeEach(async () => {
      posted = [];
      // Through the API, as the CLI would: 1,234 requests.
      for (let i = 0; i < TOTAL; i++) {
        const res = await post({
          type: i % 2 === 0 ? "launch" : "extend",
          instance_id: `i-${i % 3}`,
          instance_name: `soong-${i % 3}`,
          data: { n: i },
        });
        posted.push(((await res.json()) as { event: EventOut }).event);
      }
    }, 120_000);

    it("returns every event exactly once, newest first, 100 per page by default", async () => {
      let cursor: string | null = null;
      const seen: EventOut[] = [];
      let pages = 0;
      do {
        const res = await admin(`/events${cursor ? `?cursor=${encodeURIComponent(cursor)}` : ""}`);
        expect(res.status).toBe(200);
        const page = (await res.json()) as { events: EventOut[]; cursor: string | null };
        expect(page.events.length).toBeLessThanOrEqual(100);
        seen.push(...page.events);
        cursor = page.cursor;
        pages++;
      } while (cursor !== null);
      expect(pages).toBe(13);
      expect(seen.map((e) => e.data?.n)).toEqual(posted.map((e) => e.data?.n).reverse());
    });

    it("crosses KV's 1,000-key list pages with limit=1000", async () => {
      const first = (await (await admin("/events?limit=1000")).json()) as { events: EventOut[]; cursor: string };
      expect(first.events).toHaveLength(1000);
      expect(first.cursor).toEqual(expect.any(String));
      const second = (await (await admin(`/events?limit=1000&cursor=${encodeURIComponent(first.cursor)}`)).json()) as {
        events: EventOut[];
        cursor: string | null;
      };
      expect(second.events).toHaveLength(TOTAL - 1000);
      expect(second.cursor).toBeNull();
      const ns = [...first.events, ...second.events].map((e) => e.data?.n);
      expect(new Set(ns).size).toBe(TOTAL);
      expect(ns[0]).toBe(TOTAL - 1);
    });

    it("filters by type and instance across pages", async () => {
      const launches = await allEvents("type=launch&limit=250");
      expect(launches).toHaveLength(TOTAL / 2);
      expect(launches.every((e) => e.type === "launch")).toBe(true);
      const byId = await allEvents("instance=i-1&limit=150");
      const byName = await allEvents("instance=soong-1&limit=1000");
      const expected = posted.filter((e) => e.instance_id === "i-1").map((e) => e.id).reverse();
      expect(byId.map((e) => e.id)).toEqual(expected);
      expect(byName.map((e) => e.id)).toEqual(expected);
      const both = await allEvents("type=extend&instance=i-2");
      expect(both.map((e) => e.id)).toEqual(posted.filter((e) => e.type === "extend" && e.instance_id === "i-2").map((e) => e.id).reverse());
    });

    it("with since, stops at the first older event", async () => {
      const middle = posted[1000]!;
      const since = await allEvents(`since=${encodeURIComponent(middle.ts)}&limit=1000`);
      expect(since.length).toBeGreaterThanOrEqual(TOTAL - 1000);
      expect(since.every((e) => e.ts >= middle.ts)).toBe(true);
      expect(await allEvents(`since=${Math.floor(Date.now() / 1000) + 3600}`)).toEqual([]);
    });

    it("a new event does not shift the pages a client is walking", async () => {
      const first = (await (await admin("/events?limit=500")).json()) as { events: EventOut[]; cursor: string };
      await post({ type: "launch", data: { n: -1 } });
      const rest = (await (await admin(`/events?limit=1000&cursor=${encodeURIComponent(first.cursor)}`)).json()) as {
        events: EventOut[];
        cursor: string | null;
      };
      expect(rest.cursor).toBeNull();
      const ns = [...first.events, ...rest.events].map((e) => e.data?.n);
      expect(ns).toEqual(posted.map((e) => e.data?.n).reverse());
    });
  });
});

describe("anything else", () => {
  it("is a 404 JSON error", async () => {
    expect(await errorOf(await call("/"))).toMatchObject({ status: 404, type: "application/json" });
    expect((await errorOf(await call("/heartbeat/extra", { method: "POST" }))).status).toBe(404);
  });
});
