//! The HTTP API: routing, auth, body limits and JSON errors.
//!
//! | method path       | auth                      |
//! |-------------------|---------------------------|
//! | `GET /health`     | none; says ok/unhealthy only |
//! | `POST /heartbeat` | per-instance HMAC token   |
//! | `POST /events`    | `ADMIN_TOKEN`             |
//! | `GET /events`     | `ADMIN_TOKEN`             |
//! | `GET /instances`  | `ADMIN_TOKEN`             |
//!
//! Errors are `{"error": {"code", "message"}}`. Malformed input is a 4xx;
//! a 500 would mean a bug, and the catch-all still answers in JSON.

import { bearerToken, heartbeatToken, timingSafeEqualStrings } from "./crypto";
import { configProblems, type Env } from "./env";
import { eventKey, eventFits, listEvents, makeEvent, parseEventQuery, putEvent, validateEventInput } from "./events";
import { heartbeatRecord, validateHeartbeat } from "./heartbeat";
import { getLastRun, listHeartbeats, putHeartbeat } from "./store";

/** Largest request body accepted (as the daemon's API, DESIGN.md §3.2). */
export const MAX_BODY_BYTES = 16 * 1024;
/** `/health` turns unhealthy when the last recorded run is older than three
 * cron periods: the watchdog is not running. */
export const RUN_OVERDUE_MS = 15 * 60_000;

const ROUTES: Record<string, string[]> = {
  "/health": ["GET"],
  "/heartbeat": ["POST"],
  "/events": ["GET", "POST"],
  "/instances": ["GET"],
};

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store", ...headers },
  });
}

export function error(status: number, code: string, message: string, headers: Record<string, string> = {}): Response {
  return json({ error: { code, message } }, status, headers);
}

const unauthorized = (message: string) =>
  error(401, "unauthorized", message, { "www-authenticate": 'Bearer realm="soong-watchdog"' });
const storeMissing = () =>
  error(503, "store_unavailable", "the KV binding is missing; the watchdog refuses writes until it is configured");

type Body = { ok: true; value: unknown } | { ok: false; response: Response };

/** Reads a JSON body of at most `MAX_BODY_BYTES`, stopping as soon as the
 * limit is passed. */
async function readJson(request: Request): Promise<Body> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > MAX_BODY_BYTES) {
    return { ok: false, response: error(413, "body_too_large", `body over ${MAX_BODY_BYTES} bytes`) };
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (request.body !== null) {
    const reader = request.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > MAX_BODY_BYTES) {
        await reader.cancel();
        return { ok: false, response: error(413, "body_too_large", `body over ${MAX_BODY_BYTES} bytes`) };
      }
      chunks.push(value);
    }
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    return { ok: false, response: error(400, "invalid_body", "body is not UTF-8") };
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false, response: error(400, "invalid_body", "body is not JSON") };
  }
}

/** Checks `Authorization: Bearer <ADMIN_TOKEN>` in constant time. Returns
 * the response to send when the caller is not the admin. */
async function requireAdmin(request: Request, env: Env): Promise<Response | null> {
  if (!env.ADMIN_TOKEN) return error(503, "not_configured", "ADMIN_TOKEN is not set; admin endpoints are closed");
  const token = bearerToken(request.headers.get("authorization"));
  if (token === null) return unauthorized("missing bearer token");
  if (!(await timingSafeEqualStrings(token, env.ADMIN_TOKEN))) return unauthorized("invalid token");
  return null;
}

async function health(env: Env, now: number): Promise<Response> {
  const unhealthy = () => json({ status: "unhealthy" }, 503);
  if (configProblems(env).length > 0 || !env.SOONG_KV) return unhealthy();
  try {
    const last = await getLastRun(env.SOONG_KV);
    if (last !== null && (!last.ok || now - Date.parse(last.at) > RUN_OVERDUE_MS)) return unhealthy();
  } catch {
    return unhealthy();
  }
  return json({ status: "ok" });
}

async function postHeartbeat(request: Request, env: Env, now: number): Promise<Response> {
  const token = bearerToken(request.headers.get("authorization"));
  if (token === null) return unauthorized("missing bearer token");
  if (!env.WORKER_SECRET) return error(503, "not_configured", "WORKER_SECRET is not set");
  if (!env.SOONG_KV) return storeMissing();
  const body = await readJson(request);
  if (!body.ok) return body.response;
  const hb = validateHeartbeat(body.value);
  if (!hb.ok) return error(400, "invalid_heartbeat", hb.error);
  // The token is the MAC of the name in the body: a token made for another
  // instance's name cannot match, so nobody speaks for another instance.
  const expected = await heartbeatToken(env.WORKER_SECRET, hb.value.instance_name);
  if (!(await timingSafeEqualStrings(token, expected))) {
    return unauthorized("token does not match instance_name");
  }
  const rec = heartbeatRecord(hb.value, now);
  await putHeartbeat(env.SOONG_KV, rec);
  return json({ ok: true, received_at: rec.received_at });
}

async function postEvent(request: Request, env: Env, now: number): Promise<Response> {
  if (!env.SOONG_KV) return storeMissing();
  const body = await readJson(request);
  if (!body.ok) return body.response;
  const input = validateEventInput(body.value);
  if (!input.ok) return error(400, "invalid_event", input.error);
  const ev = makeEvent(eventKey(now), input.value, "api");
  if (!eventFits(ev)) return error(413, "event_too_large", "event is over 1024 bytes as JSON");
  await putEvent(env.SOONG_KV, ev);
  return json({ event: ev }, 201);
}

async function getEvents(url: URL, env: Env): Promise<Response> {
  if (!env.SOONG_KV) return storeMissing();
  const q = parseEventQuery(url.searchParams);
  if (!q.ok) return error(400, "invalid_query", q.error);
  return json(await listEvents(env.SOONG_KV, q.value));
}

async function getInstances(env: Env, now: number): Promise<Response> {
  if (!env.SOONG_KV) return storeMissing();
  const hbs = await listHeartbeats(env.SOONG_KV);
  return json({
    instances: hbs.map((hb) => ({
      ...hb,
      heartbeat_age_seconds: Math.max(0, Math.round((now - Date.parse(hb.received_at)) / 1000)),
    })),
  });
}

/** The `fetch` handler's body, with the clock injected. */
export async function handle(request: Request, env: Env, now: number): Promise<Response> {
  const url = new URL(request.url);
  const methods = ROUTES[url.pathname];
  if (methods === undefined) return error(404, "not_found", "no such endpoint");
  if (!methods.includes(request.method)) {
    return error(405, "method_not_allowed", `use ${methods.join(" or ")}`, { allow: methods.join(", ") });
  }
  try {
    switch (`${request.method} ${url.pathname}`) {
      case "GET /health":
        return await health(env, now);
      case "POST /heartbeat":
        return await postHeartbeat(request, env, now);
    }
    const denied = await requireAdmin(request, env);
    if (denied) return denied;
    switch (`${request.method} ${url.pathname}`) {
      case "POST /events":
        return await postEvent(request, env, now);
      case "GET /events":
        return await getEvents(url, env);
      case "GET /instances":
        return await getInstances(env, now);
    }
    return error(404, "not_found", "no such endpoint");
  } catch (e) {
    // Store failures land here. No detail in the body: it could hold
    // internals; the log has it.
    console.error(`soong-watchdog: ${request.method} ${url.pathname}: ${e instanceof Error ? e.stack : String(e)}`);
    return error(503, "unavailable", "the watchdog could not complete the request; try again");
  }
}
