//! The scheduled run: gather inputs, call `decide`, execute, record.
//!
//! Failure policy. A run that cannot list instances does nothing and
//! records why. A run without a readable store (KV binding missing, or KV
//! failing) must not read "no heartbeat" into "no store": it enforces only
//! the hard deadline, whose inputs are the instance's own tags and the
//! clock, and logs what it terminates (there is nowhere to record events).
//! A run with invalid thresholds does the same: a mistyped threshold must
//! not become a mass termination.

import { parseApiUrl, parseThresholds, DEFAULT_MINUTES, type Env, type Thresholds } from "./env";
import { eventKey, makeEvent, putEvent, type EventInput } from "./events";
import type { HeartbeatRecord } from "./heartbeat";
import { LambdaClient, LambdaError, type LambdaClientOptions } from "./lambda";
import { decide, isManaged, nextStatusRecord, type Decision, type InstanceView, type StatusRecord } from "./rules";
import {
  deleteStatusRecord,
  getHeartbeat,
  listStatusRecords,
  putLastRun,
  putStatusRecord,
} from "./store";

export interface Termination {
  id: string;
  name: string | null;
  reason: string;
  detail: string;
  outcome: "terminating" | "already_gone" | "failed";
  error?: string;
}

export interface RunReport {
  /** False when the run could not do its job: no config, no list, or an
   * instance it decided to terminate is still running. */
  ok: boolean;
  /** False when heartbeat/status rules were off this run. */
  storeReadable: boolean;
  listed: number;
  managed: number;
  terminations: Termination[];
  skipped: string[];
  errors: string[];
}

