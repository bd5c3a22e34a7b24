import net from "node:net";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { AppError } from "../errors.ts";
import type { AppHooks, Handoff, LoadedApp, SessionApp } from "./app.ts";
import demoApp from "./demo_app.ts";

/** Names of applications built into the bundle. */
export const BUILTIN_APPS: Record<string, SessionApp> = { demo: demoApp };

/** A raw-mode app's factory: returns its server, or a promise of it (`await app.ready(); return app.server`). */
export type CreateServer = () => net.Server | Promise<net.Server>;

/**
 * How many listen() and close() calls a new server has seen: net.Server counts them in
 * `_listeningId` (Node.js, and Deno's node:net), and a pending listen() by host name checks the
 * count when its lookup returns, binding only if no close() came in between.
 */
const FRESH_LISTENING_ID = (new net.Server() as unknown as { _listeningId?: unknown })._listeningId;

/**
 * Whether listen() was called on `server`: bound, or still looking up the host name it was given
 * (`app.listen(3000, "localhost")`), when `listening` is false yet.
 */
function listenCalled(server: net.Server): boolean {
  const id = (server as unknown as { _listeningId?: unknown })._listeningId;
  return server.listening || (typeof id === "number" && typeof FRESH_LISTENING_ID === "number" && id !== FRESH_LISTENING_ID);
}

/**
 * The server of a raw-mode app (S6): `createServer()` awaited, and refused
 * when it is not a server, or when listen() was called on it — perilink
 * listens for it, and a server the app opened itself would take connections
 * perilink does not see and keep the process alive after every drain (it is
 * closed; one still looking up its host name then never binds).
 */
export async function rawServer(name: string, createServer: CreateServer): Promise<net.Server> {
  const server = (await createServer()) as net.Server | undefined;
  if (!server || typeof server.emit !== "function" || typeof server.close !== "function") {
    throw new AppError(`Cannot load app ${name}: createServer() must return (or resolve to) a node:net or node:http server`);
  }
  await new Promise((r) => setImmediate(r)); // a listen() may bind a moment later
  if (listenCalled(server)) {
    server.close();
    throw new AppError(
      `Cannot load app ${name}: the server createServer() returned listens already (it called listen() itself); return it without listening: perilink listens for it on the configured addresses`,
    );
  }
  return server;
}

const HOOKS = ["ready", "drain"] as const;

/**
 * The `ready` and `drain` hooks (docs/apps.md, "Upgrades") of the first
 * holder that has each: a raw-mode module's named exports, then its default
 * export; a session app's object. Called as methods of their holder.
 */
export function appHooks(name: string, holders: (Record<string, unknown> | undefined)[]): AppHooks {
  const hooks: AppHooks = {};
  for (const hook of HOOKS) {
    const holder = holders.find((h) => h?.[hook] !== undefined);
    if (!holder) continue;
    const fn = holder[hook];
    if (typeof fn !== "function") throw new AppError(`Cannot load app ${name}: its ${hook} export must be a function`);
    hooks[hook] = (handoff: Handoff) => (fn as (h: Handoff) => void | Promise<void>).call(holder, handoff);
  }
  return hooks;
}

/** Classifies a module's exports as a session app or a raw-mode server factory. */
export async function toLoadedApp(name: string, mod: Record<string, unknown>): Promise<LoadedApp> {
  const def = mod.default as Record<string, unknown> | undefined;
  const createServer = (mod.createServer ?? def?.createServer) as CreateServer | undefined;
  if (typeof createServer === "function") {
    const hooks = appHooks(name, [mod, def]);
    return { kind: "raw", name, server: await rawServer(name, createServer), hooks };
  }
  if (def && typeof def.request === "function") {
    if (def.message !== undefined && typeof def.message !== "function") {
      throw new AppError(`Cannot load app ${name}: its message export must be a function`);
    }
    return { kind: "session", name, app: def as unknown as SessionApp, hooks: appHooks(name, [def, mod]) };
  }
  throw new AppError(
    `Cannot load app ${name}: default-export { request(payload, ctx) } or export createServer(); see docs/apps.md`,
  );
}

/** Loads a built-in app by name, or a module by path. */
export async function loadApp(spec: string, cwd = process.cwd()): Promise<LoadedApp> {
  // Own names only: "constructor", "toString" or "__proto__" name no built-in app (they are paths then).
  const builtin = Object.hasOwn(BUILTIN_APPS, spec) ? BUILTIN_APPS[spec] : undefined;
  if (builtin) return { kind: "session", name: spec, app: builtin, hooks: {} };
  const url = pathToFileURL(path.resolve(cwd, spec)).href;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
  } catch (err) {
    throw new AppError(`Cannot load app ${spec}: ${(err as Error).message}`, { cause: err });
  }
  return toLoadedApp(spec, mod);
}
