/**
 * Starts real servers for the tests: tesserad (the binary from
 * TESSERAD_BIN, else target/debug/tesserad of this repository) on a free
 * loopback port with a generated API key, and a private redis-server.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

import { TesseraClient } from "../../src/index";

const REPO_ROOT = resolve(__dirname, "..", "..", "..", "..", "..");

export function tesseradBinary(): string {
  const binary = process.env.TESSERAD_BIN ?? join(REPO_ROOT, "target", "debug", "tesserad");
  if (!existsSync(binary)) {
    throw new Error(
      `no tesserad at ${binary}: set TESSERAD_BIN or build it (cargo build -p tesserad --bin tesserad)`,
    );
  }
  return binary;
}

export interface Tesserad {
  url: string;
  apiKey: string;
  client: TesseraClient;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

function stopChild(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  running.delete(child);
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    const force = setTimeout(() => child.kill("SIGKILL"), 5000);
    child.once("exit", () => {
      clearTimeout(force);
      done();
    });
    child.kill(signal);
  });
}

/** A tesserad on 127.0.0.1 with a memory store (or `store`) and extra flags. */
export async function startTesserad(options: { store?: string; args?: string[] } = {}): Promise<Tesserad> {
  const binary = tesseradBinary();
  const apiKey = `tsk_${randomBytes(32).toString("base64url")}`;
  const dataDir = mkdtempSync(join(tmpdir(), "tesserad-node-"));
  const child = spawn(
    binary,
    [
      "serve",
      "--listen", "127.0.0.1:0",
      "--store", options.store ?? "memory:",
      "--data-dir", dataDir,
      "--log-level", "warn",
      "--shutdown-grace", "1s",
      ...(options.args ?? []),
    ],
    // The key goes through the environment, not the command line.
    { env: { ...process.env, TESSERA_API_KEY: apiKey }, stdio: ["ignore", "pipe", "pipe"] },
  );
  running.add(child);
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const started = new Promise<string>((found, failed) => {
    let stdout = "";
    const timer = setTimeout(() => failed(new Error(`tesserad did not start within 20 s:\n${stderr}`)), 20_000);
    child.stdout!.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /^tesserad listening on (http:\/\/\S+)/m.exec(stdout);
      if (match) {
        clearTimeout(timer);
        found(match[1]!);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      failed(new Error(`tesserad exited (${code}) before listening:\n${stderr}`));
    });
  });
  let url: string;
  try {
    url = await started;
  } catch (error) {
    await stopChild(child, "SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
  const client = new TesseraClient({ baseUrl: url, apiKey, timeoutMs: 5000 });
  return {
    url,
    apiKey,
    client,
    async stop() {
      client.close();
      await stopChild(child);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A free loopback port (bound, read, released). */
export function freePort(): Promise<number> {
  return new Promise((found, failed) => {
    const server = createServer();
    server.once("error", failed);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => found(port));
    });
  });
}

export interface Redis {
  url: string;
  kill(): Promise<void>;
}

/** A private redis-server (no persistence) on a free loopback port. */
export async function startRedis(): Promise<Redis> {
  const port = await freePort();
  const binary = process.env.REDIS_SERVER ?? "redis-server";
  const child = spawn(
    binary,
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  running.add(child);
  const started = await new Promise<boolean>((resolveStart) => {
    child.once("error", () => resolveStart(false));
    const deadline = Date.now() + 10_000;
    const attempt = () => {
      const socket = createConnection({ host: "127.0.0.1", port }, () => {
        socket.end();
        resolveStart(true);
      });
      socket.once("error", () => {
        socket.destroy();
        if (Date.now() > deadline || child.exitCode !== null) resolveStart(false);
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
  if (!started) {
    await stopChild(child, "SIGKILL");
    throw new Error(`${binary} did not start on port ${port} (is redis-server installed?)`);
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    kill: () => stopChild(child, "SIGKILL"),
  };
}
