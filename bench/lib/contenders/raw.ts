import { rpcContender } from "../rpc_contender.ts";
import { createEchoServer, RawRpcClient } from "../raw_rpc.ts";

/** The raw baseline: length-prefixed RPC over one TCP socket (bench/lib/raw_rpc.ts). */
export const raw = rpcContender("raw TCP RPC", createEchoServer, (host, port) => RawRpcClient.connect(host, port));
