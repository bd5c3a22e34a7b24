/**
 * The one shape every name source has (C6). A source turns a name into
 * addresses, each with the time-to-live its service gave, or into nothing.
 * It never throws for what a peer sent: malformed, truncated, foreign or
 * late answers are ignored, and a silent service is an empty answer.
 */

/** Where a row of the address list came from (Fig. 16 of the seed, plus mDNS; `server`: the server's own ADDRESSES frame). */
export type SourceName = "hosts" | "dns" | "ptr" | "llmnr" | "netbios" | "mdns" | "numeric" | "server";

/**
 * The most addresses taken from one answer, and for one name from all the
 * sources of one resolution: a name with more is not a peripheral's, and an
 * answer listing thousands must not make the client work (or probe) for it.
 */
export const MAX_ADDRESSES_PER_NAME = 16;

/** One address a source found for a name. */
export interface NameAnswer {
  address: string;
  /** Seconds the service says the answer may be kept. */
  ttl: number;
}

/** The first MAX_ADDRESSES_PER_NAME distinct addresses of `answers`, in order (the first TTL given for each); reads no further. */
export function distinctAnswers(answers: Iterable<NameAnswer>): NameAnswer[] {
  const out = new Map<string, NameAnswer>();
  for (const a of answers) {
    if (!out.has(a.address)) out.set(a.address, a);
    if (out.size === MAX_ADDRESSES_PER_NAME) break;
  }
  return [...out.values()];
}

/** What every query of a source gets: its deadline and the client's shutdown signal. */
export interface QueryContext {
  timeoutMs: number;
  signal?: AbortSignal | undefined;
}

export interface NameSource {
  readonly name: Exclude<SourceName, "numeric" | "ptr">;
  /** Whether the standards let this source answer for `name` (e.g. LLMNR only for single labels). */
  accepts(name: string): boolean;
  resolve(name: string, ctx: QueryContext): Promise<NameAnswer[]>;
}

/** A UDP destination: `address` numeric, IPv6 possibly with a zone. */
export interface Endpoint {
  address: string;
  port: number;
}

/** Lower-cases and drops one trailing dot: `PeriSrv.Test.` → `perisrv.test`. */
export function normalizeName(name: string): string {
  const n = name.toLowerCase();
  return n.endsWith(".") ? n.slice(0, -1) : n;
}

/** A single-label name (no dot): what LLMNR and NetBIOS answer for. */
export function isSingleLabel(name: string): boolean {
  const n = normalizeName(name);
  return n.length > 0 && !n.includes(".");
}

/** A `.local` name: what mDNS answers for. */
export function isLocalName(name: string): boolean {
  return normalizeName(name).endsWith(".local");
}
