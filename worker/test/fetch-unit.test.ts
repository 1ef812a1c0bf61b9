// The fetch side's pure parts: tokens, constant-time comparison, body
// schemas, event keys and cursors.

import { describe, expect, it } from "vitest";
import { bearerToken, heartbeatToken, timingSafeEqualStrings } from "../src/crypto";
import {
  decodeCursor,
  encodeCursor,
  eventKey,
  keyMs,
  makeEvent,
  parseEventQuery,
  validateEventInput,
  EVENT_MAX_BYTES,
} from "../src/events";
import { parseHeartbeatRecord, parseRfc3339, validateHeartbeat, TERMINATE_ERROR_MAX } from "../src/heartbeat";

describe("heartbeat token", () => {
  it("is HMAC-SHA256 as lowercase hex (RFC 4231 test case 1)", async () => {
    expect(await heartbeatToken("\x0b".repeat(20), "Hi There")).toBe(
      "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
    );
  });

  it("keys with the UTF-8 secret and signs the UTF-8 instance name", async () => {
    // Values computed independently with Python's hmac module.
    expect(await heartbeatToken("test-worker-secret", "soong-abc")).toBe(
      "0732df5a69fdc083ff35ed1cb6ee504fa94519a74876048184ecd77f4b870f05",
    );
    expect(await heartbeatToken("sécret", "soong-ünï")).toBe(
      "3c00bb90e51f77c6f9f01d0c094584cf867bf06c784e276a7e064f105512b4ee",
    );
  });

  it("differs for every instance name", async () => {
    expect(await heartbeatToken("k", "soong-a")).not.toBe(await heartbeatToken("k", "soong-b"));
  });
});

describe("constant-time comparison", () => {
  it("is true only for equal strings, whatever the lengths", async () => {
    expect(await timingSafeEqualStrings("abc", "abc")).toBe(true);
    expect(await timingSafeEqualStrings("abc", "abd")).toBe(false);
    expect(await timingSafeEqualStrings("abc", "abcd")).toBe(false);
    expect(await timingSafeEqualStrings("", "x")).toBe(false);
    expect(await timingSafeEqualStrings("", "")).toBe(true);
  });
});

describe("bearer header", () => {
  it("takes the token after Bearer, case-insensitively", () => {
    expect(bearerToken("Bearer abc")).toBe("abc");
    expect(bearerToken("bearer abc")).toBe("abc");
  });

  it("refuses other schemes, empty tokens and tokens with spaces", () => {
    expect(bearerToken(null)).toBeNull();
    expect(bearerToken("Basic abc")).toBeNull();
    expect(bearerToken("Bearer ")).toBeNull();
    expect(bearerToken("Bearer a b")).toBeNull();
    expect(bearerToken("abc")).toBeNull();
  });
});

const goodHeartbeat = {
  instance_id: "0920582c7ff041399e34823a0be62549",
  instance_name: "soong-abc",
  sent_at: "2026-06-01T12:00:00Z",
  state: "running",
  shutdown_at: "2026-06-01T12:30:00.123+00:00",
  shutdown_reason: "idle_timeout",
  terminate_error: null,
};

describe("heartbeat body", () => {
  it("accepts the body of DESIGN.md §3.4", () => {
    expect(validateHeartbeat(goodHeartbeat)).toEqual({ ok: true, value: goodHeartbeat });
  });

  it("accepts every state and shutdown reason the daemon sends", () => {
    for (const state of ["running", "terminating"]) {
      for (const shutdown_reason of ["idle_timeout", "lease_expired", "hard_timeout", "shutdown_requested"]) {
        expect(validateHeartbeat({ ...goodHeartbeat, state, shutdown_reason }).ok).toBe(true);
      }
    }
  });

  it("treats a missing terminate_error as null and ignores unknown fields", () => {
    const { terminate_error: _, ...rest } = goodHeartbeat;
    const r = validateHeartbeat({ ...rest, future_field: 1 });
    expect(r).toEqual({ ok: true, value: goodHeartbeat });
  });

  it("truncates a long terminate_error instead of refusing the heartbeat", () => {
    const r = validateHeartbeat({ ...goodHeartbeat, state: "terminating", terminate_error: "x".repeat(5000) });
    expect(r.ok && r.value.terminate_error?.length).toBe(TERMINATE_ERROR_MAX);
  });

  const bad: [string, unknown][] = [
    ["an array", [goodHeartbeat]],
    ["null", null],
    ["a string", "hi"],
    ["a missing instance_id", { ...goodHeartbeat, instance_id: undefined }],
    ["an empty instance_name", { ...goodHeartbeat, instance_name: "" }],
    ["a 65-character name", { ...goodHeartbeat, instance_name: "n".repeat(65) }],
    ["a name with a newline", { ...goodHeartbeat, instance_name: "soong\nabc" }],
    ["a numeric instance_id", { ...goodHeartbeat, instance_id: 42 }],
    ["a date without time zone", { ...goodHeartbeat, sent_at: "2026-06-01T12:00:00" }],
    ["a unix time for shutdown_at", { ...goodHeartbeat, shutdown_at: 1780000000 }],
    ["an impossible date", { ...goodHeartbeat, shutdown_at: "2026-13-45T99:00:00Z" }],
    ["an unknown state", { ...goodHeartbeat, state: "sleeping" }],
    ["an unknown reason", { ...goodHeartbeat, shutdown_reason: "bored" }],
    ["a numeric terminate_error", { ...goodHeartbeat, terminate_error: 5 }],
  ];
  for (const [what, body] of bad) {
    it(`refuses ${what}`, () => {
      expect(validateHeartbeat(body).ok).toBe(false);
    });
  }

  it("reads back a stored record and refuses a corrupt one", () => {
    const rec = { ...goodHeartbeat, received_at: "2026-06-01T12:00:01.000Z" };
    expect(parseHeartbeatRecord(rec)).toEqual(rec);
    expect(parseHeartbeatRecord({ ...goodHeartbeat })).toBeNull();
    expect(parseHeartbeatRecord("garbage")).toBeNull();
  });

  it("parses RFC 3339 with offsets to the same instant", () => {
    expect(parseRfc3339("2026-06-01T14:00:00+02:00")).toBe(parseRfc3339("2026-06-01T12:00:00Z"));
    expect(parseRfc3339("2026-06-01 12:00:00z")).toBe(Date.parse("2026-06-01T12:00:00Z"));
  });
});

