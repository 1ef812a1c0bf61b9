//! The Worker's bindings and their parsing into a typed `Config`.
//!
//! Parsing is separate from use so that a misconfigured deployment is
//! reported (by `/health` and as an event) instead of half-working.

/** What Cloudflare hands the Worker. Every field is optional on purpose:
 * a missing binding or secret is a state the Worker must survive and report,
 * not a type error that turns into a crash. */
export interface Env {
  /** KV namespace for heartbeats, first-seen statuses and events. */
  SOONG_KV?: KVNamespace;
  /** Lambda Cloud API base, e.g. `https://cloud.lambda.ai/api/v1`. */
  LAMBDA_API_URL?: string;
  BOOT_GRACE_MINUTES?: string | number;
  STALE_MINUTES?: string | number;
  OVERDUE_GRACE_MINUTES?: string | number;
  STUCK_MINUTES?: string | number;
  /** Secret: Lambda Cloud API key. */
  LAMBDA_API_KEY?: string;
  /** Secret: HMAC key from which each instance's heartbeat token is derived. */
  WORKER_SECRET?: string;
  /** Secret: Bearer token for the admin endpoints. */
  ADMIN_TOKEN?: string;
}

/** Thresholds of the scheduled rules, in milliseconds. */
export interface Thresholds {
  bootGraceMs: number;
  staleMs: number;
  overdueGraceMs: number;
  stuckMs: number;
}

export const DEFAULT_MINUTES = {
  BOOT_GRACE_MINUTES: 20,
  STALE_MINUTES: 15,
  OVERDUE_GRACE_MINUTES: 10,
  STUCK_MINUTES: 30,
} as const;

/** Upper bound for any threshold: a day. A larger value is almost certainly
 * a unit mistake (seconds for minutes), and would disable the watchdog. */
const MAX_MINUTES = 24 * 60;

export type ThresholdsResult = { ok: true; value: Thresholds } | { ok: false; errors: string[] };

/** Parses the four `*_MINUTES` vars. An unset var takes its default; a set
 * but invalid one is an error (never silently replaced by the default). */
export function parseThresholds(env: Env): ThresholdsResult {
  const errors: string[] = [];
  const read = (name: keyof typeof DEFAULT_MINUTES): number => {
    const raw = env[name];
    if (raw === undefined || raw === "") return DEFAULT_MINUTES[name];
    const n = typeof raw === "number" ? raw : /^\s*\d+(\.\d+)?\s*$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isFinite(n) || n <= 0 || n > MAX_MINUTES) {
      errors.push(`${name} must be a number of minutes in (0, ${MAX_MINUTES}], got ${JSON.stringify(raw)}`);
      return DEFAULT_MINUTES[name];
    }
    return n;
  };
  const minute = 60_000;
  const value: Thresholds = {
    bootGraceMs: read("BOOT_GRACE_MINUTES") * minute,
    staleMs: read("STALE_MINUTES") * minute,
    overdueGraceMs: read("OVERDUE_GRACE_MINUTES") * minute,
    stuckMs: read("STUCK_MINUTES") * minute,
  };
  return errors.length > 0 ? { ok: false, errors } : { ok: true, value };
}

/** Checks `LAMBDA_API_URL`: an absolute http(s) URL. Returns it without a
 * trailing slash, or an error message. */
export function parseApiUrl(raw: string | undefined): { ok: true; value: string } | { ok: false; error: string } {
  if (raw === undefined || raw === "") return { ok: false, error: "LAMBDA_API_URL is not set" };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, error: "LAMBDA_API_URL is not a URL" };
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    return { ok: false, error: "LAMBDA_API_URL must be http(s)" };
  }
  return { ok: true, value: raw.replace(/\/+$/, "") };
}

/** Every configuration problem, as messages without secret values. Empty
 * means the Worker can do everything it is meant to. */
export function configProblems(env: Env): string[] {
  const problems: string[] = [];
  if (!env.SOONG_KV) problems.push("KV binding SOONG_KV is missing");
  const url = parseApiUrl(env.LAMBDA_API_URL);
  if (!url.ok) problems.push(url.error);
  if (!env.LAMBDA_API_KEY) problems.push("secret LAMBDA_API_KEY is not set");
  if (!env.WORKER_SECRET) problems.push("secret WORKER_SECRET is not set");
  if (!env.ADMIN_TOKEN) problems.push("secret ADMIN_TOKEN is not set");
  const t = parseThresholds(env);
  if (!t.ok) problems.push(...t.errors);
  return problems;
}
