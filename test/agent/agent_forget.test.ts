import assert from "node:assert/strict";
import path from "node:path";
import { after, test } from "node:test";
import { HostAgent } from "../../src/agent/host_agent.ts";
import { HostClient } from "../../src/agent/host_client.ts";
import { ServerChangedError } from "../../src/errors.ts";
import { silentLogger } from "../../src/logger.ts";
import { tempDir, testServer } from "../helpers/fixtures.ts";
import { freePort } from "../helpers/free_port.ts";

test("through the agent, forget() takes a replaced device out of the agent's known-servers record, which every process shares; agentAddresses() and agentMetrics() give the agent's addresses and counters", async () => {
  const port = await freePort();
  const printer = await testServer({ listen: [`127.0.0.1:${port}`] });
  const agent = await HostAgent.start({ socketPath: path.join(tempDir(), "f", "agent.sock"), client: { stateDir: false, lingerMs: 0 }, log: silentLogger });
  after(() => agent.close());
  const one = new HostClient({ agent: true, agentSocket: agent.socketPath });
  const other = new HostClient({ agent: true, agentSocket: agent.socketPath });
  after(() => Promise.all([one.close(), other.close()]));

  (await one.connect({ host: "127.0.0.1", port, app: "print" })).close();
  const rows = await other.agentAddresses();
  assert.ok(rows.some((r) => r.address === "127.0.0.1" && r.serverId === printer.serverId), `the agent's addresses: ${JSON.stringify(rows)}`);
  assert.deepEqual(other.addresses(), [], "this process's own table holds none");
  // The counters: the agent's, as every process of the user sees them; this process's own exposition is empty.
  const text = await other.agentMetrics();
  assert.match(text, /^perilink_agent_processes 2$/m, text);
  assert.match(text, /^perilink_client_sessions_opened_total 1$/m, text);
  assert.match(text, /# EOF\n$/);
  assert.equal(other.metrics(), "# EOF\n");

  // The printer is replaced on purpose: another device, another identity, on the same address and port.
  await printer.drain(1000);
  const replacement = await testServer({ listen: [`127.0.0.1:${port}`] });
  assert.notEqual(replacement.serverId, printer.serverId);
  const err = await other.connect({ host: "127.0.0.1", port, app: "print" }).catch((e: unknown) => e);
  assert.ok(err instanceof ServerChangedError, `refused as changed, with its class: ${String((err as Error)?.message ?? err)}`);
  const forgot = await one.forget("127.0.0.1");
  assert.ok(forgot.records >= 1, `forgot ${JSON.stringify(forgot)}`);
  const link = await other.connect({ host: "127.0.0.1", port, app: "print" });
  assert.equal((await link.request("job")).toString(), "job");
  assert.equal(replacement.status().counters.channelsOpen, 1, "the other process reaches the replacement: the record is the agent's");
});
