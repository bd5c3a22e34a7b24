import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { acceptRawConnections, closeRaw, isRawConnection, rawPeerAddress, socketOf, type RawConnection } from "../../src/runtime/raw_connections.ts";
import { waitFor } from "../helpers/fixtures.ts";

test("a listener's connections come as bare handles, no 'connection' event: the peer's address is read, a handle becomes a working Socket or is closed", async (t) => {
  let events = 0;
  const server = net.createServer({ pauseOnConnect: true }, () => events++);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  t.after(() => server.close());
  const got: RawConnection[] = [];
  if (!acceptRawConnections(server, (c) => got.push(c))) return t.skip("this runtime has no listening handle to take connections from");
  assert.equal(acceptRawConnections(server, () => assert.fail("installed twice")), true, "again on the same listener: nothing more");
  const port = (server.address() as net.AddressInfo).port;

  const client = net.connect(port, "127.0.0.1");
  client.write("ping");
  let answer = "";
  client.setEncoding("utf8").on("data", (s: string) => (answer += s));
  await waitFor(() => got.length === 1, "the bare handle");
  const conn = got[0]!;
  assert.equal(isRawConnection(conn), true);
  assert.equal(isRawConnection(client), false, "a Socket is not one");
  assert.equal(rawPeerAddress(conn), "127.0.0.1");
  const socket = socketOf(conn, false);
  let read = "";
  socket.setEncoding("utf8").on("data", (s: string) => {
    read += s;
    if (read === "ping") socket.end("pong");
  });
  await waitFor(() => answer === "pong", "the answer through the Socket made of the handle");
  client.destroy();

  const dropped = net.connect(port, "127.0.0.1");
  const closed = new Promise<void>((r) => dropped.on("close", () => r()));
  dropped.on("error", () => {});
  await waitFor(() => got.length === 2, "the second handle");
  closeRaw(got[1]!);
  await closed;
  assert.equal(events, 0, "no 'connection' event: no Socket was built for either");
});
