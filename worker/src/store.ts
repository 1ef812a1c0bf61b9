//! KV layout: every key the Worker writes, in one place.
//!
//! | key            | value                          | TTL      |
//! |----------------|--------------------------------|----------|
//! | `hb:<name>`    | last `HeartbeatRecord`         | 48 h     |
//! | `st:<id>`      | `StatusRecord` (also metadata) | 7 days   |
//! | `ev:<...>`     | `SoongEvent` (also metadata)   | 90 days  |
//! | `meta:last-run`| `LastRun`                      | none     |
//!
//! Heartbeats are keyed by instance *name* because the name is what the
//! HMAC token authenticates; the id in the body is only compared.

import { parseHeartbeatRecord, type HeartbeatRecord } from "./heartbeat";
import type { StatusRecord } from "./rules";

export const HEARTBEAT_PREFIX = "hb:";
export const STATUS_PREFIX = "st:";
export const LAST_RUN_KEY = "meta:last-run";

/** A heartbeat outlives any instance (hard timeout ≤ 8 h) with room to
 * spare; if it ever expires under a live instance, the no-heartbeat rule
 * takes over, so expiry can only make the watchdog stricter. */
export const HEARTBEAT_TTL_SECONDS = 48 * 3600;
/** Status records are deleted when their instance leaves the list; the TTL
 * only cleans up after a namespace that stopped being used. */
export const STATUS_TTL_SECONDS = 7 * 24 * 3600;

export interface LastRun {
  at: string;
  ok: boolean;
  listed: number;
  managed: number;
  terminated: number;
  errors: number;
}

export async function putHeartbeat(kv: KVNamespace, rec: HeartbeatRecord): Promise<void> {
  await kv.put(HEARTBEAT_PREFIX + rec.instance_name, JSON.stringify(rec), { expirationTtl: HEARTBEAT_TTL_SECONDS });
}

export async function getHeartbeat(kv: KVNamespace, name: string): Promise<HeartbeatRecord | null> {
  return parseHeartbeatRecord(await kv.get(HEARTBEAT_PREFIX + name, "json"));
}

/** Every stored heartbeat (at most one list page: 1000 instances). */
export async function listHeartbeats(kv: KVNamespace): Promise<HeartbeatRecord[]> {
  const page = await kv.list({ prefix: HEARTBEAT_PREFIX, limit: 1000 });
  const recs = await Promise.all(
    page.keys.map(async (k) => parseHeartbeatRecord(await kv.get(k.name, "json"))),
  );
  return recs.filter((r): r is HeartbeatRecord => r !== null);
}

function parseStatusRecord(v: unknown): StatusRecord | null {
  if (typeof v !== "object" || v === null) return null;
  const r = v as Record<string, unknown>;
  if (typeof r.status !== "string" || typeof r.since !== "number" || typeof r.first_seen !== "number") return null;
  return { status: r.status, since: r.since, first_seen: r.first_seen };
}

/** All status records, by instance id. */
export async function listStatusRecords(kv: KVNamespace): Promise<Map<string, StatusRecord>> {
  const out = new Map<string, StatusRecord>();
  let cursor: string | undefined;
  for (;;) {
    const page: KVNamespaceListResult<unknown, string> = await kv.list({
      prefix: STATUS_PREFIX,
      limit: 1000,
      ...(cursor !== undefined ? { cursor } : {}),
    });
    for (const k of page.keys) {
      const rec = parseStatusRecord(k.metadata);
      if (rec !== null) out.set(k.name.slice(STATUS_PREFIX.length), rec);
    }
    if (page.list_complete) return out;
    cursor = page.cursor;
  }
}

export async function putStatusRecord(kv: KVNamespace, id: string, rec: StatusRecord): Promise<void> {
  await kv.put(STATUS_PREFIX + id, JSON.stringify(rec), { metadata: rec, expirationTtl: STATUS_TTL_SECONDS });
}

export async function deleteStatusRecord(kv: KVNamespace, id: string): Promise<void> {
  await kv.delete(STATUS_PREFIX + id);
}

export async function putLastRun(kv: KVNamespace, run: LastRun): Promise<void> {
  await kv.put(LAST_RUN_KEY, JSON.stringify(run));
}

export async function getLastRun(kv: KVNamespace): Promise<LastRun | null> {
  const v = (await kv.get(LAST_RUN_KEY, "json")) as Partial<LastRun> | null;
  if (v === null || typeof v.at !== "string" || typeof v.ok !== "boolean") return null;
  return v as LastRun;
}
