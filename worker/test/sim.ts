// A handle on one `lambda-sim` process for a test, started through the
// Node-side launcher (test/node/sim-launcher.ts). Everything here talks to
// the simulator over real HTTP on loopback.

import { inject } from "vitest";

export const SIM_API_KEY = "sim-api-key";

export interface SimInstance {
  id: string;
  name?: string;
  status: string;
  tags?: { key: string; value: string }[];
}

export interface SimRequest {
  seq: number;
  at: string;
  elapsed_ms: number;
  method: string;
  path: string;
  authorized: boolean;
  request: unknown;
  status: number;
}

/** A fast, unthrottled cloud: tests exercise the watchdog, not the pacing
 * (one test turns rate limiting back on to check the pacing). */
export const FAST_SCENARIO = {
  boot_delay: "0s",
  terminate_delay: "60s",
  gone_delay: "600s",
  rate_limit: { enabled: false },
  capacity: { gpu_1x_a10: { "us-west-1": 20 } },
};

export class Sim {
  private constructor(
    readonly id: number,
    /** `http://127.0.0.1:PORT` */
    readonly base: string,
    /** `http://127.0.0.1:PORT/api/v1`, the worker's LAMBDA_API_URL. */
    readonly api: string,
  ) {}

  static async start(scenario: Record<string, unknown> = FAST_SCENARIO): Promise<Sim> {
    const res = await fetch(`${inject("simLauncher")}/sims`, {
      method: "POST",
      body: JSON.stringify({ scenario }),
    });
    const body = (await res.json()) as { id: number; base: string; api: string; error?: string };
    if (res.status !== 201) throw new Error(`could not start lambda-sim: ${body.error}`);
    return new Sim(body.id, body.base, body.api);
  }

  async stop(): Promise<void> {
    await fetch(`${inject("simLauncher")}/sims/${this.id}`, { method: "DELETE" });
  }

  /** A call to the simulated Lambda API, as a client with the sim's key. */
  async call(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
    const res = await fetch(this.api + path, {
      method,
      headers: { authorization: `Bearer ${SIM_API_KEY}`, "content-type": "application/json" },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: await res.json() };
  }

  /** Launches an instance through the real launch endpoint and waits until
   * it has left `booting` (unless `waitActive` is false). */
  async launch(name: string, tags: { key: string; value: string }[], waitActive = true): Promise<string> {
    const keys = await this.call("GET", "/ssh-keys");
    const key = keys.body.data[0].name as string;
    const res = await this.call("POST", "/instance-operations/launch", {
      region_name: "us-west-1",
      instance_type_name: "gpu_1x_a10",
      ssh_key_names: [key],
      name,
      tags,
    });
    if (res.status !== 200) throw new Error(`launch failed: ${res.status} ${JSON.stringify(res.body)}`);
    const id = res.body.data.instance_ids[0] as string;
    if (waitActive) await this.waitFor(id, (s) => s !== "booting");
    return id;
  }

  /** Puts an instance straight into the account (sim control; no launch
   * pacing), for tests that need many instances under rate limiting. */
  async insert(name: string, tags: { key: string; value: string }[], status = "active"): Promise<string> {
    const res = await fetch(`${this.base}/sim/instances`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name, tags, status }),
    });
    if (res.status !== 200) throw new Error(`insert failed: ${res.status} ${await res.text()}`);
    return ((await res.json()) as { id: string }).id;
  }

  async instances(): Promise<SimInstance[]> {
    const list = await this.call("GET", "/instances");
    return list.body.data as SimInstance[];
  }

  async status(id: string): Promise<string | undefined> {
    return (await this.instances()).find((i) => i.id === id)?.status;
  }

  async waitFor(id: string, ok: (status: string | undefined) => boolean, timeoutMs = 10_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.status(id);
      if (ok(s)) return;
      if (Date.now() > until) throw new Error(`instance ${id} is still ${s}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async forceStatus(id: string, status: "unhealthy" | "booting" | "active"): Promise<void> {
    const res = await fetch(`${this.base}/sim/instances/${id}/status`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ status }),
    });
    if (res.status !== 204) throw new Error(`force status failed: ${res.status}`);
  }

  async setFaults(faults: Record<string, unknown>): Promise<void> {
    const res = await fetch(`${this.base}/sim/faults`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(faults),
    });
    if (!res.ok) throw new Error(`setting faults failed: ${res.status} ${await res.text()}`);
  }

  async requests(): Promise<SimRequest[]> {
    return (await (await fetch(`${this.base}/sim/requests`)).json()) as SimRequest[];
  }

  /** The instance ids the simulator was asked to terminate, in order. */
  async terminateCalls(): Promise<{ ids: string[]; status: number; at: number }[]> {
    return (await this.requests())
      .filter((r) => r.method === "POST" && r.path.endsWith("/instance-operations/terminate"))
      .map((r) => ({
        ids: ((r.request as { instance_ids?: string[] } | null)?.instance_ids ?? []) as string[],
        status: r.status,
        at: r.elapsed_ms,
      }));
  }
}
