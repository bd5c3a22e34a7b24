import assert from "node:assert/strict";
import { test } from "node:test";
import { createLogger, throttledLogger } from "../../src/logger.ts";

test("a peer-caused event is logged at most once a second, and the next line says how many were left out", () => {
  const lines: string[] = [];
  let now = 0;
  const log = throttledLogger(createLogger("info", (l) => lines.push(l)), 1000, () => now);
  for (let i = 0; i < 500; i++) log.info("session_refused", { why: "maxSessions" });
  log.info("session_protocol_error", { peer: "x" }); // another event has its own allowance
  now = 1001;
  log.info("session_refused", { why: "maxSessions" });
  const events = lines.map((l) => JSON.parse(l) as { event: string; suppressed?: number });
  assert.deepEqual(
    events.map((e) => [e.event, e.suppressed]),
    [
      ["session_refused", undefined],
      ["session_protocol_error", undefined],
      ["session_refused", 499],
    ],
  );
});
