//! The watchdog's decision: plain functions over plain data, `now` injected.
//!
//! `decide()` is the whole policy of DESIGN.md §2 layer 4. It does no I/O, so
//! every rule and every boundary is unit-tested with an explicit clock; the
//! scheduled handler only gathers its inputs and executes what it returns.

import type { Thresholds } from "./env";
import type { HeartbeatRecord } from "./heartbeat";
import { parseRfc3339 } from "./heartbeat";

/** The part of a Lambda Cloud `Instance` the watchdog reads. */
export interface InstanceView {
  id: string;
  name?: string | null;
  status: string;
  tags?: { key: string; value: string }[] | null;
}

/** What the Worker remembers about an instance's status, because the API
 * does not say since when an instance has been in it. */
export interface StatusRecord {
  status: string;
  /** Epoch ms of the first run that saw `status`. */
  since: number;
  /** Epoch ms of the first run that saw the instance at all (fallback for a
   * missing `soong:launched-at` tag). */
  first_seen: number;
}

export const TAG_MANAGED = "soong:managed";
export const TAG_LAUNCHED_AT = "soong:launched-at";
export const TAG_HARD_DEADLINE = "soong:hard-deadline";

/** Why the watchdog terminates an instance, most urgent first. The first
 * rule that holds is the one recorded. */
export const TERMINATE_REASONS = [
  "hard_deadline",
  "terminate_failed",
  "overdue",
  "stale_heartbeat",
  "no_heartbeat",
  "stuck",
] as const;
export type TerminateReason = (typeof TERMINATE_REASONS)[number];

/** Statuses in which the instance is already going away (or gone): never
 * terminated again. */
export const GOING_AWAY = new Set(["terminating", "terminated"]);
/** Statuses in which billing may run while the instance is unusable. */
export const STUCK_STATUSES = new Set(["booting", "unhealthy"]);

export type Decision =
  | { action: "terminate"; reason: TerminateReason; detail: string }
  | { action: "keep" }
  | { action: "skip"; why: "already_going_away" };

export interface DecideInput {
  instance: InstanceView;
  /** The last heartbeat stored for this instance's name, if any. */
  heartbeat: HeartbeatRecord | null;
  /** This run's status record (after `nextStatusRecord`). */
  status: StatusRecord;
  thresholds: Thresholds;
  now: number;
  /** False when the store could not be read: heartbeat-based and
   * status-based rules are then off, only tag-based ones apply. */
  storeReadable: boolean;
}

/** The value of tag `key`, or undefined. */
export function tag(instance: InstanceView, key: string): string | undefined {
  return instance.tags?.find((t) => t.key === key)?.value;
}

/** Only `soong:managed=true` is ours: anything else in the account is never
 * touched, whatever its name. */
export function isManaged(instance: InstanceView): boolean {
  return tag(instance, TAG_MANAGED) === "true";
}

/** A unix-seconds tag as epoch ms, or null when absent or malformed. */
export function unixTagMs(instance: InstanceView, key: string): number | null {
  const v = tag(instance, key);
  if (v === undefined || !/^\d{1,12}$/.test(v)) return null;
  return Number(v) * 1000;
}

/** The status record for this run: unchanged while the status is unchanged,
 * restarted at `now` when it changes, created at `now` for a new instance. */
export function nextStatusRecord(prev: StatusRecord | null, status: string, now: number): StatusRecord {
  if (prev === null) return { status, since: now, first_seen: now };
  if (prev.status === status) return prev;
  return { status, since: now, first_seen: prev.first_seen };
}

const minutes = (ms: number) => `${Math.round((ms / 60_000) * 10) / 10} min`;

/** Decides what to do with one instance. Callers pass only managed
 * instances; `decide` checks again so that a caller bug cannot reach an
 * unmanaged instance. */
export function decide(input: DecideInput): Decision {
  const { instance, heartbeat, status, thresholds: t, now, storeReadable } = input;
  if (!isManaged(instance)) return { action: "keep" };
  if (GOING_AWAY.has(instance.status)) return { action: "skip", why: "already_going_away" };

  const hard = unixTagMs(instance, TAG_HARD_DEADLINE);
  if (hard !== null && now > hard) {
    return {
      action: "terminate",
      reason: "hard_deadline",
      detail: `now is ${minutes(now - hard)} past ${TAG_HARD_DEADLINE} ${new Date(hard).toISOString()}`,
    };
  }
  if (!storeReadable) return { action: "keep" };

  // A heartbeat is this instance's only if it names the same id: a name
  // reused by a later launch must not inherit an older instance's liveness.
  const hb = heartbeat !== null && heartbeat.instance_id === instance.id ? heartbeat : null;
  if (hb !== null) {
    const shutdownAt = parseRfc3339(hb.shutdown_at);
    const receivedAt = parseRfc3339(hb.received_at) ?? 0;
    if (hb.state === "terminating" && hb.terminate_error !== null) {
      return {
        action: "terminate",
        reason: "terminate_failed",
        detail: `the daemon reports it cannot terminate: ${hb.terminate_error}`,
      };
    }
    if (shutdownAt !== null && now - shutdownAt > t.overdueGraceMs) {
      return {
        action: "terminate",
        reason: "overdue",
        detail: `shutdown_at ${hb.shutdown_at} (${hb.shutdown_reason}) passed ${minutes(now - shutdownAt)} ago`,
      };
    }
    if (now - receivedAt > t.staleMs) {
      return {
        action: "terminate",
        reason: "stale_heartbeat",
        detail: `last heartbeat received ${minutes(now - receivedAt)} ago`,
      };
    }
  } else {
    const launched = unixTagMs(instance, TAG_LAUNCHED_AT) ?? status.first_seen;
    if (now - launched > t.bootGraceMs) {
      return {
        action: "terminate",
        reason: "no_heartbeat",
        detail: `no heartbeat ${minutes(now - launched)} after launch`,
      };
    }
  }

  if (STUCK_STATUSES.has(instance.status) && status.status === instance.status && now - status.since > t.stuckMs) {
    return {
      action: "terminate",
      reason: "stuck",
      detail: `${instance.status} for ${minutes(now - status.since)}`,
    };
  }
  return { action: "keep" };
}