export interface RunOptions {
  /** Overrides for the Lambda client (tests shorten pacing). */
  client?: Partial<LambdaClientOptions>;
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** One watchdog run at time `now` (epoch ms; the cron's scheduled time). */
export async function runWatchdog(env: Env, now: number, options: RunOptions = {}): Promise<RunReport> {
  const kv = env.SOONG_KV;
  const report: RunReport = {
    ok: true,
    storeReadable: kv !== undefined,
    listed: 0,
    managed: 0,
    terminations: [],
    skipped: [],
    errors: [],
  };

  // The run's clock: `now` advanced by the real time spent since the start,
  // so events made after a slow, paced terminate are stamped when they
  // happened, and tests that inject `now` get consistent timestamps.
  const started = Date.now();
  const clock = () => now + (Date.now() - started);

  // Events can only be recorded with a store; without one they go to the
  // log, which Workers Logs keeps.
  const record = async (input: EventInput): Promise<void> => {
    const line = `soong-watchdog ${input.type} ${input.instance_name ?? input.instance_id ?? ""} ${input.reason ?? ""} ${input.message ?? ""}`;
    if (input.type === "watchdog_error") console.error(line);
    else console.log(line);
    if (!kv) return;
    try {
      await putEvent(kv, makeEvent(eventKey(clock()), input, "watchdog"));
    } catch (e) {
      console.error(`soong-watchdog: could not record event: ${errText(e)}`);
    }
  };
  const fail = async (message: string, reason = "run"): Promise<void> => {
    report.errors.push(message);
    await record({ type: "watchdog_error", instance_id: null, instance_name: null, reason, message, data: null });
  };

  if (!kv) report.errors.push("KV binding SOONG_KV is missing: only hard deadlines are enforced");

  const url = parseApiUrl(env.LAMBDA_API_URL);
  if (!url.ok || !env.LAMBDA_API_KEY) {
    report.ok = false;
    await fail(url.ok ? "secret LAMBDA_API_KEY is not set" : url.error, "config");
    return finish(kv, report, now);
  }

  let thresholds: Thresholds;
  const parsed = parseThresholds(env);
  if (parsed.ok) thresholds = parsed.value;
  else {
    report.storeReadable = false;
    for (const e of parsed.errors) await fail(`${e}: only hard deadlines are enforced`, "config");
    // Unused while storeReadable is false; kept well-formed for decide().
    thresholds = {
      bootGraceMs: DEFAULT_MINUTES.BOOT_GRACE_MINUTES * 60_000,
      staleMs: DEFAULT_MINUTES.STALE_MINUTES * 60_000,
      overdueGraceMs: DEFAULT_MINUTES.OVERDUE_GRACE_MINUTES * 60_000,
      stuckMs: DEFAULT_MINUTES.STUCK_MINUTES * 60_000,
    };
  }

  const client = new LambdaClient({ baseUrl: url.value, apiKey: env.LAMBDA_API_KEY, ...options.client });
  let instances: InstanceView[];
  try {
    instances = await client.listInstances();
  } catch (e) {
    report.ok = false;
    await fail(`could not list instances: ${errText(e)}`, "list");
    return finish(kv, report, now);
  }
  report.listed = instances.length;
  const managed = instances.filter(isManaged);
  report.managed = managed.length;

  // Inputs from the store. Any read failure turns the store-based rules off
  // for this run rather than reading "unknown" as "missing".
  let statuses = new Map<string, StatusRecord>();
  const heartbeats = new Map<string, HeartbeatRecord | null>();
  if (kv && report.storeReadable) {
    try {
      statuses = await listStatusRecords(kv);
      await Promise.all(
        managed.map(async (i) => {
          heartbeats.set(i.id, i.name ? await getHeartbeat(kv, i.name) : null);
        }),
      );
    } catch (e) {
      report.storeReadable = false;
      await fail(`could not read the store: ${errText(e)}: only hard deadlines are enforced`, "store");
    }
  }

  const decisions: { instance: InstanceView; decision: Decision }[] = [];
  const statusWrites: [string, StatusRecord][] = [];
  for (const instance of managed) {
    const prev = statuses.get(instance.id) ?? null;
    const status = nextStatusRecord(prev, instance.status, now);
    if (status !== prev) statusWrites.push([instance.id, status]);
    const decision = decide({
      instance,
      heartbeat: heartbeats.get(instance.id) ?? null,
      status,
      thresholds,
      now,
      storeReadable: report.storeReadable,
    });
    decisions.push({ instance, decision });
  }

  // Remember first-seen statuses before acting, so a run that dies while
  // terminating still started the stuck clock. Forget instances that left
  // the list (including unmanaged ones that were once tagged).
  if (kv && report.storeReadable) {
    const listedIds = new Set(managed.map((i) => i.id));
    try {
      await Promise.all([
        ...statusWrites.map(([id, rec]) => putStatusRecord(kv, id, rec)),
        ...[...statuses.keys()].filter((id) => !listedIds.has(id)).map((id) => deleteStatusRecord(kv, id)),
      ]);
    } catch (e) {
      await fail(`could not write status records: ${errText(e)}`, "store");
    }
  }

  // Terminate one at a time: the client paces itself to the API's limit.
  for (const { instance, decision } of decisions) {
    if (decision.action === "skip") {
      report.skipped.push(instance.id);
      continue;
    }
    if (decision.action !== "terminate") continue;
    const t: Termination = {
      id: instance.id,
      name: instance.name ?? null,
      reason: decision.reason,
      detail: decision.detail,
      outcome: "failed",
    };
    try {
      const result = await client.terminate(instance.id);
      t.outcome = result.outcome;
      await record({
        type: "watchdog_terminate",
        instance_id: instance.id,
        instance_name: instance.name ?? null,
        reason: decision.reason,
        message: decision.detail,
        data: { outcome: result.outcome, status_before: instance.status },
      });
    } catch (e) {
      t.error = errText(e);
      // An instance the watchdog meant to stop is still billing: the run
      // failed at its job, and /health says so until a run succeeds.
      report.ok = false;
      report.errors.push(`could not terminate ${instance.id}: ${t.error}`);
      await record({
        type: "watchdog_error",
        instance_id: instance.id,
        instance_name: instance.name ?? null,
        reason: decision.reason,
        message: `could not terminate (${decision.detail}): ${t.error}`,
        data: { status: e instanceof LambdaError ? e.status : null, code: e instanceof LambdaError ? e.code : null },
      });
    }
    report.terminations.push(t);
  }
  return finish(kv, report, now);
}

async function finish(kv: KVNamespace | undefined, report: RunReport, now: number): Promise<RunReport> {
  if (kv) {
    try {
      await putLastRun(kv, {
        at: new Date(now).toISOString(),
        ok: report.ok,
        listed: report.listed,
        managed: report.managed,
        terminated: report.terminations.filter((t) => t.outcome !== "failed").length,
        errors: report.errors.length,
      });
    } catch (e) {
      console.error(`soong-watchdog: could not record the run: ${errText(e)}`);
    }
  }
  return report;
}
