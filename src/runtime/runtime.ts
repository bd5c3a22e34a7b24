/**
 * The one place that knows Node.js from Deno. Everything else asks this
 * module what the runtime can do instead of testing for `Deno` itself.
 */

export type RuntimeName = "node" | "deno";

export interface RuntimeInfo {
  name: RuntimeName;
  version: string;
  /**
   * Whether a TCP listener can bind an IPv6 link-local address with a zone
   * (`fe80::1%eth0`). Deno's node:net rejects it with EINVAL.
   */
  canListenLinkLocal: boolean;
  /** Whether a child process can inherit and adopt a listening socket's file descriptor. */
  canInheritSockets: boolean;
}

interface DenoGlobal {
  version: { deno: string };
}

let cached: RuntimeInfo | undefined;

export function detectRuntime(): RuntimeInfo {
  if (cached) return cached;
  const deno = (globalThis as { Deno?: DenoGlobal }).Deno;
  cached = deno
    ? { name: "deno", version: deno.version.deno, canListenLinkLocal: false, canInheritSockets: false }
    : { name: "node", version: process.versions.node, canListenLinkLocal: true, canInheritSockets: true };
  return cached;
}
