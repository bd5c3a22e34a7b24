import { formatHostPort } from "../address.ts";
import { identifyUdp, type Identification } from "./identify.ts";
import { multicastRoutes, type Route } from "./names/interfaces.ts";
import { MDNS_GROUPS } from "./names/multicast_source.ts";
import { browseInstances, type FoundInstance } from "./names/service_browser.ts";

/** One server found on the LAN: what its signed probe proved, and what DNS-SD said about it. */
export interface BrowsedServer {
  /** Proven by the probe's signature. */
  serverId: string;
  keyFingerprint: string;
  generation: number;
  /** The DNS-SD instance names that led to it. */
  names: string[];
  /** `HOST:PORT` of each address that answered the probe. */
  addresses: string[];
  ports: number[];
  /** What the TXT said; a hint only. */
  version: string | null;
  /**
   * The TXT's id and key against the probe's: `matches`, `differs` (some
   * instance's TXT names another id or key: stale or lying; the probe wins),
   * `missing` (no instance's TXT names them: another responder registered it).
   */
  txt: "matches" | "differs" | "missing";
}

export interface BrowseServersOptions {
  /** How long to gather DNS-SD answers (default 1500 ms); the probes come after. */
  timeoutMs?: number;
  /** Per probe (default 1000 ms). */
  probeTimeoutMs?: number;
  /** Interfaces to browse on (default: every one with a non-loopback address). */
  interfaces?: readonly string[];
  /** Where the queries go (tests; default: the mDNS group on each interface). */
  routes?: Route[];
  maxInstances?: number;
  signal?: AbortSignal;
}

export const DEFAULT_BROWSE_TIMEOUT_MS = 1500;
/** Probes sent at most, however many addresses the answers hold. */
const MAX_PROBES = 128;
/** Probes aimed by what one responder answered (its instances' addresses). */
const PROBES_PER_SOURCE = 8;

/**
 * `perilink browse`: finds `_perilink._tcp` instances by mDNS, then probes
 * every address and port they name (the signed UDP probe, in parallel) and
 * groups what answered by proven server id. An instance no address of which
 * answers a good signature is left out: DNS-SD tells where to look, the
 * probe says who is there. Servers come sorted by their first name.
 */
export async function browseServers(o: BrowseServersOptions = {}): Promise<BrowsedServer[]> {
  const routes = o.routes ?? multicastRoutes(MDNS_GROUPS.v4, MDNS_GROUPS.v6, o.interfaces);
  const instances = await browseInstances(routes, { timeoutMs: o.timeoutMs ?? DEFAULT_BROWSE_TIMEOUT_MS, ...(o.maxInstances ? { maxInstances: o.maxInstances } : {}), ...(o.signal ? { signal: o.signal } : {}) });
  // Each address and port probed once, for every instance that names it.
  // At most PROBES_PER_SOURCE for what one responder answered: one host cannot aim many probes.
  const probes: { insts: FoundInstance[]; address: string; port: number }[] = [];
  const perSource = new Map<string, number>();
  for (const inst of instances) {
    for (const address of inst.addresses) {
      const same = probes.find((p) => p.address === address && p.port === inst.port);
      if (same) same.insts.push(inst);
      else if (probes.length < MAX_PROBES && (perSource.get(inst.from) ?? 0) < PROBES_PER_SOURCE) {
        probes.push({ insts: [inst], address, port: inst.port });
        perSource.set(inst.from, (perSource.get(inst.from) ?? 0) + 1);
      }
    }
  }
  const results = await Promise.all(
    probes.map((p) =>
      identifyUdp(p.address, p.port, { timeoutMs: o.probeTimeoutMs ?? 1000, attempts: 2, ...(o.signal ? { signal: o.signal } : {}) }).then(
        (id): [typeof p, Identification] | null => [p, id],
        () => null,
      ),
    ),
  );
  const byId = new Map<string, BrowsedServer>();
  for (const r of results) {
    if (!r) continue;
    const [{ insts, address, port }, id] = r;
    let s = byId.get(id.serverId);
    if (!s) {
      s = { serverId: id.serverId, keyFingerprint: id.keyFingerprint, generation: id.generation, names: [], addresses: [], ports: [], version: null, txt: "missing" };
      byId.set(id.serverId, s);
    }
    const where = formatHostPort(address, port);
    if (!s.addresses.includes(where)) s.addresses.push(where);
    for (const inst of insts) merge(s, inst, port, id);
  }
  return [...byId.values()].sort((a, b) => (a.names[0] ?? "").localeCompare(b.names[0] ?? ""));
}

/** What one instance adds to the server its address proved to be. */
function merge(s: BrowsedServer, inst: FoundInstance, port: number, id: Identification): void {
  if (!s.names.includes(inst.name)) s.names.push(inst.name);
  for (const p of [port, ...(inst.txt.ports ?? [])]) if (!s.ports.includes(p)) s.ports.push(p);
  const claims = inst.txt.id !== undefined || inst.txt.fp !== undefined;
  const honest = inst.txt.id === id.serverId && inst.txt.fp === id.keyFingerprint;
  if (claims && !honest) s.txt = "differs";
  else if (honest && s.txt === "missing") s.txt = "matches";
  // The version of a TXT that told the truth about the id wins over one that did not.
  if (honest && inst.txt.ver) s.version = inst.txt.ver;
  else if (s.version === null) s.version = inst.txt.ver ?? null;
}
