import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { test } from "node:test";
import { portOf, testServer } from "../helpers/fixtures.ts";

test("raw mode: an HTTP app's headersTimeout holds although perilink, not the app, listens — a client that trickles its headers is cut, others are served", async () => {
  const app = {
    createServer: () => {
      const s = http.createServer((_req, res) => res.end("ok"));
      s.headersTimeout = 400;
      s.requestTimeout = 600;
      (s as http.Server & { connectionsCheckingInterval: number }).connectionsCheckingInterval = 100;
      return s;
    },
  };
  const server = await testServer({ appObject: app });
  const port = portOf(server);
  const slow = net.connect(port, "127.0.0.1");
  let answer = "";
  slow.setEncoding("utf8").on("data", (d: string) => (answer += d));
  await new Promise((r) => slow.once("connect", r));
  slow.write("GET / HTTP/1.1\r\nHost: x\r\n");
  const trickle = setInterval(() => slow.writable && slow.write("X-a: b\r\n"), 100); // never the blank line
  const t0 = Date.now();
  const res = await fetch(`http://127.0.0.1:${port}/`);
  assert.equal(await res.text(), "ok", "another client is served meanwhile");
  await new Promise((r) => slow.once("close", r));
  clearInterval(trickle);
  assert.ok(Date.now() - t0 < 3000, `cut after ${Date.now() - t0} ms`);
  assert.match(answer, /^HTTP\/1\.1 408/);
});