describe("event keys", () => {
  it("sort newest first in byte order, KV's list order", () => {
    const keys = [1_000, 2_000, 2_000, 2_000, 1_780_000_000_000, 1_780_000_000_001].map((ms) => eventKey(ms));
    const sorted = [...keys].sort();
    expect(sorted).toEqual([...keys].reverse());
  });

  it("encode the millisecond they were made", () => {
    expect(keyMs(eventKey(1_780_000_000_123))).toBe(1_780_000_000_123);
  });

  it("never collide, even within one millisecond", () => {
    const keys = new Set(Array.from({ length: 500 }, () => eventKey(5)));
    expect(keys.size).toBe(500);
  });
});

describe("event body", () => {
  it("accepts a CLI launch event", () => {
    const r = validateEventInput({ type: "launch", instance_id: "abc", instance_name: "soong-x", data: { gpu: "gpu_1x_a10", hours: 4 } });
    expect(r).toEqual({
      ok: true,
      value: { type: "launch", instance_id: "abc", instance_name: "soong-x", reason: null, message: null, data: { gpu: "gpu_1x_a10", hours: 4 } },
    });
  });

  const bad: [string, unknown][] = [
    ["no type", {}],
    ["an uppercase type", { type: "Launch" }],
    ["an unknown field", { type: "launch", id: "mine" }],
    ["a client timestamp", { type: "launch", ts: "2020-01-01T00:00:00Z" }],
    ["a nested data value", { type: "launch", data: { a: { b: 1 } } }],
    ["data as an array", { type: "launch", data: [1] }],
    ["a long message", { type: "launch", message: "m".repeat(513) }],
    ["not an object", 7],
  ];
  for (const [what, body] of bad) {
    it(`refuses ${what}`, () => {
      expect(validateEventInput(body).ok).toBe(false);
    });
  }

  it("worker-made events are cut to fit KV metadata", () => {
    const ev = makeEvent(eventKey(0), { type: "watchdog_error", instance_id: null, instance_name: null, reason: null, message: "é".repeat(2000), data: null }, "watchdog");
    expect(new TextEncoder().encode(JSON.stringify(ev)).length).toBeLessThanOrEqual(EVENT_MAX_BYTES);
  });
});

describe("event queries and cursors", () => {
  it("round-trips a cursor", () => {
    const c = { c: "opaque-kv-cursor==", k: "ev:8219999999999-9999-0a1b2c3d" };
    expect(decodeCursor(encodeCursor(c))).toEqual(c);
  });

  it("refuses a cursor it did not make", () => {
    for (const s of ["", "!!!", btoa("{}"), encodeCursor({ c: null, k: "hb:soong" } as never), "e30"]) {
      expect(decodeCursor(s)).toBeNull();
    }
  });

  it("parses since as unix seconds or RFC 3339, and defaults the page size", () => {
    const a = parseEventQuery(new URLSearchParams("since=1780000000&type=launch&instance=soong-x"));
    expect(a).toEqual({ ok: true, value: { since: 1_780_000_000_000, type: "launch", instance: "soong-x", limit: 100, cursor: null } });
    const b = parseEventQuery(new URLSearchParams("since=2026-06-01T12:00:00Z&limit=1000"));
    expect(b.ok && b.value.since).toBe(Date.parse("2026-06-01T12:00:00Z"));
  });

  const bad = ["since=yesterday", "limit=0", "limit=1001", "limit=ten", "cursor=zzz", "type=BAD", "instance=", "sort=asc"];
  for (const q of bad) {
    it(`refuses ?${q}`, () => {
      expect(parseEventQuery(new URLSearchParams(q)).ok).toBe(false);
    });
  }
});
