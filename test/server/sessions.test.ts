import assert from "node:assert/strict";
import { test } from "node:test";
import { createLogger } from "../../src/logger.ts";
import { RemoteError, ServerBusyError } from "../../src/errors.ts";
import type { RequestContext, SessionApp } from "../../src/server/app.ts";
import { connect, portOf, sleep, testServer, waitFor } from "../helpers/fixtures.ts";

test("echoes requests of several channels multiplexed over one session", async () => {
  const server = await testServer();
  const s = await connect(server);
  const [a, b] = await Promise.all([s.openChannel("printer", "127.0.0.1", portOf(server)), s.openChannel("scanner")]);
  const replies = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? a! : b!).request(`req-${i}`)));
  replies.forEach((r, i) => assert.equal(r.toString(), `req-${i}`));
  assert.equal(server.status().sessions, 1);
  assert.equal(server.status().counters.requests, 100);
});

test("tells the application its channel's app id, the address asked for and the local address", async () => {
  let seen: RequestContext | undefined;
  const app: SessionApp = {
    request(_p, ctx) {
      seen = ctx;
      return JSON.stringify({ app: ctx.app, requestedHost: ctx.requestedHost, requestedPort: ctx.requestedPort, localAddress: ctx.localAddress, serverId: ctx.serverId });
    },
  };
  const server = await testServer({ appObject: app, listen: ["127.0.0.2:0"] });
  const s = await connect(server, "127.0.0.2");
  const ch = await s.openChannel("label-printer", "printer.local", 9100);
  const info = JSON.parse((await ch.request("x")).toString());
  assert.deepEqual(info, { app: "label-printer", requestedHost: "printer.local", requestedPort: 9100, localAddress: "127.0.0.2", serverId: server.serverId });
  assert.equal(seen?.signal.aborted, false);
});

test("carries one-way messages both ways", async () => {
  const got: string[] = [];
  const app: SessionApp = {
    request: () => "ok",
    message(payload, ctx) {
      got.push(Buffer.from(payload).toString());
      ctx.send(`ack:${Buffer.from(payload).toString()}`);
    },
  };
  const server = await testServer({ appObject: app });
  const ch = await (await connect(server)).openChannel("sensor");
  const acks: string[] = [];
  ch.on("message", (p: Buffer) => acks.push(p.toString()));
  ch.send("t=21.5");
  ch.send("t=21.6");
  await waitFor(() => acks.length === 2, "two acks");
  assert.deepEqual(got, ["t=21.5", "t=21.6"]);
  assert.deepEqual(acks, ["ack:t=21.5", "ack:t=21.6"]);
});

test("reports an application's exception to the caller as PERILINK_REMOTE_APP and keeps the session; its text only when the app exposes it", async () => {
  const lines: string[] = [];
  const app: SessionApp = {
    request(p) {
      const what = Buffer.from(p).toString();
      if (what === "boom") throw Object.assign(new Error("paper jam"), { expose: true });
      if (what === "bug") throw new Error("ENOENT: /var/lib/printer/secret-token.json");
      if (what === "reject") return Promise.reject("a string, not an Error");
      return p;
    },
  };
  const server = await testServer({ appObject: app, logger: createLogger("warn", (l) => lines.push(l)) });
  const ch = await (await connect(server)).openChannel("printer");
  await assert.rejects(ch.request("boom"), (e: unknown) => e instanceof RemoteError && e.code === "PERILINK_REMOTE_APP" && e.message === "paper jam");
  for (const what of ["bug", "reject"]) {
    await assert.rejects(ch.request(what), (e: unknown) => {
      assert.ok(e instanceof RemoteError && e.code === "PERILINK_REMOTE_APP");
      assert.doesNotMatch(e.message, /secret-token|a string/, "the client does not see what the app did not expose");
      assert.match(e.message, /"printer" could not answer this request/);
      return true;
    });
  }
  assert.equal((await ch.request("still here")).toString(), "still here");
  const logged = lines.map((l) => JSON.parse(l)).find((r) => r.event === "request_failed");
  assert.ok(logged, "the hidden error is logged for the operator");
  assert.equal(logged.error.message, "ENOENT: /var/lib/printer/secret-token.json");
  assert.match(logged.stack, /sessions\.test\.ts/);
});

