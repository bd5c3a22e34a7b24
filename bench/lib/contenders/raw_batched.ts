import { rpcContender } from "../rpc_contender.ts";
import { BatchedRpcClient, createBatchedEchoServer } from "../raw_rpc_batched.ts";

/**
 * The batched baseline: the raw length-prefixed RPC with one write per
 * event-loop turn on both sides (bench/lib/raw_rpc_batched.ts), as perilink's
 * FrameWriter writes: the practical limit for Node on one connection.
 */
export const rawBatched = rpcContender("raw TCP RPC, batched per turn", createBatchedEchoServer, (host, port) => BatchedRpcClient.connect(host, port));
