import tls from "node:tls";
import { BatchedRpcClient, serveBatchedEcho } from "../raw_rpc_batched.ts";
import { rpcContender, type RpcClient } from "../rpc_contender.ts";
import { benchTls, ensureBenchTls } from "../tls_cert.ts";
import type { Contender } from "./types.ts";

/**
 * The batched baseline (raw_batched.ts: the length-prefixed RPC, one write
 * per event-loop turn on both sides) carried over `node:tls`: TLS 1.3 with
 * Node's default cipher suites and settings, the benchmark's self-signed
 * certificate (bench/lib/tls_cert.ts), the client verifying it. Each turn's
 * write becomes one TLS record (or a few, at 16 KiB each). What an
 * encrypted, authenticated raw RPC costs on one Node connection.
 */

function createTlsBatchedEchoServer(): { server: tls.Server; handled(): number } {
  const { key, cert } = benchTls();
  let handled = 0;
  const server = tls.createServer({ key, cert, minVersion: "TLSv1.3" }, (socket) => {
    socket.setNoDelay(true);
    serveBatchedEcho(socket, () => handled++);
  });
  server.on("tlsClientError", () => {});
  return { server, handled: () => handled };
}

/** A TLS connection after its handshake, Nagle off, the server's certificate verified against the benchmark's. */
function connectTls(host: string, port: number): Promise<tls.TLSSocket> {
  const { cert } = benchTls();
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host, port, ca: cert, minVersion: "TLSv1.3" });
    socket.once("error", reject);
    socket.once("secureConnect", () => {
      socket.off("error", reject);
      socket.setNoDelay(true);
      resolve(socket);
    });
  });
}

async function connectClient(host: string, port: number): Promise<RpcClient> {
  const socket = await connectTls(host, port);
  const client = BatchedRpcClient.over(socket);
  return {
    request: (payload) => client.request(payload),
    close: () => client.close(),
    info: () => ({ protocol: socket.getProtocol(), cipher: socket.getCipher().standardName }),
  };
}

export const rawTls: Contender = {
  ...rpcContender("raw TCP RPC, batched, over TLS 1.3", createTlsBatchedEchoServer, connectClient),
  setup: ensureBenchTls,
};
