import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { test } from "node:test";
import { build } from "esbuild";
import * as full from "@leichtgewicht/dns-packet";
import { dnsRecordTypes } from "../../build/dns_record_types.ts";
import { ipv6Groups } from "../../src/address.ts";
import { REPO_ROOT } from "../helpers/cli.ts";
import { tempDir } from "../helpers/fixtures.ts";

/** dns-packet as the device bundles have it (build/dns_record_types.ts). */
async function bundledCodec(): Promise<typeof full> {
  const dir = tempDir();
  const entry = path.join(dir, "entry.mjs");
  writeFileSync(entry, `export * from "@leichtgewicht/dns-packet";\n`);
  const out = path.join(dir, "codec.mjs");
  await build({ entryPoints: [entry], outfile: out, bundle: true, platform: "node", format: "esm", minify: true, nodePaths: [path.join(REPO_ROOT, "node_modules")], plugins: [dnsRecordTypes], logLevel: "silent" });
  return (await import(pathToFileURL(out).href)) as typeof full;
}

const answer = full.encode({
  type: "response",
  id: 4242,
  flags: full.RECURSION_DESIRED | full.RECURSION_AVAILABLE,
  questions: [{ type: "AAAA", name: "drucker-büro.local", class: "IN" }],
  answers: [
    { type: "CNAME", name: "drucker-büro.local", ttl: 60, data: "printer.local" },
    { type: "AAAA", name: "printer.local", ttl: 60, data: "fe80::1" },
    { type: "AAAA", name: "printer.local", ttl: 60, data: "2001:db8::42:0:8a2e:370" },
    { type: "AAAA", name: "printer.local", ttl: 60, data: "::" },
    { type: "AAAA", name: "printer.local", ttl: 60, data: "2001:db8:1:2:3:4:5:6" },
    { type: "AAAA", name: "printer.local", ttl: 60, data: "0:0:1::1" },
    { type: "A", name: "printer.local", ttl: 60, data: "192.0.2.7" },
    { type: "PTR", name: "7.2.0.192.in-addr.arpa", ttl: 60, data: "printer.local" },
    { type: "TXT", name: "printer.local", ttl: 60, data: ["txtvers=1", "note=😀"] },
    { type: "SRV", name: "_ipp._tcp.local", ttl: 60, data: { port: 631, target: "printer.local" } },
    { type: "HINFO", name: "printer.local", ttl: 60, data: { cpu: "arm", os: "linux" } },
  ],
  additionals: [{ type: "OPT", name: ".", udpPayloadSize: 1232, extendedRcode: 0, flags: 0, options: [{ code: "PADDING", length: 4 }] } as unknown as full.Answer],
});

test("the bundles' DNS codec decodes A, AAAA, CNAME, PTR, SRV and TXT records and the header as the whole library does", async () => {
  const lean = await bundledCodec();
  const a = full.decode(answer);
  const b = lean.decode(answer);
  assert.equal(b.id, a.id);
  assert.equal(b.flags, a.flags);
  assert.equal((lean.decode as unknown as { bytes: number }).bytes, answer.length);
  assert.deepEqual(b.questions, a.questions, "a unicode name decodes the same");
  const kept = (p: typeof a) => (p.answers ?? []).filter((r) => ["A", "AAAA", "CNAME", "PTR", "SRV", "TXT"].includes(r.type));
  // Addresses as the same 16 bytes (the bundle writes IPv6 as RFC 5952 recommends: the longest zero run as "::").
  const norm = (p: typeof a) => kept(p).map((r) => (r.type === "AAAA" ? { ...r, data: ipv6Groups(r.data as string) } : r));
  assert.deepEqual(norm(b), norm(a));
  assert.deepEqual(kept(b).filter((r) => r.type === "AAAA").map((r) => r.data), ["fe80::1", "2001:db8::42:0:8a2e:370", "::", "2001:db8:1:2:3:4:5:6", "0:0:1::1"]);
  const aaaa = { type: "response" as const, id: 1, answers: [{ type: "AAAA" as const, name: "x", ttl: 1, data: "2001:db8::1" }, { type: "A" as const, name: "x", ttl: 1, data: "192.0.2.33" }] };
  assert.deepEqual(Buffer.from(lean.encode(aaaa)), Buffer.from(full.encode(aaaa)), "addresses encode the same");
  // Other types are kept as bytes, under their number; OPT's options too.
  const hinfo = (b.answers ?? []).find((r) => (r.type as string) === "UNKNOWN_13");
  assert.ok(hinfo && (hinfo as { data: unknown }).data instanceof Uint8Array, "HINFO kept as bytes");
  // What the mDNS responder sends (SRV, TXT, the cache-flush bit) encodes byte for byte the same.
  const srv = { type: "response" as const, id: 0, answers: [{ type: "SRV" as const, name: "pi._perilink._tcp.local", ttl: 120, flush: true, data: { port: 1025, target: "pi.local" } }, { type: "TXT" as const, name: "pi._perilink._tcp.local", ttl: 4500, data: ["id=x", "ports=1025"] }] as full.Answer[] };
  assert.deepEqual(Buffer.from(lean.encode(srv)), Buffer.from(full.encode(srv)), "SRV and TXT encode the same");
  assert.equal((b.additionals ?? [])[0]?.type, "OPT");
  // A query encodes byte for byte the same.
  const q = { type: "query" as const, id: 7, flags: 0, questions: [{ type: "A" as const, name: "host.example", class: "IN" as const }] };
  assert.deepEqual(Buffer.from(lean.encode(q)), Buffer.from(full.encode(q)));
});

/** "ok", or how a decoder refuses a message: it throws, or reads past its end (dns_message.ts refuses both). */
function verdict(codec: typeof full, msg: Uint8Array): string {
  try {
    codec.decode(msg);
    return (codec.decode as unknown as { bytes: number }).bytes > msg.length ? "refused" : "ok";
  } catch {
    return "refused";
  }
}

test("the device bundles' DNS codec refuses every truncation of an answer that the whole library refuses", async () => {
  const lean = await bundledCodec();
  for (let cut = 1; cut < answer.length; cut++) {
    const part = answer.subarray(0, cut);
    if (verdict(full, part) === "refused") assert.equal(verdict(lean, part), "refused", `cut at ${cut} of ${answer.length}`);
  }
});
