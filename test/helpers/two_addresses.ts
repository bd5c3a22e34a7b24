import { after } from "node:test";
import { createClient, type PerilinkClient } from "../../src/client/client.ts";
import type { Link } from "../../src/client/link.ts";
import type { InterfaceAddress } from "../../src/server/interface_addresses.ts";
import type { PerilinkServer } from "../../src/server/server.ts";
import type { StartServerOptions } from "../../src/server/start_server.ts";
import { testServer, waitFor } from "./fixtures.ts";

/** A loopback address as the device's interface list reports it (for `interfaces` of a test server). */
export const loopback = (address: string, family: 4 | 6): InterfaceAddress => ({ address, family, iface: "lo", linkLocal: false });

/**
 * A server listening on 127.0.0.1 and ::1 (`auto:0` over a fixed interface
 * list), and a client whose link rides 127.0.0.1 and knows ::1 only from the
 * server's own announcement, proved by a signed probe. `dropFirst()` takes
 * 127.0.0.1 off the device: its listener closes and its sessions end.
 */
export async function twoAddresses(options: StartServerOptions = {}, app = "a"): Promise<{ server: PerilinkServer; client: PerilinkClient; link: Link; dropFirst(): Promise<void> }> {
  let addrs = [loopback("127.0.0.1", 4), loopback("::1", 6)];
  const server = await testServer({ ...options, listen: ["auto:0"], interfaces: () => addrs });
  const client = createClient({ lingerMs: 0, stateDir: false });
  after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port: server.endpoints()[0]!.port, app });
  await waitFor(() => client.addresses().some((r) => r.source === "server" && r.address === "::1" && r.serverId === server.serverId), "::1 to be announced and proved");
  const dropFirst = async (): Promise<void> => {
    addrs = [loopback("::1", 6)];
    await server.rescan();
  };
  return { server, client, link, dropFirst };
}
