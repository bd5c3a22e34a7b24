import { once } from "node:events";
import type net from "node:net";
import { checkEcho, type Contender } from "./contenders/types.ts";

/** A client of the length-prefixed echo RPC. */
export interface RpcClient {
  request(payload: Uint8Array): Promise<Buffer>;
  close(): Promise<void>;
  /** Facts for the report besides the connection count (e.g. the TLS version and cipher). */
  info?(): Record<string, unknown>;
}

/**
 * A contender on the length-prefixed echo RPC (bench/lib/raw_rpc.ts and its
 * variants): `createServer` makes the echo server, served on 127.0.0.1; each
 * client is one connection from `connect`.
 */
export function rpcContender(
  label: string,
  createServer: () => { server: net.Server; handled(): number },
  connect: (host: string, port: number) => Promise<RpcClient>,
): Contender {
  return {
    label,

    async serve() {
      const { server, handled } = createServer();
      server.listen(0, "127.0.0.1");
      await once(server, "listening");
      return {
        port: (server.address() as net.AddressInfo).port,
        handled,
        info: () => ({}),
        close: () => new Promise<void>((r) => server.close(() => r())),
      };
    },

    async connect(port, payload) {
      const client = await connect("127.0.0.1", port);
      return {
        send: async () => checkEcho(await client.request(payload), payload),
        info: () => ({ connections: 1, ...client.info?.() }),
        close: () => client.close(),
      };
    },
  };
}
