//! Events: validation, keys that list newest first, and cursor pagination.
//!
//! KV lists keys in byte order, so a key starts with the inverted timestamp
//! (`MAX_MS - ms`, zero-padded): a newer event has a smaller key. Inside one
//! millisecond an inverted per-isolate sequence keeps insertion order, and a
//! random suffix keeps keys from two isolates apart. The whole event is also
//! the key's KV metadata (≤ 1024 bytes), so one `list` call yields up to 1000
//! events without a `get` each.

import { parseRfc3339, type Validation } from "./heartbeat";

export const EVENT_PREFIX = "ev:";
/** Largest timestamp a key can hold: 9999999999999 ms is in the year 2286. */
const MAX_MS = 9_999_999_999_999;
const MAX_SEQ = 9_999;
/** Events expire after 90 days so the namespace does not grow forever. */
export const EVENT_TTL_SECONDS = 90 * 24 * 3600;
/** KV metadata is limited to 1024 bytes of JSON. */
export const EVENT_MAX_BYTES = 1024;
export const DEFAULT_PAGE = 100;
export const MAX_PAGE = 1000;
/** KV list calls one request may make while filtering (each returns up to
 * 1000 keys); past that the page ends early with a cursor to continue. */
export const MAX_SCANS_PER_REQUEST = 10;

const KEY_RE = /^ev:\d{13}-\d{4}-[0-9a-f]{8}$/;
const TYPE_RE = /^[a-z][a-z0-9_.:-]{0,39}$/;

export interface SoongEvent {
  id: string;
  ts: string;
  type: string;
  source: "api" | "watchdog";
  instance_id: string | null;
  instance_name: string | null;
  reason: string | null;
  message: string | null;
  data: Record<string, string | number | boolean | null> | null;
}

/** The fields a client may send to `POST /events`. */
export type EventInput = Pick<SoongEvent, "type" | "instance_id" | "instance_name" | "reason" | "message" | "data">;

let lastMs = -1;
let seq = 0;

/** A fresh event key for `now` (epoch ms). */
export function eventKey(now: number): string {
  const ms = Math.min(Math.max(0, Math.floor(now)), MAX_MS);
  if (ms === lastMs) seq = Math.min(seq + 1, MAX_SEQ);
  else {
    lastMs = ms;
    seq = 0;
  }
  const rand = new Uint8Array(4);
  crypto.getRandomValues(rand);
  const suffix = Array.from(rand, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${EVENT_PREFIX}${String(MAX_MS - ms).padStart(13, "0")}-${String(MAX_SEQ - seq).padStart(4, "0")}-${suffix}`;
}

/** The epoch ms encoded in an event key. */
export function keyMs(key: string): number {
  return MAX_MS - Number(key.slice(EVENT_PREFIX.length, EVENT_PREFIX.length + 13));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function optString(v: unknown, name: string, max: number): Validation<string | null> {
  if (v === undefined || v === null) return { ok: true, value: null };
  if (typeof v !== "string" || v.length > max) {
    return { ok: false, error: `${name} must be a string of at most ${max} characters` };
  }
  return { ok: true, value: v };
}

/** Checks a `POST /events` body. Keys and timestamps are the Worker's, never
 * the client's; unknown fields are refused so typos do not vanish. */
export function validateEventInput(body: unknown): Validation<EventInput> {
  if (!isObject(body)) return { ok: false, error: "body must be a JSON object" };
  const allowed = new Set(["type", "instance_id", "instance_name", "reason", "message", "data"]);
  for (const k of Object.keys(body)) {
    if (!allowed.has(k)) return { ok: false, error: `unknown field \`${k}\`` };
  }
  if (typeof body.type !== "string" || !TYPE_RE.test(body.type)) {
    return { ok: false, error: "type must match ^[a-z][a-z0-9_.:-]{0,39}$" };
  }
  const id = optString(body.instance_id, "instance_id", 64);
  if (!id.ok) return id;
  const name = optString(body.instance_name, "instance_name", 64);
  if (!name.ok) return name;
  const reason = optString(body.reason, "reason", 64);
  if (!reason.ok) return reason;
  const message = optString(body.message, "message", 512);
  if (!message.ok) return message;
  let data: EventInput["data"] = null;
  if (body.data !== undefined && body.data !== null) {
    if (!isObject(body.data)) return { ok: false, error: "data must be an object" };
    const entries = Object.entries(body.data);
    if (entries.length > 16) return { ok: false, error: "data must have at most 16 fields" };
    data = {};
    for (const [k, v] of entries) {
      if (k.length > 40) return { ok: false, error: "data keys must be at most 40 characters" };
      const scalar =
        v === null || typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v)) || typeof v === "string";
      if (!scalar) return { ok: false, error: `data.${k} must be a string, number, boolean or null` };
      data[k] = v as string | number | boolean | null;
    }
  }
  return {
    ok: true,
    value: {
      type: body.type,
      instance_id: id.value,
      instance_name: name.value,
      reason: reason.value,
      message: message.value,
      data,
    },
  };
}

