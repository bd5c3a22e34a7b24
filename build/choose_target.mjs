/**
 * Which build of perilink suits this machine (the npm package's `perilink`
 * runs that one; the Debian package installs the device build directly).
 * `PERILINK_TARGET` chooses by name. Otherwise: Deno runs the `deno` build;
 * a Raspberry Pi Zero 2 W or 3 (the same 512 MiB–1 GiB class), or any ARM
 * machine with at most 1 GiB of memory, the `pi-zero-2w` build with its
 * lower limits and heap budget; anything else `node20`.
 */
export const TARGETS = ["node20", "pi-zero-2w", "deno"];

/** The target for these facts: `{ env, isDeno, arch, totalMemBytes, model }` (model: /proc/device-tree/model, or ""). */
export function chooseTarget(facts) {
  const asked = facts.env.PERILINK_TARGET;
  if (asked !== undefined && asked !== "") {
    if (!TARGETS.includes(asked)) throw new Error(`PERILINK_TARGET="${asked}" is not a build of perilink; use one of ${TARGETS.join(", ")}`);
    return asked;
  }
  if (facts.isDeno) return "deno";
  if (/Raspberry Pi (Zero 2|3)\b/.test(facts.model)) return "pi-zero-2w";
  if ((facts.arch === "arm" || facts.arch === "arm64") && facts.totalMemBytes <= 1024 * 1024 * 1024) return "pi-zero-2w";
  return "node20";
}

/** This machine's facts. */
export async function machineFacts() {
  // Under Deno the build is known without asking the system (which would need --allow-sys).
  if (typeof globalThis.Deno !== "undefined") return { env: process.env, isDeno: true, arch: process.arch, totalMemBytes: 0, model: "" };
  const os = await import("node:os");
  const { readFileSync } = await import("node:fs");
  let model = "";
  try {
    model = readFileSync("/proc/device-tree/model", "utf8").replace(/\0/g, "");
  } catch {
    // not a device tree machine
  }
  return { env: process.env, isDeno: typeof globalThis.Deno !== "undefined", arch: process.arch, totalMemBytes: os.totalmem(), model };
}
