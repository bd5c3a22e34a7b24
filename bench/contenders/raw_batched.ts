import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { BatchedRpcClient, createBatchedEchoServer } from "../raw_rpc_batched.ts";
import { checkEcho, type Contender } from "./types.ts";

/**
 * The batched baseline: the raw length-prefixed RPC with one write per
 * event-loop turn on both sides (bench/raw_rpc_batched.ts), as perilink's
 * FrameWriter writes: the practical limit for Node on one connection.
 */
export const rawBatched: Contender = {
  label: "raw TCP RPC, batched per turn",

  async serve() {
    const { server, handled } = createBatchedEchoServer();
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    return {
      port: (server.address() as AddressInfo).port,
      handled,
      info: () => ({}),
      close: () => new Promise<void>((r) => server.close(() => r())),
    };
  },

  async connect(port, payload) {
    const client = await BatchedRpcClient.connect("127.0.0.1", port);
    return {
      send: async () => checkEcho(await client.request(payload), payload),
      info: () => ({ connections: 1 }),
      close: () => client.close(),
    };
  },
};
