import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { createEchoServer, RawRpcClient } from "../raw_rpc.ts";
import { checkEcho, type Contender } from "./types.ts";

/** The raw baseline: length-prefixed RPC over one TCP socket (bench/raw_rpc.ts). */
export const raw: Contender = {
  label: "raw TCP RPC",

  async serve() {
    const { server, handled } = createEchoServer();
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
    const client = await RawRpcClient.connect("127.0.0.1", port);
    return {
      send: async () => checkEcho(await client.request(payload), payload),
      info: () => ({ connections: 1 }),
      close: () => client.close(),
    };
  },
};
