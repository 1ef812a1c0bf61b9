// Vitest global setup, run in Node (not in workerd): a tiny loopback HTTP
// service that starts and stops `lambda-sim` processes on request.
//
// Tests run inside workerd, which cannot spawn processes, so each test asks
// this launcher for a fresh simulator with its own scenario:
//
//   POST   /sims        {"scenario": {...}, "args": [...]}  -> {"id", "base", "api"}
//   DELETE /sims/{id}                                        -> 204
//
// The binary is `LAMBDA_SIM_BIN` (default `../target/debug/lambda-sim`,
// relative to worker/). Every child is killed at teardown.

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    simLauncher: string;
  }
}

const READY = /^listening on (http:\/\/127\.0\.0\.1:\d+)\s*$/;
const START_TIMEOUT_MS = 20_000;

interface Sim {
  child: ChildProcess;
  stderr: string;
}

/** `LAMBDA_SIM_BIN`, relative paths taken from worker/ (as test.sh runs). */
function simBinary(): string {
  const workerDir = fileURLToPath(new URL("../../", import.meta.url));
  return resolve(workerDir, process.env.LAMBDA_SIM_BIN ?? "../target/debug/lambda-sim");
}

function startSim(dir: string, id: number, scenario: unknown, args: string[]): Promise<{ sim: Sim; base: string }> {
  const bin = simBinary();
  if (!existsSync(bin)) {
    return Promise.reject(
      new Error(`lambda-sim binary not found at ${bin}: run \`cargo build -p lambda-sim\` or set LAMBDA_SIM_BIN`),
    );
  }
  const argv = ["--listen", "127.0.0.1:0", ...args];
  if (scenario !== undefined && scenario !== null) {
    // YAML is a superset of JSON, so the scenario is written as JSON.
    const file = join(dir, `scenario-${id}.yaml`);
    writeFileSync(file, JSON.stringify(scenario, null, 2));
    argv.push("--scenario", file);
  }
  const child = spawn(bin, argv, { stdio: ["ignore", "pipe", "pipe"] });
  const sim: Sim = { child, stderr: "" };
  child.stderr?.on("data", (d: Buffer) => {
    sim.stderr = (sim.stderr + d.toString()).slice(-8000);
  });
  return new Promise((resolvePromise, reject) => {
    let out = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`lambda-sim did not print its address within ${START_TIMEOUT_MS} ms; stderr:\n${sim.stderr}`));
    }, START_TIMEOUT_MS);
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      const line = out.split("\n")[0] ?? "";
      if (out.includes("\n")) {
        const m = READY.exec(line);
        clearTimeout(timer);
        if (m?.[1]) resolvePromise({ sim, base: m[1] });
        else {
          child.kill("SIGKILL");
          reject(new Error(`lambda-sim printed ${JSON.stringify(line)} instead of "listening on http://127.0.0.1:PORT"`));
        }
      }
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`lambda-sim exited (${code ?? signal}) before it was ready; stderr:\n${sim.stderr}`));
    });
  });
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((res, rej) => {
    let s = "";
    req.on("data", (d: Buffer) => (s += d.toString()));
    req.on("end", () => res(s));
    req.on("error", rej);
  });
}

function send(res: ServerResponse, status: number, body?: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(body === undefined ? undefined : JSON.stringify(body));
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = mkdtempSync(join(tmpdir(), "soong-worker-test-"));
  const sims = new Map<number, Sim>();
  let next = 1;

  const server = createServer(async (req, res) => {
    try {
      if (req.method === "POST" && req.url === "/sims") {
        const body = JSON.parse((await readBody(req)) || "{}") as { scenario?: unknown; args?: string[] };
        const id = next++;
        const { sim, base } = await startSim(dir, id, body.scenario, body.args ?? []);
        sims.set(id, sim);
        return send(res, 201, { id, base, api: `${base}/api/v1` });
      }
      const m = /^\/sims\/(\d+)$/.exec(req.url ?? "");
      if (req.method === "DELETE" && m) {
        const sim = sims.get(Number(m[1]));
        sims.delete(Number(m[1]));
        sim?.child.kill("SIGTERM");
        return send(res, 204);
      }
      send(res, 404, { error: "no such route" });
    } catch (e) {
      send(res, 500, { error: e instanceof Error ? e.message : String(e) });
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const addr = server.address();
  if (addr === null || typeof addr === "string") throw new Error("launcher has no port");
  project.provide("simLauncher", `http://127.0.0.1:${addr.port}`);

  return async () => {
    for (const sim of sims.values()) sim.child.kill("SIGKILL");
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  };
}
