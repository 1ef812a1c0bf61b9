//! A small Lambda Cloud API v1 client: list instances, terminate one.
//!
//! It paces itself (one request per `minIntervalMs`, the API's documented
//! 1 request/s), puts a timeout on every request, and retries what is safe
//! to retry — both calls here are: a list is a GET and terminate is
//! idempotent — on 429, 5xx and network errors, with jittered exponential
//! backoff that honours `Retry-After`.

import type { InstanceView } from "./rules";

export interface LambdaClientOptions {
  /** API base, e.g. `https://cloud.lambda.ai/api/v1` (no trailing slash). */
  baseUrl: string;
  apiKey: string;
  /** Minimum time between the starts of two requests. */
  minIntervalMs?: number;
  /** Attempts per call, the first included. */
  maxAttempts?: number;
  /** Per-request timeout. */
  timeoutMs?: number;
  /** Longest wait between attempts; a larger `Retry-After` ends the call. */
  maxRetryDelayMs?: number;
  /** Injected for tests; defaults to the runtime's. */
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
  random?: () => number;
}

/** An API failure, carrying the API's error `code` where it sent one. */
export class LambdaError extends Error {
  constructor(
    message: string,
    readonly status: number | null,
    readonly code: string | null,
    readonly attempts: number,
  ) {
    super(message);
    this.name = "LambdaError";
  }
}

export type TerminateOutcome = { outcome: "terminating"; status: string | null } | { outcome: "already_gone" };

const NOT_FOUND_CODE = "global/object-does-not-exist";

/** Parses `Retry-After` (delta seconds or an HTTP date) to milliseconds. */
export function parseRetryAfter(value: string | null, now: number): number | null {
  if (value === null) return null;
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const at = Date.parse(v);
  if (Number.isFinite(at)) return Math.max(0, at - now);
  return null;
}

/** Backoff before attempt `attempt + 1` (attempt counts from 1): half-jitter
 * over an exponential ceiling from 500 ms; when the server sent
 * `Retry-After`, exactly that plus up to 250 ms of jitter (so several
 * clients told the same second do not return in step). */
export function retryDelay(attempt: number, retryAfterMs: number | null, random: number): number {
  const ceiling = Math.min(8_000, 500 * 2 ** (attempt - 1));
  const jittered = Math.round(ceiling / 2 + (random * ceiling) / 2);
  return retryAfterMs === null ? jittered : retryAfterMs + Math.round(random * 250);
}

function isRetryable(status: number): boolean {
  return status === 429 || (status >= 500 && status <= 599);
}

interface ApiErrorBody {
  error?: { code?: unknown; message?: unknown; suggestion?: unknown };
}

export class LambdaClient {
  private readonly o: Required<LambdaClientOptions>;
  private lastStart = Number.NEGATIVE_INFINITY;

  constructor(options: LambdaClientOptions) {
    this.o = {
      minIntervalMs: 1000,
      maxAttempts: 5,
      timeoutMs: 15_000,
      maxRetryDelayMs: 60_000,
      fetch: (input, init) => fetch(input, init),
      sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
      now: () => Date.now(),
      random: Math.random,
      ...options,
    };
  }

  /** `GET /instances`: every instance in the account. */
  async listInstances(): Promise<InstanceView[]> {
    const { body } = await this.call("GET", "/instances", undefined, () => false);
    const data = (body as { data?: unknown } | null)?.data;
    if (!Array.isArray(data)) throw new LambdaError("GET /instances: response has no `data` array", 200, null, 1);
    return data.filter(
      (i): i is InstanceView =>
        typeof i === "object" && i !== null && typeof i.id === "string" && typeof i.status === "string",
    );
  }

  /** `POST /instance-operations/terminate` for one instance. A 404 with
   * `global/object-does-not-exist` means it is already gone: success. */
  async terminate(id: string): Promise<TerminateOutcome> {
    let gone = false;
    const { body } = await this.call("POST", "/instance-operations/terminate", { instance_ids: [id] }, (status, code) => {
      gone = status === 404 && code === NOT_FOUND_CODE;
      return gone;
    });
    if (gone) return { outcome: "already_gone" };
    const list = (body as { data?: { terminated_instances?: unknown } } | null)?.data?.terminated_instances;
    const mine = Array.isArray(list)
      ? (list.find((i) => typeof i === "object" && i !== null && i.id === id) as { status?: unknown } | undefined)
      : undefined;
    return { outcome: "terminating", status: typeof mine?.status === "string" ? mine.status : null };
  }

  private async pace(): Promise<void> {
    const wait = this.lastStart + this.o.minIntervalMs - this.o.now();
    if (wait > 0) await this.o.sleep(wait);
    this.lastStart = this.o.now();
  }

  /** One API call with pacing, timeout and retries. `accept(status, code)`
   * lets a caller turn a specific error into success. */
  private async call(
    method: "GET" | "POST",
    path: string,
    json: unknown,
    accept: (status: number, code: string | null) => boolean,
  ): Promise<{ status: number; body: unknown }> {
    const what = `${method} ${path}`;
    let lastError: LambdaError | null = null;
    for (let attempt = 1; attempt <= this.o.maxAttempts; attempt++) {
      await this.pace();
      let res: Response;
      try {
        res = await this.o.fetch(this.o.baseUrl + path, {
          method,
          headers: {
            authorization: `Bearer ${this.o.apiKey}`,
            accept: "application/json",
            ...(json !== undefined ? { "content-type": "application/json" } : {}),
          },
          ...(json !== undefined ? { body: JSON.stringify(json) } : {}),
          signal: AbortSignal.timeout(this.o.timeoutMs),
        });
      } catch (e) {
        lastError = new LambdaError(`${what}: ${e instanceof Error ? e.message : String(e)}`, null, null, attempt);
        if (attempt < this.o.maxAttempts) await this.o.sleep(retryDelay(attempt, null, this.o.random()));
        continue;
      }
      let body: unknown = null;
      const text = await res.text();
      try {
        body = text.length > 0 ? JSON.parse(text) : null;
      } catch {
        body = null;
      }
      if (res.ok) {
        if (body === null) throw new LambdaError(`${what}: response is not JSON`, res.status, null, attempt);
        return { status: res.status, body };
      }
      const err = (body as ApiErrorBody | null)?.error;
      const code = typeof err?.code === "string" ? err.code : null;
      if (accept(res.status, code)) return { status: res.status, body };
      const message = typeof err?.message === "string" ? err.message : res.statusText || "no message";
      lastError = new LambdaError(`${what}: HTTP ${res.status} ${code ?? ""} ${message}`.replace(/\s+/g, " "), res.status, code, attempt);
      if (!isRetryable(res.status) || attempt === this.o.maxAttempts) throw lastError;
      const retryAfter = parseRetryAfter(res.headers.get("retry-after"), this.o.now());
      if (retryAfter !== null && retryAfter > this.o.maxRetryDelayMs) throw lastError;
      await this.o.sleep(Math.min(this.o.maxRetryDelayMs, retryDelay(attempt, retryAfter, this.o.random())));
    }
    throw lastError ?? new LambdaError(`${what}: no attempt made`, null, null, 0);
  }
}
