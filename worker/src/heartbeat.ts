//! The heartbeat body (DESIGN.md §3.4): schema check and the stored record.

export const HEARTBEAT_STATES = ["running", "terminating"] as const;
export const SHUTDOWN_REASONS = ["idle_timeout", "lease_expired", "hard_timeout", "shutdown_requested"] as const;

export type HeartbeatState = (typeof HEARTBEAT_STATES)[number];
export type ShutdownReason = (typeof SHUTDOWN_REASONS)[number];

/** A heartbeat as the daemon sends it, after validation. */
export interface Heartbeat {
  instance_id: string;
  instance_name: string;
  sent_at: string;
  state: HeartbeatState;
  shutdown_at: string;
  shutdown_reason: ShutdownReason;
  terminate_error: string | null;
}

/** What the Worker stores: the heartbeat plus the Worker's own receive time,
 * which is the only clock the staleness rule trusts. */
export interface HeartbeatRecord extends Heartbeat {
  received_at: string;
}

/** Longest `terminate_error` kept. Longer text is truncated, not refused:
 * refusing the heartbeat of a daemon that is failing to terminate would be
 * exactly backwards. */
export const TERMINATE_ERROR_MAX = 256;

/** Lambda instance names are at most 64 characters; ids are 32 hex digits.
 * 64 leaves room for the simulator's and future formats. */
const NAME_MAX = 64;
const ID_MAX = 64;

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

/** Parses an RFC 3339 timestamp to epoch milliseconds, or null. */
export function parseRfc3339(s: unknown): number | null {
  if (typeof s !== "string" || !RFC3339.test(s)) return null;
  const ms = Date.parse(s.replace(" ", "T"));
  return Number.isFinite(ms) ? ms : null;
}

export type Validation<T> = { ok: true; value: T } | { ok: false; error: string };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function nonEmptyString(v: unknown, max: number): v is string {
  return typeof v === "string" && v.length > 0 && v.length <= max && !/[\u0000-\u001f]/.test(v);
}

/** Checks a parsed JSON body against the heartbeat schema. Unknown fields
 * are ignored (and not stored) so that a newer daemon is not locked out by
 * an older Worker: a refused heartbeat ends with the instance terminated. */
export function validateHeartbeat(body: unknown): Validation<Heartbeat> {
  if (!isObject(body)) return { ok: false, error: "body must be a JSON object" };
  const { instance_id, instance_name, sent_at, state, shutdown_at, shutdown_reason } = body;
  const terminate_error = body.terminate_error ?? null;
  if (!nonEmptyString(instance_id, ID_MAX)) {
    return { ok: false, error: `instance_id must be a non-empty string of at most ${ID_MAX} characters` };
  }
  if (!nonEmptyString(instance_name, NAME_MAX)) {
    return { ok: false, error: `instance_name must be a non-empty string of at most ${NAME_MAX} characters` };
  }
  if (parseRfc3339(sent_at) === null) return { ok: false, error: "sent_at must be an RFC 3339 timestamp" };
  if (typeof state !== "string" || !(HEARTBEAT_STATES as readonly string[]).includes(state)) {
    return { ok: false, error: `state must be one of ${HEARTBEAT_STATES.join(", ")}` };
  }
  if (parseRfc3339(shutdown_at) === null) return { ok: false, error: "shutdown_at must be an RFC 3339 timestamp" };
  if (typeof shutdown_reason !== "string" || !(SHUTDOWN_REASONS as readonly string[]).includes(shutdown_reason)) {
    return { ok: false, error: `shutdown_reason must be one of ${SHUTDOWN_REASONS.join(", ")}` };
  }
  if (terminate_error !== null && typeof terminate_error !== "string") {
    return { ok: false, error: "terminate_error must be null or a string" };
  }
  return {
    ok: true,
    value: {
      instance_id,
      instance_name,
      sent_at: sent_at as string,
      state: state as HeartbeatState,
      shutdown_at: shutdown_at as string,
      shutdown_reason: shutdown_reason as ShutdownReason,
      terminate_error: terminate_error === null ? null : terminate_error.slice(0, TERMINATE_ERROR_MAX),
    },
  };
}

/** The record stored for a heartbeat received at `now` (epoch ms). */
export function heartbeatRecord(hb: Heartbeat, now: number): HeartbeatRecord {
  return { ...hb, received_at: new Date(now).toISOString() };
}

/** Reads back a stored record; anything malformed is treated as absent
 * rather than trusted. */
export function parseHeartbeatRecord(v: unknown): HeartbeatRecord | null {
  if (!isObject(v)) return null;
  const hb = validateHeartbeat(v);
  if (!hb.ok || parseRfc3339(v.received_at) === null) return null;
  return { ...hb.value, received_at: v.received_at as string };
}
