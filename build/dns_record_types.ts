import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Plugin } from "esbuild";

/**
 * The DNS record types the bundles decode: the ones name resolution
 * reads (src/client/names/dns_message.ts), and SRV and TXT, which DNS-SD
 * browsing reads and the mDNS responder writes (src/client/names/service_browser.ts,
 * src/server/dnssd_records.ts). dns-packet decodes some twenty
 * types (SOA, RRSIG, NSEC3, CAA, …) from whatever a name service answers;
 * in the bundles every other type is kept as raw bytes (dns-packet's own
 * "unknown type" codec), so none of that parsing runs on answers from the
 * network, and the bundle is ~9 KiB smaller. The tests run the source
 * with the whole library; an answer's A, AAAA, PTR, CNAME, SRV and TXT records decode
 * the same in both.
 */
const KEPT = ["A", "AAAA", "PTR", "CNAME", "SRV", "TXT"] as const;
const CODEC_OF: Record<(typeof KEPT)[number], string> = { A: "ra", AAAA: "raaaa", PTR: "rptr", CNAME: "rptr", SRV: "rsrv", TXT: "rtxt" };

/**
 * dns-packet's UTF-8 codec (utf8-codec, written for browsers), as the
 * runtime's own Buffer does it. Encoding gives the same bytes for every
 * string (a lone surrogate becomes U+FFFD either way), and well-formed
 * UTF-8 decodes the same. Malformed input can decode differently: Buffer
 * replaces malformed bytes with U+FFFD, where utf8-codec decodes some as
 * characters (the overlong pair C0 AE as ".", an encoded lone surrogate as
 * that surrogate).
 */
const UTF8_WITH_BUFFER = `
export const name = "utf8";
export const encodingLength = (s) => Buffer.byteLength(s, "utf8");
export function encode(s, buf, offset) {
  offset ??= 0;
  buf ??= new Uint8Array(encodingLength(s) + offset);
  encode.bytes = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).write(s, offset, "utf8");
  return buf;
}
export const decode = (buf, start, end) => Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString("utf8", start, end);
`;

/**
 * A name table of dns-packet's (types, classes, opcodes, rcodes) with only
 * the names the bundles read: the records decoded, OPT (which dns-packet
 * reads apart), ANY, class IN; the header's opcode and rcode, which name
 * resolution reads as numbers from the flags. Other numbers get the names
 * dns-packet gives numbers it does not know (`UNKNOWN_<n>`).
 */
function nameTable(toNumber: string, names: Record<string, number>): string {
  return `
const N = ${JSON.stringify(names)};
const S = Object.fromEntries(Object.entries(N).map(([k, v]) => [v, k]));
export const toString = (n) => S[n] ?? "UNKNOWN_" + n;
export function ${toNumber}(name) {
  const u = name.toUpperCase();
  return N[u] ?? (u === "*" ? 255 : u.startsWith("UNKNOWN_") ? parseInt(name.slice(8)) : 0);
}
`;
}
const TABLES: Record<string, string> = {
  types: nameTable("toType", { A: 1, CNAME: 5, PTR: 12, TXT: 16, AAAA: 28, SRV: 33, OPT: 41, ANY: 255 }),
  classes: nameTable("toClass", { IN: 1, ANY: 255 }),
  opcodes: nameTable("toOpcode", { QUERY: 0 }),
  rcodes: nameTable("toRcode", { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 }),
};

/**
 * dns-packet's IP codec (ip-codec) from the project's own IPv6 parser
 * (src/address.ts, in the bundle already); decoded IPv6 addresses are
 * written as RFC 5952 recommends (the longest run of zero groups as "::").
 */
const IP_WITH_ADDRESS_TS = (addressTs: string): string => `
import { ipv6Groups } from ${JSON.stringify(addressTs)};
export const name = "ip";
export const v4 = {
  name: "v4",
  size: 4,
  encode(ip, buf, offset = 0) {
    buf ??= new Uint8Array(offset + 4);
    const p = ip.split(".");
    for (let i = 0; i < 4; i++) buf[offset + i] = Number(p[i]);
    return buf;
  },
  decode: (b, o = 0) => b[o] + "." + b[o + 1] + "." + b[o + 2] + "." + b[o + 3],
};
export const v6 = {
  name: "v6",
  size: 16,
  encode(ip, buf, offset = 0) {
    buf ??= new Uint8Array(offset + 16);
    const g = ipv6Groups(ip) ?? [];
    for (let i = 0; i < 8; i++) { buf[offset + 2 * i] = (g[i] ?? 0) >> 8; buf[offset + 2 * i + 1] = (g[i] ?? 0) & 255; }
    return buf;
  },
  decode(b, o = 0) {
    const g = [];
    for (let i = 0; i < 16; i += 2) g.push((b[o + i] << 8) | b[o + i + 1]);
    let at = -1, len = 0;
    for (let i = 0; i < 8; i++) {
      let n = 0;
      while (i + n < 8 && g[i + n] === 0) n++;
      if (n > len && n > 1) { at = i; len = n; }
    }
    const hex = (a) => a.map((x) => x.toString(16)).join(":");
    return at < 0 ? hex(g) : hex(g.slice(0, at)) + "::" + hex(g.slice(at + len));
  },
};
`;

export const dnsRecordTypes: Plugin = {
  name: "perilink-dns-record-types",
  setup(b) {
    b.onLoad({ filter: /@leichtgewicht[\\/]dns-packet[\\/](types|classes|opcodes|rcodes)\.mjs$/ }, (args) => ({ contents: TABLES[path.basename(args.path, ".mjs")]!, loader: "js" }));
    b.onLoad({ filter: /@leichtgewicht[\\/]ip-codec[\\/]index\.mjs$/ }, () => ({
      contents: IP_WITH_ADDRESS_TS(fileURLToPath(new URL("../src/address.ts", import.meta.url))),
      loader: "js",
      resolveDir: path.dirname(fileURLToPath(import.meta.url)),
    }));
    b.onLoad({ filter: /[\\/]utf8-codec[\\/]index\.mjs$/ }, () => ({ contents: UTF8_WITH_BUFFER, loader: "js" }));
    b.onLoad({ filter: /@leichtgewicht[\\/]dns-packet[\\/]index\.mjs$/ }, async (args) => {
      let text = await readFile(args.path, "utf8");
      const changed = (what: string): Error => new Error(`${args.path}: its ${what} has changed; update build/dns_record_types.ts`);
      // EDNS options (OPT) too are kept as bytes: nothing here sends OPT or reads its options.
      const opt = text.indexOf("const ropt = codec({");
      const optEnd = text.indexOf("\n})\n", opt);
      if (opt < 0 || optEnd < 0 || opt < text.indexOf("const runknown = codec({")) throw changed("OPT codec (ropt)");
      text = text.slice(0, opt) + "const ropt = runknown\n" + text.slice(optEnd + 4);
      const start = text.indexOf("function renc (type) {");
      const end = text.indexOf("return runknown\n}", start);
      if (start < 0 || end < 0 || !/= codec\(\{/.test(text)) throw changed("record-type switch (renc)");
      const cases = KEPT.map((t) => `    case '${t}': return ${CODEC_OF[t]}\n`).join("");
      text = text.slice(0, start) + `function renc (type) {\n  switch (type.toUpperCase()) {\n${cases}  }\n  ` + text.slice(end);
      // The codecs nothing leads to any more are dropped: codec() only builds an object.
      return { contents: text.replace(/= codec\(\{/g, "= /* @__PURE__ */ codec({"), loader: "js" };
    });
  },
};
