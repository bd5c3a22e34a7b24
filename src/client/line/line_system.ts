/**
 * What the host's operating system says about the line to an address
 * (Linux; elsewhere every answer is null): the outgoing interface, the
 * path MTU the kernel has learned, the link's speed and MTU, and the rate
 * of a shaper on that interface. Each is one small read; this is the seam
 * tests replace.
 */
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";

export interface RouteInfo {
  dev: string;
  gateway: string | null;
  /** The kernel's learned path MTU for this destination, when it has one. */
  pmtu: number | null;
}

export interface LineSystem {
  route(address: string): Promise<RouteInfo | null>;
  /** `/sys/class/net/DEV/speed` in Mb/s, or null (virtual and wireless devices often have none). */
  linkSpeedMbps(dev: string): Promise<number | null>;
  linkMtu(dev: string): Promise<number | null>;
  /** The rate of a token-bucket shaper at the root of `dev` (tc tbf), in Mb/s, or null. */
  shaperRateMbps(dev: string): Promise<number | null>;
}

const EXEC_TIMEOUT_MS = 2000;

function execJson(cmd: string, args: string[]): Promise<unknown> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: EXEC_TIMEOUT_MS, killSignal: "SIGKILL" }, (err, stdout) => {
      if (err) return resolve(null);
      try {
        resolve(JSON.parse(String(stdout)) as unknown);
      } catch {
        resolve(null);
      }
    });
  });
}

async function readNumber(file: string): Promise<number | null> {
  try {
    const n = Number((await readFile(file, "utf8")).trim());
    return Number.isFinite(n) && n > 0 ? n : null;
  } catch {
    return null; // EINVAL for a device that does not know its speed
  }
}

/** Interface names as the kernel allows them: nothing that could leave /sys/class/net/. */
const DEV_NAME = /^[\w.:@-]{1,15}$/;

/** `ip -j route get`, `/sys/class/net/*` and `tc -j qdisc show`. */
export const linuxLineSystem: LineSystem = {
  async route(address) {
    if (process.platform !== "linux") return null;
    const pct = address.indexOf("%");
    const args = pct < 0 ? ["-j", "route", "get", address] : ["-j", "route", "get", address.slice(0, pct), "oif", address.slice(pct + 1)];
    const out = await execJson("ip", args);
    const r = Array.isArray(out) ? (out[0] as Record<string, unknown> | undefined) : undefined;
    if (!r || typeof r.dev !== "string" || !DEV_NAME.test(r.dev)) return null;
    let pmtu: number | null = null;
    if (Array.isArray(r.metrics)) {
      for (const m of r.metrics as Record<string, unknown>[]) if (typeof m?.mtu === "number") pmtu = m.mtu;
    }
    return { dev: r.dev, gateway: typeof r.gateway === "string" ? r.gateway : null, pmtu };
  },
  linkSpeedMbps(dev) {
    return DEV_NAME.test(dev) ? readNumber(`/sys/class/net/${dev}/speed`) : Promise.resolve(null);
  },
  linkMtu(dev) {
    return DEV_NAME.test(dev) ? readNumber(`/sys/class/net/${dev}/mtu`) : Promise.resolve(null);
  },
  async shaperRateMbps(dev) {
    if (process.platform !== "linux" || !DEV_NAME.test(dev)) return null;
    const out = await execJson("tc", ["-j", "qdisc", "show", "dev", dev]);
    if (!Array.isArray(out)) return null;
    for (const q of out as Record<string, unknown>[]) {
      const opts = q?.options as Record<string, unknown> | undefined;
      if (q?.root === true && q.kind === "tbf" && typeof opts?.rate === "number" && opts.rate > 0) return (opts.rate * 8) / 1e6;
    }
    return null;
  },
};
