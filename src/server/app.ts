import type net from "node:net";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { AppError } from "../errors.ts";
import demoApp from "../apps/demo.ts";

/** What an application learns about the channel a request or message arrived on. */
export interface ChannelContext {
  /** The application id the client named when it opened the channel. */
  readonly app: string;
  /** The address and port the client application asked for (it may have used a name). */
  readonly requestedHost: string;
  readonly requestedPort: number;
  /** The local address and port the session arrived on. */
  readonly localAddress: string;
  readonly localPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly serverId: string;
  readonly generation: number;
  readonly channel: number;
  /** Aborted when the client cancels, closes the channel, or the session ends. */
  readonly signal: AbortSignal;
  /** Sends a one-way message to the client on this channel. */
  send(payload: Uint8Array | string): void;
}

export interface RequestContext extends ChannelContext {
  readonly stream: number;
}

export type AppResult = Uint8Array | string | void | null | undefined;

/** A perilink application: request/response and, optionally, one-way messages. */
export interface SessionApp {
  request(payload: Uint8Array, ctx: RequestContext): AppResult | Promise<AppResult>;
  message?(payload: Uint8Array, ctx: ChannelContext): void | Promise<void>;
}

/** Raw mode (S6): any `node:net` server, e.g. an `http.Server`, hosted on the managed listeners. */
export interface RawApp {
  createServer(): net.Server;
}

export type LoadedApp = { kind: "session"; name: string; app: SessionApp } | { kind: "raw"; name: string; server: net.Server };

/** Names of applications built into the bundle. */
export const BUILTIN_APPS: Record<string, SessionApp> = { demo: demoApp };

/** Classifies a module's exports as a session app or a raw-mode server factory. */
export function toLoadedApp(name: string, mod: Record<string, unknown>): LoadedApp {
  const def = mod.default as Record<string, unknown> | undefined;
  const createServer = (mod.createServer ?? def?.createServer) as (() => net.Server) | undefined;
  if (typeof createServer === "function") {
    const server = createServer();
    if (!server || typeof (server as net.Server).emit !== "function" || typeof (server as net.Server).close !== "function") {
      throw new AppError(`Cannot load app ${name}: createServer() must return a node:net or node:http server`);
    }
    return { kind: "raw", name, server };
  }
  if (def && typeof def.request === "function") {
    if (def.message !== undefined && typeof def.message !== "function") {
      throw new AppError(`Cannot load app ${name}: its message export must be a function`);
    }
    return { kind: "session", name, app: def as unknown as SessionApp };
  }
  throw new AppError(
    `Cannot load app ${name}: default-export { request(payload, ctx) } or export createServer(); see docs/apps.md`,
  );
}

/** Loads a built-in app by name, or a module by path. */
export async function loadApp(spec: string, cwd = process.cwd()): Promise<LoadedApp> {
  const builtin = BUILTIN_APPS[spec];
  if (builtin) return { kind: "session", name: spec, app: builtin };
  const url = pathToFileURL(path.resolve(cwd, spec)).href;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
  } catch (err) {
    throw new AppError(`Cannot load app ${spec}: ${(err as Error).message}`, { cause: err });
  }
  return toLoadedApp(spec, mod);
}
