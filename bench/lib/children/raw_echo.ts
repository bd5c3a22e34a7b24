/**
 * The raw RPC echo server (bench/lib/raw_rpc.ts) as a program for any node,
 * bundled to plain JavaScript so an emulated ARM node runs it without tsx.
 * Prints its port on stdout; exits when stdin closes.
 */
import { createEchoServer } from "../raw_rpc.ts";

const { server } = createEchoServer();
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${(server.address() as { port: number }).port}\n`);
});
process.stdin.on("end", () => process.exit(0)).resume();
