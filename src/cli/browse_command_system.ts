import { ConfigError } from "../errors.ts";
import { TARGET } from "../target.ts";

/**
 * `perilink browse` in a device build (`"nameSources": "system"`, as
 * name_sources_system.ts): a peripheral is found, it does not look for its
 * peers, and the browser, its multicast exchange and its checks stay in the
 * host builds and the library, out of the device bundle's size budget. The
 * device's own advertising (server/discovery.ts) is in every build.
 */
export async function runBrowse(_args: string[]): Promise<number> {
  throw new ConfigError(`Cannot browse: the ${TARGET.name} build advertises the device but does not browse; run "perilink browse" from the node20 bundle or the npm package on a host`);
}
