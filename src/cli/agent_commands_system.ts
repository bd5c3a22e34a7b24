import { ConfigError } from "../errors.ts";
import { TARGET } from "../target.ts";

/**
 * `perilink agent` and `perilink sessions` in a device build (as
 * browse_command_system.ts): the host agent is the hosts' side of C11, so
 * the agent, its wire and its table stay in the host builds and the
 * library, out of the device bundle's size budget.
 */
function notHere(what: string): never {
  throw new ConfigError(`Cannot run "perilink ${what}": the ${TARGET.name} build serves devices and has no host agent; run it from the node20 bundle or the npm package on a host`);
}

export async function runAgent(_args: string[]): Promise<number> {
  return notHere("agent");
}

export async function runSessions(_args: string[]): Promise<number> {
  return notHere("sessions");
}
