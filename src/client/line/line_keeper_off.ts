/**
 * The line keeper of a device build: targets with `"lineMeasures": false`
 * (pi-zero-2w) bundle this file in line_keeper.ts's place (build/build.ts).
 * A device serves; choosing the better of a server's lines (C8) is the
 * business of the hosts that talk to it (the library, the node20 and deno
 * bundles), and its measures (`ip`, `tc`, TTL-limited probes) are most of
 * the bundle's client side. Here nothing is measured: a server's addresses
 * are tried in the order they were named and a session stays where it is;
 * dead-line detection and failover work as everywhere.
 */
import type { LineAddress, LineEntry, LineKeeperOptions, LineKeeping, LineRow } from "./line_keeper.ts";
import type { LinePreference } from "./line_score.ts";

export class LineKeeper implements LineKeeping {
  readonly stats = { measures: 0, probesSent: 0, switches: 0, mostAtOnce: 0 };
  readonly preference: LinePreference;

  constructor(options: LineKeeperOptions, _entries: () => Iterable<LineEntry>) {
    this.preference = options.preference;
  }

  row(_a: LineAddress): LineRow | null {
    return null;
  }

  rank<A extends LineAddress>(addresses: readonly A[]): A[] {
    return [...addresses];
  }

  failed(_a: LineAddress): void {}

  review(_entry: LineEntry): void {}

  refresh(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
