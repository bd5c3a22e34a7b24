import net from "node:net";
import { ClientClosedError, KeyMismatchError, ServerChangedError } from "../../errors.ts";
import { stripZone } from "../../address.ts";

/** How far apart the probes of a name's addresses start (RFC 8305's connection attempt delay, at its low end). */
export const PROBE_STAGGER_MS = 150;

/**
 * Probes a name's addresses Happy Eyeballs style (RFC 8305): families
 * interleaved, starting with the first address's; each probe starts
 * `PROBE_STAGGER_MS` after the one before, or at once when the one before
 * failed; the first that identifies a server wins. So dead addresses ahead of
 * a live one cost a stagger each, not a whole probe timeout each. A closed
 * client ends the race at once. When every probe failed, the most telling
 * failure is thrown: an impostor of a pinned server (`PERILINK_KEY_MISMATCH`),
 * else a server the name may not lead to (`PERILINK_SERVER_CHANGED`), else
 * the last — so a poisoned answer that lists an impostor beside the real
 * server costs one probe, not the connect.
 */
export function raceAddresses<T>(addresses: readonly string[], probe: (address: string) => Promise<T>, staggerMs = PROBE_STAGGER_MS): Promise<{ value: T; address: string }> {
  const order = interleaveFamilies(addresses);
  return new Promise((resolve, reject) => {
    let next = 0;
    let failed = 0;
    let telling: unknown = null;
    let done = false;
    let timer: ReturnType<typeof setTimeout> | null = null;
    const end = (): void => {
      done = true;
      if (timer) clearTimeout(timer);
    };
    const start = (): void => {
      if (done || next >= order.length) return;
      const address = order[next++]!;
      if (timer) clearTimeout(timer);
      timer = next < order.length ? setTimeout(start, staggerMs) : null;
      // Through a promise: a probe that throws at once fails like one that rejects.
      new Promise<T>((r) => r(probe(address))).then(
        (value) => {
          if (done) return;
          end();
          resolve({ value, address });
        },
        (err: unknown) => {
          if (done) return;
          if (rank(err) >= rank(telling)) telling = err;
          if (err instanceof ClientClosedError || ++failed === order.length) {
            end();
            reject(err instanceof ClientClosedError || telling === null ? err : telling);
          } else start(); // a failure starts the next one now
        },
      );
    };
    if (order.length === 0) reject(new RangeError("no address to probe"));
    else start();
  });
}

function rank(err: unknown): number {
  return err instanceof KeyMismatchError ? 2 : err instanceof ServerChangedError ? 1 : err === null ? -1 : 0;
}

/** `addresses` with IPv6 and IPv4 alternating, the first address's family first, each family in its order. */
export function interleaveFamilies(addresses: readonly string[]): string[] {
  const v6 = addresses.filter((a) => net.isIPv6(stripZone(a)));
  const v4 = addresses.filter((a) => !net.isIPv6(stripZone(a)));
  const [first, second] = v6.length > 0 && addresses[0] === v6[0] ? [v6, v4] : [v4, v6];
  const out: string[] = [];
  for (let i = 0; i < Math.max(first.length, second.length); i++) {
    if (i < first.length) out.push(first[i]!);
    if (i < second.length) out.push(second[i]!);
  }
  return out;
}