/** Builds the stored event. The Worker's own messages (run errors quoting
 * API responses) may be long: they are cut to fit the metadata limit. A
 * client's event is never cut; the caller refuses it if it does not fit. */
export function makeEvent(key: string, input: EventInput, source: SoongEvent["source"]): SoongEvent {
  const ev: SoongEvent = {
    id: key.slice(EVENT_PREFIX.length),
    ts: new Date(keyMs(key)).toISOString(),
    type: input.type,
    source,
    instance_id: input.instance_id,
    instance_name: input.instance_name,
    reason: input.reason,
    message: input.message,
    data: input.data,
  };
  while (source === "watchdog" && !eventFits(ev) && ev.message !== null && ev.message.length > 0) {
    ev.message = ev.message.slice(0, Math.max(0, ev.message.length - 64));
  }
  return ev;
}

export function byteLength(s: string): number {
  return new TextEncoder().encode(s).length;
}

export function eventFits(ev: SoongEvent): boolean {
  return byteLength(JSON.stringify(ev)) <= EVENT_MAX_BYTES;
}

/** Writes one event. */
export async function putEvent(kv: KVNamespace, ev: SoongEvent): Promise<void> {
  const json = JSON.stringify(ev);
  await kv.put(EVENT_PREFIX + ev.id, json, { metadata: ev, expirationTtl: EVENT_TTL_SECONDS });
}

// ---------------------------------------------------------------- queries

export interface EventQuery {
  /** Epoch ms: only events at or after it. */
  since: number | null;
  /** Matches `instance_id` or `instance_name`. */
  instance: string | null;
  type: string | null;
  limit: number;
  cursor: Cursor | null;
}

/** Where a page ended: the KV cursor of the list page holding `k` (null for
 * the first), and the last key returned. Resuming lists that KV page again
 * and skips keys up to `k`; new events sort before `k`, so pages never
 * repeat or skip an event. */
export interface Cursor {
  c: string | null;
  k: string;
}

function b64urlEncode(s: string): string {
  const bytes = new TextEncoder().encode(s);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function b64urlDecode(s: string): string | null {
  if (!/^[A-Za-z0-9_-]*$/.test(s)) return null;
  try {
    const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (s.length % 4)) % 4));
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(Uint8Array.from(bin, (ch) => ch.charCodeAt(0)));
  } catch {
    return null;
  }
}

export function encodeCursor(c: Cursor): string {
  return b64urlEncode(JSON.stringify(c));
}

export function decodeCursor(s: string): Cursor | null {
  if (s.length === 0 || s.length > 4096) return null;
  const json = b64urlDecode(s);
  if (json === null) return null;
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    return null;
  }
  if (!isObject(v) || typeof v.k !== "string" || !KEY_RE.test(v.k)) return null;
  if (v.c !== null && typeof v.c !== "string") return null;
  return { c: v.c as string | null, k: v.k };
}

