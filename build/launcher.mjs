#!/usr/bin/env node
// The npm package's `perilink`: runs the build made for this machine (choose_target.mjs says how; PERILINK_TARGET overrides).
import { chooseTarget, machineFacts } from "./choose_target.mjs";

let target;
try {
  target = chooseTarget(await machineFacts());
} catch (err) {
  process.stderr.write(`perilink: ${err.message}\n`);
  process.exit(2);
}
await import(`./${target}/perilink.mjs`);