test("refuses channels beyond maxChannelsPerSession with ServerBusyError", async () => {
  const server = await testServer({ limits: { maxChannelsPerSession: 3 } });
  const s = await connect(server);
  const open = [];
  for (let i = 0; i < 3; i++) open.push(await s.openChannel(`app${i}`));
  await assert.rejects(s.openChannel("one-too-many"), ServerBusyError);
  assert.equal((await open[2]!.request("open channels carry on")).toString(), "open channels carry on");
  open[0]!.close();
  await waitFor(() => server.status().counters.channelsOpen === 2, "the closed channel to free its slot");
  assert.equal((await (await s.openChannel("now-fits")).request("x")).toString(), "x");
});

test("never runs more than maxInflightPerSession requests of one session at once, and answers all", async () => {
  let running = 0;
  let peak = 0;
  const app: SessionApp = {
    async request(p) {
      running++;
      peak = Math.max(peak, running);
      await sleep(5);
      running--;
      return p;
    },
  };
  const server = await testServer({ appObject: app, limits: { maxInflightPerSession: 4 } });
  const ch = await (await connect(server)).openChannel("bulk");
  const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => ch.request(String(i))));
  replies.forEach((r, i) => assert.equal(r.toString(), String(i)));
  assert.equal(peak, 4);
});

test("aborts the handler's signal when the client cancels the request", async () => {
  let aborted = false;
  const app: SessionApp = {
    request(_p, ctx) {
      return new Promise((resolve) => {
        ctx.signal.addEventListener("abort", () => {
          aborted = true;
          resolve("late");
        });
      });
    },
  };
  const server = await testServer({ appObject: app });
  const ch = await (await connect(server)).openChannel("slow");
  const ac = new AbortController();
  const p = ch.request("wait", { signal: ac.signal });
  await sleep(50);
  ac.abort(new Error("user gave up"));
  await assert.rejects(p, /user gave up/);
  await waitFor(() => aborted, "the server-side abort");
  await waitFor(() => server.status().inflight === 0, "no request in flight");
});

test("close() on the client waits for its requests in flight, then the server forgets the session", async () => {
  const app: SessionApp = {
    async request(p) {
      await sleep(100);
      return p;
    },
  };
  const server = await testServer({ appObject: app });
  const s = await connect(server);
  const ch = await s.openChannel("a");
  const pending = [ch.request("1"), ch.request("2")];
  await s.close();
  assert.deepEqual((await Promise.all(pending)).map(String), ["1", "2"]);
  await waitFor(() => server.status().sessions === 0, "the server to close the session");
});

test("a cancelled request frees its in-flight slot even when every slot is taken by handlers that wait", async () => {
  const app: SessionApp = {
    request(p, ctx) {
      if (Buffer.from(p).toString() === "quick") return "done";
      return new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve("aborted")));
    },
  };
  const server = await testServer({ appObject: app, limits: { maxInflightPerSession: 2 } });
  const ch = await (await connect(server)).openChannel("waiters");
  const ac = [new AbortController(), new AbortController()];
  const waiting = ac.map((a) => ch.request("wait", { signal: a.signal }).catch((e: Error) => e.message));
  await waitFor(() => server.status().inflight === 2, "both slots taken");
  const quick = ch.request("quick"); // queued on the client: no slot
  await sleep(50);
  assert.equal(server.status().inflight, 2);
  ac[0]!.abort(new Error("gave up"));
  assert.equal((await quick).toString(), "done", "the cancel got through and its slot went to the queued request");
  assert.equal(await waiting[0], "gave up");
  ac[1]!.abort(new Error("gave up too"));
  assert.equal(await waiting[1], "gave up too");
  await waitFor(() => server.status().inflight === 0, "no request left");
});

test("closing a channel fails its requests at once and leaves other channels alone", async () => {
  const app: SessionApp = { request: (p, ctx) => (Buffer.from(p).toString() === "hang" ? new Promise((r) => ctx.signal.addEventListener("abort", () => r("x"))) : p) };
  const server = await testServer({ appObject: app });
  const s = await connect(server);
  const [a, b] = await Promise.all([s.openChannel("a"), s.openChannel("b")]);
  const hung = a.request("hang").then(() => "resolved", (e: Error) => (e as { code?: string }).code);
  await waitFor(() => server.status().inflight === 1, "the request to start");
  a.close();
  assert.equal(await hung, "PERILINK_SESSION_CLOSED");
  assert.equal((await b.request("b still works")).toString(), "b still works");
  await waitFor(() => server.status().inflight === 0, "the server to cancel it");
});
