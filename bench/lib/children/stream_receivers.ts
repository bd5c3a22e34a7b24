import { startReceivers, type Receivers } from "../streams/receivers.ts";

/**
 * The streams benchmark's receivers in a process of their own: on
 * `{ type: "start", tls, stateDir }` answers `{ type: "ports", raw, https,
 * perilink }`; on `{ type: "stop" }` closes them and exits.
 */
let receivers: Receivers | null = null;
process.on("message", (m: { type: string; tls?: { key: string; cert: string }; stateDir?: string }) => {
  void (async () => {
    if (m.type === "start") {
      receivers = await startReceivers(m.tls!, m.stateDir!);
      process.send!({ type: "ports", raw: receivers.raw, https: receivers.https, perilink: receivers.perilink });
    } else if (m.type === "stop") {
      await receivers?.close();
      process.exit(0);
    }
  })();
});
