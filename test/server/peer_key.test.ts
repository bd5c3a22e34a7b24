import assert from "node:assert/strict";
import { test } from "node:test";
import { peerKey } from "../../src/server/peer_key.ts";

test("IPv6 addresses in one /64 share a key and another /64 gets another", () => {
  assert.equal(peerKey("2001:db8::1"), peerKey("2001:db8::2"));
  assert.equal(peerKey("2001:db8::1"), peerKey("2001:0db8:0000:0000:ffff:ffff:ffff:ffff"));
  assert.notEqual(peerKey("2001:db8::1"), peerKey("2001:db8:0:1::1"));
  assert.equal(peerKey("2001:db8:0:1::1"), peerKey("2001:DB8:0:1:abcd::9"));
  assert.equal(peerKey("2001:db8::1"), "2001:db8:0:0::/64");
  assert.equal(peerKey("::1"), "0:0:0:0::/64");
  assert.equal(peerKey("::"), "0:0:0:0::/64");
  assert.equal(peerKey("1:2:3:4:5:6:7:8"), "1:2:3:4::/64");
  assert.equal(peerKey("1:2:3:4::"), "1:2:3:4::/64");
});

test("regression: link-local peers are keyed by their whole address and zone, not lumped together by their shared fe80::/64", () => {
  assert.notEqual(peerKey("fe80::1%eth0"), peerKey("fe80::a00:27ff:fe4e:66a1%eth0"), "two hosts on one link are two peers");
  assert.equal(peerKey("fe80::1%eth0"), peerKey("fe80:0:0:0:0:0:0:1%eth0"), "one address, however written");
  assert.notEqual(peerKey("fe80::1%eth0"), peerKey("fe80::1%eth1"));
  assert.notEqual(peerKey("fe80::1%eth0"), peerKey("fe80::1"));
  assert.equal(peerKey("fe80::1%eth0"), "fe80:0:0:0:0:0:0:1%eth0");
});

test("IPv4 addresses are keyed by address, and IPv4-mapped IPv6 counts as IPv4", () => {
  assert.equal(peerKey("192.0.2.1"), "192.0.2.1");
  assert.notEqual(peerKey("192.0.2.1"), peerKey("192.0.2.2"));
  assert.equal(peerKey("::ffff:192.0.2.1"), "192.0.2.1");
  assert.equal(peerKey("::FFFF:192.0.2.1"), "192.0.2.1");
  assert.equal(peerKey("::ffff:c000:201"), "192.0.2.1");
  assert.equal(peerKey("0:0:0:0:0:ffff:127.0.0.1"), "127.0.0.1");
  assert.notEqual(peerKey("::ffff:192.0.2.1"), peerKey("::ffff:192.0.2.2"));
  // Not mapped: other prefixes that embed an IPv4 address are IPv6 peers.
  assert.equal(peerKey("64:ff9b::192.0.2.1"), "64:ff9b:0:0::/64");
  assert.equal(peerKey("::192.0.2.1"), "0:0:0:0::/64");
});

test("text that is not an IP address is its own key", () => {
  assert.equal(peerKey(""), "");
  assert.equal(peerKey("not:an:address:::"), "not:an:address:::");
  assert.equal(peerKey("1:2:3:4:5:6:7:8:9"), "1:2:3:4:5:6:7:8:9");
});
