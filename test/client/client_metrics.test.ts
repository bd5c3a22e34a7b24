import assert from "node:assert/strict";
import { after, test } from "node:test";
import { createClient } from "../../src/client/client.ts";
import { freePort } from "../helpers/free_port.ts";
import { tempDir, testServer, waitFor } from "../helpers/fixtures.ts";
import { openMetricsParserMissing, parseOpenMetrics, sampleValue } from "../helpers/open_metrics_parser.ts";

const missing = openMetricsParserMissing();

test("client.metrics() counts requests, their errors by code, latency, sessions and link moves, as OpenMetrics", { skip: missing ?? false }, async () => {
  const stateDir = tempDir();
  const port = await freePort();
  const app = {
    request: (p: Buffer) => {
      if (p.toString() === "fail") throw Object.assign(new Error("refused"), { expose: true });
      return p;
    },
  };
  const first = await testServer({ stateDir, listen: [`127.0.0.1:${port}`], appObject: app });
  const client = createClient({ lingerMs: 0, stateDir: false });
  after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port, app: "a" });
  for (let i = 0; i < 3; i++) await link.request(`r${i}`);
  await assert.rejects(link.request("fail"), { code: "PERILINK_REMOTE_APP" });
  // The server is replaced (same identity, same port): the link moves, reason upgrade.
  await first.drain(2000);
  await testServer({ stateDir, listen: [`127.0.0.1:${port}`], appObject: app });
  await link.request("after", { waitForReady: true, timeoutMs: 5000 });
  const m = parseOpenMetrics(client.metrics());
  const total = (f: string, labels: Record<string, string> = {}): number | undefined => sampleValue(m, f, `${f}_total`, labels);
  assert.equal(total("perilink_client_requests"), 5);
  assert.equal(total("perilink_client_request_errors", { code: "PERILINK_REMOTE_APP" }), 1);
  assert.equal(sampleValue(m, "perilink_client_request_duration_seconds", "perilink_client_request_duration_seconds_count"), 5);
  await waitFor(() => (sampleValue(parseOpenMetrics(client.metrics()), "perilink_client_link_moves", "perilink_client_link_moves_total", { reason: "upgrade" }) ?? 0) === 1, "the move counted");
  assert.ok((total("perilink_client_sessions_opened") ?? 0) >= 2);
  assert.equal(sampleValue(m, "perilink_client_links", "perilink_client_links"), 1);
  assert.equal(sampleValue(m, "perilink_client_servers", "perilink_client_servers"), 1);
});
