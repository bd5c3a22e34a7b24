import type { Contender } from "./types.ts";

/**
 * Every contender by name, loaded on demand so that a process holds only the
 * code of the contender it runs. `raw` and `raw-batched` are the baselines the
 * others are compared with; `raw-tls` and `undici-https` are `raw-batched` and
 * `undici` over TLS 1.3.
 */
const LOADERS: Record<string, () => Promise<Contender>> = {
  perilink: async () => (await import("./perilink.ts")).perilink,
  raw: async () => (await import("./raw.ts")).raw,
  "raw-batched": async () => (await import("./raw_batched.ts")).rawBatched,
  "raw-tls": async () => (await import("./raw_tls.ts")).rawTls,
  undici: async () => (await import("./undici.ts")).undici,
  "undici-https": async () => (await import("./undici.ts")).undiciHttps,
  http2: async () => (await import("./http2.ts")).h2,
};

export const CONTENDER_NAMES = Object.keys(LOADERS);

export function loadContender(name: string): Promise<Contender> {
  const load = LOADERS[name];
  if (!load) throw new Error(`unknown contender "${name}"; known: ${CONTENDER_NAMES.join(", ")}`);
  return load();
}
