import { readFileSync, writeFileSync } from "node:fs";
import { after } from "node:test";
import { detectRuntime } from "../../src/runtime/runtime.ts";

const MIGRATE_REQ = "/proc/sys/net/ipv4/tcp_migrate_req";

/**
 * Whether this runtime can upgrade in place here. Node hands the listening
 * sockets over; Deno binds the ports again with SO_REUSEPORT, which loses no
 * queued connection only when the kernel migrates them
 * (net.ipv4.tcp_migrate_req=1). It is set here for this network namespace
 * when we may (root), and restored after the test file: the hook is
 * registered when this module loads, so it belongs to the file.
 */
export const canHandOff: boolean = (() => {
  if (detectRuntime().handoff === "inherit") return true;
  try {
    const before = readFileSync(MIGRATE_REQ, "utf8").trim();
    if (before !== "1") {
      writeFileSync(MIGRATE_REQ, "1");
      after(() => writeFileSync(MIGRATE_REQ, before));
    }
    return true;
  } catch {
    return false;
  }
})();

/** True when the test must skip (call from the body: on Deno the `skip` option keeps after() hooks from running). */
export function skipUnlessHandoff(t: { skip(message?: string): void }): boolean {
  if (canHandOff) return false;
  t.skip(`a ${detectRuntime().handoff} handoff needs net.ipv4.tcp_migrate_req=1 (root)`);
  return true;
}
