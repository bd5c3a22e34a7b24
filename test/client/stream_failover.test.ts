import assert from "node:assert/strict";
import crypto from "node:crypto";
import { after, test } from "node:test";
import { createClient } from "../../src/client/client.ts";
import type { RequestContext, SessionApp } from "../../src/server/app.ts";
import type { InterfaceAddress } from "../../src/server/interface_addresses.ts";
import { sleep, testServer, waitFor } from "../helpers/fixtures.ts";

const lo = (address: string, family: 4 | 6): InterfaceAddress => ({ address, family, iface: "lo", linkLocal: false });

/** Reads a streamed body slowly and answers with its length and hash. */
const slowSink: SessionApp = {
  streams: true,
  async request(_p: Uint8Array, ctx: RequestContext) {
    const h = crypto.createHash("sha256");
    let n = 0;
    for await (const chunk of ctx.body) {
      h.update(chunk);
      n += chunk.length;
      await sleep(2);
    }
    return `${n} ${h.digest("hex")}`;
  },
};

/** A server on 127.0.0.1 and ::1, and a client whose link rides 127.0.0.1 and knows ::1 (announced, proved). */
async function twoAddresses() {
  let addrs = [lo("127.0.0.1", 4), lo("::1", 6)];
  const server = await testServer({ appObject: slowSink, listen: ["auto:0"], interfaces: () => addrs, limits: { maxFrameBytes: 16 * 1024 } });
  const port = server.endpoints()[0]!.port;
  const client = createClient({ lingerMs: 0, stateDir: false });
  after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port, app: "sink" });
  await waitFor(() => client.addresses().some((r) => r.source === "server" && r.address === "::1" && r.serverId !== null), "::1 to be proved");
  const dropFirst = async (): Promise<void> => {
    addrs = [lo("::1", 6)]; // 127.0.0.1 leaves: its sessions end under the upload
    await server.rescan();
  };
  return { link, dropFirst };
}

test("a streamed upload cut by a failed session is not sent again unless idempotent: a one-shot stream fails PERILINK_OUTCOME_UNKNOWN", async () => {
  const { link, dropFirst } = await twoAddresses();
  async function* oneShot(): AsyncGenerator<Uint8Array> {
    for (let i = 0; i < 400; i++) yield Buffer.alloc(4096, i);
  }
  const upload = link.request(oneShot(), { idempotent: true, timeoutMs: 10_000 });
  await sleep(150);
  await dropFirst();
  await assert.rejects(upload, (e: unknown) => (e as { code?: string }).code === "PERILINK_OUTCOME_UNKNOWN" && /cannot be sent again/.test((e as Error).message));
  assert.equal((await link.request("after")).toString().split(" ")[0], "5", "the link carries on, on ::1");
});

test("an idempotent upload of bytes or a Blob cut by a failed session is sent again whole on the server's other address", async () => {
  const { link, dropFirst } = await twoAddresses();
  const body = crypto.randomBytes(1_600_000);
  const want = `${body.length} ${crypto.createHash("sha256").update(body).digest("hex")}`;
  const upload = link.request(new Blob([body]), { idempotent: true, timeoutMs: 20_000 });
  await sleep(150);
  await dropFirst();
  assert.equal((await upload).toString(), want);
});
