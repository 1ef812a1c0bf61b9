// Calls into the Worker under test: HTTP through the runtime's own
// `exports.default.fetch`, and the scheduled handler with an env that points
// LAMBDA_API_URL at a simulator.

import { createScheduledController } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { heartbeatToken } from "../src/crypto";
import type { Env } from "../src/env";
import worker from "../src/index";

export const ORIGIN = "https://soong-watchdog.test";
export const ADMIN = { authorization: `Bearer ${env.ADMIN_TOKEN}` };

/** A request through the Worker's real fetch entry point. */
export function call(path: string, init: RequestInit = {}): Promise<Response> {
  return exports.default.fetch(new Request(ORIGIN + path, init));
}

/** The same handler, with a different env (e.g. the KV binding removed). */
export async function callWith(e: Env, path: string, init: RequestInit = {}): Promise<Response> {
  // The handler reads no `cf` properties; a plain Request stands in for an incoming one.
  return worker.fetch(new Request(ORIGIN + path, init) as Parameters<typeof worker.fetch>[0], e);
}

export async function admin(path: string, init: RequestInit = {}): Promise<Response> {
  return call(path, { ...init, headers: { ...ADMIN, ...(init.headers as Record<string, string> | undefined) } });
}

export async function postJson(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return call(path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

export interface HeartbeatBody {
  instance_id: string;
  instance_name: string;
  sent_at: string;
  state: "running" | "terminating";
  shutdown_at: string;
  shutdown_reason: "idle_timeout" | "lease_expired" | "hard_timeout" | "shutdown_requested";
  terminate_error: string | null;
}

export function heartbeatBody(id: string, name: string, over: Partial<HeartbeatBody> = {}): HeartbeatBody {
  const now = Date.now();
  return {
    instance_id: id,
    instance_name: name,
    sent_at: new Date(now).toISOString(),
    state: "running",
    shutdown_at: new Date(now + 30 * 60_000).toISOString(),
    shutdown_reason: "idle_timeout",
    terminate_error: null,
    ...over,
  };
}

/** Sends a heartbeat with the token the CLI would give that instance. */
export async function sendHeartbeat(body: HeartbeatBody, tokenFor: string = body.instance_name): Promise<Response> {
  const token = await heartbeatToken(env.WORKER_SECRET!, tokenFor);
  return postJson("/heartbeat", body, { authorization: `Bearer ${token}` });
}

/** Runs the scheduled handler as the cron would at `at` (epoch ms), with
 * `overrides` applied to the env. */
export async function cronAt(at: number, overrides: Partial<Env>): Promise<void> {
  await worker.scheduled(createScheduledController({ scheduledTime: at, cron: "*/5 * * * *" }), { ...env, ...overrides });
}

export interface EventOut {
  id: string;
  ts: string;
  type: string;
  source: string;
  instance_id: string | null;
  instance_name: string | null;
  reason: string | null;
  message: string | null;
  data: Record<string, unknown> | null;
}

/** Every event matching `query`, following cursors. */
export async function allEvents(query = ""): Promise<EventOut[]> {
  const out: EventOut[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 100; pages++) {
    const sep = query ? "&" : "";
    const res = await admin(`/events?${query}${cursor ? `${sep}cursor=${encodeURIComponent(cursor)}` : ""}`);
    if (res.status !== 200) throw new Error(`GET /events: ${res.status} ${await res.text()}`);
    const page = (await res.json()) as { events: EventOut[]; cursor: string | null };
    out.push(...page.events);
    if (page.cursor === null) return out;
    cursor = page.cursor;
  }
  throw new Error("too many pages");
}
