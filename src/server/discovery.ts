import { promises as fs } from "node:fs";
import os from "node:os";
import type { Logger } from "../logger.ts";
import { SERVICE_TYPE, encodeTxt, instanceLabel, localHostName } from "../protocol/dnssd.ts";
import { keyFingerprint } from "../protocol/keys.ts";
import { VERSION } from "../version.ts";
import { AVAHI_SERVICES_DIR, avahiServiceXml, writeAvahiService } from "./avahi_service.ts";
import { linkAddresses, type ServiceRecords } from "./dnssd_records.ts";
import { DnssdResponder } from "./dnssd_responder.ts";

/**
 * How the server makes itself found on the LAN (DNS-SD over mDNS):
 * `off` (the default: nothing is multicast), `builtin` (its own small
 * responder on UDP 5353), `avahi` (a service file for the host's
 * avahi-daemon), `auto` (avahi when its services directory exists, else builtin).
 */
export type Advertise = "off" | "builtin" | "avahi" | "auto";
export const ADVERTISE_MODES: readonly Advertise[] = ["off", "builtin", "avahi", "auto"];

export interface DiscoveryConfig {
  advertise: Advertise;
}

/** One running advertisement. */
export interface Advertiser {
  readonly kind: "builtin" | "avahi";
  /** The listeners changed (a rescan): announce the new addresses. */
  changed(): void;
  /** Stops; `goodbye` withdraws the records (not after a handover: the new process advertises on). */
  close(goodbye: boolean): Promise<void>;
}

/** What discovery reads of the server (a `PerilinkServer` is one). */
export interface DiscoveryContext {
  readonly serverId: string;
  readonly identity: { readonly publicKey: Uint8Array };
  /** The listening endpoints, asked at start and at each change. */
  endpoints(): readonly { address: string; port: number }[];
  readonly log: Logger;
  /** Seams for tests: the avahi directory, the host name, the mDNS port. */
  avahiDir?: string;
  hostname?: string;
  mdnsPort?: number;
}

/** The records the server advertises, or null when it listens nowhere (a service process of a group). */
export function serviceRecords(ctx: DiscoveryContext): ServiceRecords | null {
  const eps = ctx.endpoints();
  if (eps.length === 0) return null;
  const hostname = ctx.hostname ?? os.hostname();
  const ports = [...new Set(eps.map((e) => e.port))];
  return {
    instanceName: `${instanceLabel(hostname)}.${SERVICE_TYPE}`,
    host: localHostName(hostname),
    port: ports[0]!,
    txt: encodeTxt({ id: ctx.serverId, fp: keyFingerprint(ctx.identity.publicKey), ver: VERSION, ports }),
  };
}

/**
 * Starts what `config.advertise` asks for; null when it asks for nothing or
 * cannot (a warning says why and what to do). Never rejects: a server that
 * cannot advertise still serves.
 */
/**
 * Starts advertising as `config` says. `overtaken` is asked once it has
 * started: null, the server still wants it; true, it stopped meanwhile (the
 * advertising is withdrawn at once); false, it handed over (left to the new process).
 */
export async function startDiscovery(config: DiscoveryConfig, ctx: DiscoveryContext, overtaken: () => boolean | null = () => null): Promise<Advertiser | null> {
  if (config.advertise === "off") return null;
  try {
    const a = await advertise(config, ctx);
    const stopped = overtaken();
    if (a === null || stopped === null) return a;
    await a.close(stopped);
    return null;
  } catch (err) {
    ctx.log.warn("discovery_unavailable", { advertise: config.advertise, reason: (err as Error).message });
    return null;
  }
}

async function advertise(config: DiscoveryConfig, ctx: DiscoveryContext): Promise<Advertiser | null> {
  const records = serviceRecords(ctx);
  if (!records) return null;
  const dir = ctx.avahiDir ?? AVAHI_SERVICES_DIR;
  const hasAvahi = config.advertise !== "builtin" && (await fs.stat(dir).then((s) => s.isDirectory(), () => false));
  if (config.advertise === "avahi" && !hasAvahi) {
    ctx.log.warn("discovery_unavailable", { advertise: "avahi", reason: `no ${dir}: install avahi-daemon, or set "discovery": {"advertise": "builtin"}` });
    return null;
  }
  if (hasAvahi) {
    const write = async (r: ServiceRecords): Promise<boolean> => {
      try {
        const file = await writeAvahiService(dir, avahiServiceXml(r.port, r.txt));
        ctx.log.info("discovery_started", { advertise: "avahi", file });
        return true;
      } catch (err) {
        // avahi is there, so a second responder on this host would only compete with it.
        ctx.log.warn("discovery_unavailable", { advertise: "avahi", reason: `cannot write the avahi service file: ${(err as Error).message}; reinstall the package (it creates the file) or set "discovery": {"advertise": "off"}` });
        return false;
      }
    };
    if (!(await write(records))) return null;
    // Writes one after another, none after close(): a rescan's write still under way cannot land after the withdrawal.
    let writing: Promise<unknown> = Promise.resolve();
    let closed = false;
    return {
      kind: "avahi",
      changed: () => {
        const r = serviceRecords(ctx);
        if (closed || !r || (r.port === records.port && r.txt.join() === records.txt.join())) return;
        writing = writing.then(async () => {
          if (!closed && (await write(r))) Object.assign(records, r);
        });
      },
      // A stop withdraws the service; a handover does not: the new process has written its own file by then.
      close: async (goodbye) => {
        closed = true;
        await writing;
        if (goodbye) await writeAvahiService(dir, avahiServiceXml(null)).catch((err: Error) => ctx.log.warn("discovery_unavailable", { advertise: "avahi", reason: err.message }));
      },
    };
  }
  const responder = new DnssdResponder({ records, addresses: () => linkAddresses(ctx.endpoints()), log: ctx.log, ...(ctx.mdnsPort ? { port: ctx.mdnsPort } : {}) });
  await responder.start();
  ctx.log.info("discovery_started", { advertise: "builtin", instance: records.instanceName });
  return { kind: "builtin", changed: () => responder.changed(), close: (goodbye) => responder.close(goodbye) };
}
