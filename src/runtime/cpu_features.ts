import { readFileSync } from "node:fs";

let aes: boolean | null = null;

/**
 * Whether this CPU has AES instructions (the "aes" flag of /proc/cpuinfo: x86
 * AES-NI, the Armv8 crypto extension). The Raspberry Pi Zero 2 W and Pi 4
 * have none. False where it cannot be read.
 */
export function hasAesInstructions(): boolean {
  if (aes === null) {
    try {
      aes = /\baes\b/.test(readFileSync("/proc/cpuinfo", "utf8"));
    } catch {
      aes = false;
    }
  }
  return aes;
}
