import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_LINE_PREFERENCE, lineScore, normalizePreference, parseLinePreference } from "../../src/client/line/line_score.ts";
import { compareDestinations } from "../../src/client/line/rfc6724.ts";

const direct = { bandwidthMbps: 10_000, routers: 0, pathMtu: 1500, rttMs: 0.2 };
const routed = { bandwidthMbps: 10_000, routers: 1, pathMtu: 1400, rttMs: 0.4 };

test("the default preference scores a direct 1500-MTU line above a routed 1400-MTU one", () => {
  const d = lineScore(direct, DEFAULT_LINE_PREFERENCE);
  const r = lineScore(routed, DEFAULT_LINE_PREFERENCE);
  assert.ok(d > r, `${d} > ${r}`);
  assert.ok(d <= 100 && r >= 0);
});

test("weights decide: bandwidth only prefers the faster line whatever its routers and MTU", () => {
  const p = normalizePreference({ bandwidth: 1 });
  assert.ok(lineScore({ ...direct, bandwidthMbps: 5 }, p) < lineScore(routed, p));
  assert.equal(lineScore(routed, p), 100);
  assert.equal(lineScore({ bandwidthMbps: 100, routers: null, pathMtu: null, rttMs: null }, p), 50);
});

test("a measure that is not known counts half", () => {
  assert.equal(lineScore({ bandwidthMbps: null, routers: null, pathMtu: null, rttMs: null }, DEFAULT_LINE_PREFERENCE), 50);
});

test("bad preferences are TypeError or RangeError; --prefer reads name=weight pairs", () => {
  assert.throws(() => normalizePreference({ speed: 1 } as never), TypeError);
  assert.throws(() => normalizePreference({ hops: -1 }), RangeError);
  assert.throws(() => normalizePreference({ hops: 0 }), RangeError);
  assert.throws(() => normalizePreference({ rtt: Number.NaN }), RangeError);
  assert.deepEqual(parseLinePreference("bandwidth=3, hops=1"), { bandwidth: 3, hops: 1, mtu: 0, rtt: 0 });
  assert.throws(() => parseLinePreference("fast"), RangeError);
  assert.throws(() => parseLinePreference("colour=1"), TypeError);
});

test("RFC 6724 order for equal lines: IPv6 global before IPv4 before ULA; smaller scope first at equal precedence", () => {
  const sorted = ["fd00::1", "192.0.2.1", "2a00::1"].sort(compareDestinations);
  assert.deepEqual(sorted, ["2a00::1", "192.0.2.1", "fd00::1"]);
  assert.ok(compareDestinations("fe80::1%eth0", "2a00::1") < 0, "link-local before global (rule 8)");
  assert.ok(compareDestinations("::1", "2a00::1") < 0, "loopback first (precedence 50)");
  assert.equal(compareDestinations("printer.local", "192.0.2.1"), 0, "names keep their place");
});
