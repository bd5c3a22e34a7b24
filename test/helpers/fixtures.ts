import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after } from "node:test";
import { ClientSession } from "../../src/client/client_session.ts";
import { identifyUdp, type Identification } from "../../src/client/identify.ts";
import { silentLogger } from "../../src/logger.ts";
import { type PerilinkServer } from "../../src/server/server.ts";
import { startServer, type StartServerOptions } from "../../src/server/start_server.ts";

/**
 * Clients made without a `stateDir` keep their key and pins in the default
 * state directory, and `perilink call` too: in a test process, one of its
 * own (inherited by the processes it starts), never the user's.
 */
if (!process.env.PERILINK_STATE_DIR) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "perilink-test-home-"));
  process.env.PERILINK_STATE_DIR = dir;
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
}

/** A fresh temporary directory, removed after the test file. */
export function tempDir(prefix = "perilink-test-"): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  // Retried: a file written while the directory goes (a client saving its pins at close) is not a failure.
  after(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
  return dir;
}

/**
 * Starts a server on loopback with a temporary state directory; drained after
 * the test file. Any client may open channels (`access: "open"`) unless the
 * options say otherwise: the access tests pass `access: "keys"`.
 */
export async function testServer(options: StartServerOptions = {}): Promise<PerilinkServer> {
  const server = await startServer({
    listen: ["127.0.0.1:0"],
    stateDir: options.stateDir ?? tempDir(),
    logger: silentLogger,
    rescanIntervalMs: 0,
    access: "open",
    ...options,
  });
  after(() => server.drain(1000));
  return server;
}

/** The TCP port of the server's first endpoint. */
export function portOf(server: PerilinkServer): number {
  const ep = server.endpoints()[0];
  if (!ep) throw new Error("server has no endpoint");
  return ep.port;
}

/** A client session to the server's first endpoint; destroyed after the test file. */
export async function connect(server: PerilinkServer, host = "127.0.0.1"): Promise<ClientSession> {
  const s = await ClientSession.connect({ host, port: portOf(server), timeoutMs: 3000 });
  after(() => s.destroy());
  return s;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 20 ms until true or `timeoutMs` passes; then throws with `what`. */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A signed UDP probe of `host`:`port`, tried every 100 ms until one answers or `ms` has passed; `context` adds to the last error (a server's log, say). */
export async function probeUntil(host: string, port: number, ms: number, context?: () => string): Promise<Identification> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      return await identifyUdp(host, port, { timeoutMs: 300 });
    } catch (err) {
      if (Date.now() > end) throw context ? new Error(`${(err as Error).message}; ${context()}`) : err;
      await sleep(100);
    }
  }
}
