import { promises as fs } from "node:fs";
import path from "node:path";
import { SERVICE_TYPE } from "../protocol/dnssd.ts";

/** Where avahi-daemon reads static services (avahi.service(5)), and our file there. */
export const AVAHI_SERVICES_DIR = "/etc/avahi/services";
export const AVAHI_SERVICE_FILE = "perilink.service";

/** Text for an XML element or attribute: the five markup characters escaped, and controls XML 1.0 cannot hold left out. */
export function xmlText(s: string): string {
  return s
    .replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/g, "")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;");
}

/**
 * An avahi service file (avahi.service(5)) for the server: the instance is
 * the host name (avahi's `%h`, renamed by avahi on a conflict), the type
 * `_perilink._tcp`, the main port, and the same TXT strings the built-in
 * responder sends. Without a port, the file of a stopped server: a group
 * with no `<service>`. avahi-daemon accepts no file that advertises nothing
 * (static-services.c: "service group incomplete"), and one it fails to load
 * is one whose service it withdraws, with goodbyes; the file stays, as the
 * unit may write it but not remove it.
 */
export function avahiServiceXml(port: number | null, txt: readonly string[] = []): string {
  const type = SERVICE_TYPE.replace(/\.local$/, "");
  return [
    `<?xml version="1.0" standalone="no"?>`,
    `<!DOCTYPE service-group SYSTEM "avahi-service.dtd">`,
    `<!-- Written by perilink serve ("discovery" in its configuration); rewritten at each start${port === null ? "; stopped: nothing is advertised" : ""}. -->`,
    `<service-group>`,
    `  <name replace-wildcards="yes">%h</name>`,
    ...(port === null
      ? []
      : [`  <service>`, `    <type>${type}</type>`, `    <port>${port}</port>`, ...txt.map((t) => `    <txt-record>${xmlText(t)}</txt-record>`), `  </service>`]),
    `</service-group>`,
    ``,
  ].join("\n");
}

/**
 * Writes the service file into `dir` when its content changed. The file is
 * written in place, not renamed into place: the systemd unit lets the server
 * write that one file (the package creates it), not the directory.
 * Rejects with the file system's error (EACCES, EROFS, ENOENT).
 */
export async function writeAvahiService(dir: string, xml: string): Promise<string> {
  const file = path.join(dir, AVAHI_SERVICE_FILE);
  const now = await fs.readFile(file, "utf8").catch(() => null);
  if (now === xml) return file;
  const was = Math.floor(((await fs.stat(file).catch(() => null))?.mtimeMs ?? 0) / 1000);
  const f = await fs.open(file, "w", 0o644);
  try {
    await f.writeFile(xml);
    // avahi-daemon reloads a changed file only when its mtime's second is not the one it read: a
    // write within the same second moves the mtime on, before the close avahi is woken by.
    if (Math.floor((await f.stat()).mtimeMs / 1000) === was) await f.utimes(new Date(), was + 1);
  } finally {
    await f.close();
  }
  return file;
}