/** Parses `GET /events` query parameters. */
export function parseEventQuery(params: URLSearchParams): Validation<EventQuery> {
  const known = new Set(["since", "instance", "type", "cursor", "limit"]);
  for (const k of params.keys()) {
    if (!known.has(k)) return { ok: false, error: `unknown query parameter \`${k}\`` };
  }
  let since: number | null = null;
  const s = params.get("since");
  if (s !== null) {
    // Unix seconds or RFC 3339.
    since = /^\d{1,12}$/.test(s) ? Number(s) * 1000 : parseRfc3339(s);
    if (since === null) return { ok: false, error: "since must be unix seconds or an RFC 3339 timestamp" };
  }
  const instance = params.get("instance");
  if (instance !== null && (instance.length === 0 || instance.length > 64)) {
    return { ok: false, error: "instance must be 1 to 64 characters" };
  }
  const type = params.get("type");
  if (type !== null && !TYPE_RE.test(type)) return { ok: false, error: "type must match ^[a-z][a-z0-9_.:-]{0,39}$" };
  let limit = DEFAULT_PAGE;
  const l = params.get("limit");
  if (l !== null) {
    if (!/^\d{1,4}$/.test(l) || Number(l) < 1 || Number(l) > MAX_PAGE) {
      return { ok: false, error: `limit must be an integer from 1 to ${MAX_PAGE}` };
    }
    limit = Number(l);
  }
  let cursor: Cursor | null = null;
  const c = params.get("cursor");
  if (c !== null) {
    cursor = decodeCursor(c);
    if (cursor === null) return { ok: false, error: "cursor is not one this server returned" };
  }
  return { ok: true, value: { since, instance, type, limit, cursor } };
}

function matches(ev: SoongEvent, q: EventQuery): boolean {
  if (q.type !== null && ev.type !== q.type) return false;
  if (q.instance !== null && ev.instance_id !== q.instance && ev.instance_name !== q.instance) return false;
  return true;
}

function asEvent(meta: unknown): SoongEvent | null {
  if (!isObject(meta) || typeof meta.id !== "string" || typeof meta.type !== "string" || typeof meta.ts !== "string") {
    return null;
  }
  return meta as unknown as SoongEvent;
}

export interface EventPage {
  events: SoongEvent[];
  cursor: string | null;
}

/** One page of events, newest first. */
export async function listEvents(kv: KVNamespace, q: EventQuery): Promise<EventPage> {
  const events: SoongEvent[] = [];
  // Keys with an inverted timestamp above this are older than `since`.
  const oldestKeyTs = q.since === null ? null : String(MAX_MS - Math.max(0, q.since)).padStart(13, "0");
  let kvCursor: string | null = q.cursor?.c ?? null;
  let skipThrough: string | null = q.cursor?.k ?? null;
  for (let scans = 0; scans < MAX_SCANS_PER_REQUEST; scans++) {
    const page: KVNamespaceListResult<unknown, string> = await kv.list({
      prefix: EVENT_PREFIX,
      limit: 1000,
      ...(kvCursor !== null ? { cursor: kvCursor } : {}),
    });
    for (const key of page.keys) {
      if (skipThrough !== null && key.name <= skipThrough) continue;
      if (oldestKeyTs !== null && key.name.slice(EVENT_PREFIX.length, EVENT_PREFIX.length + 13) > oldestKeyTs) {
        return { events, cursor: null };
      }
      const ev = asEvent(key.metadata);
      if (ev === null || !matches(ev, q)) {
        skipThrough = key.name;
        continue;
      }
      events.push(ev);
      skipThrough = key.name;
      if (events.length === q.limit) {
        const last = page.list_complete && key === page.keys[page.keys.length - 1];
        return { events, cursor: last ? null : encodeCursor({ c: kvCursor, k: key.name }) };
      }
    }
    if (page.list_complete) return { events, cursor: null };
    kvCursor = page.cursor;
    skipThrough = null;
  }
  // Scan budget spent: a short page, with a cursor at the next KV page.
  // `k` must be a key, and everything on the next page is after the last
  // key seen, so the smallest possible key works as "skip nothing".
  return { events, cursor: encodeCursor({ c: kvCursor, k: `${EVENT_PREFIX}0000000000000-0000-00000000` }) };
}
