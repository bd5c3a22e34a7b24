/**
 * The target's C heap tuning (`memory.mallocMmapThresholdBytes`), passed to
 * glibc's malloc through its environment tunable `MALLOC_MMAP_THRESHOLD_`
 * (other C libraries ignore it). Allocations of at least that size get pages
 * of their own, returned to the kernel when freed, instead of a place in the
 * heap that fragmentation keeps resident. Every session allocates a write slab
 * (16 KiB on pi-zero-2w): after 4,000 connect → 20 requests → close cycles,
 * `serve` stayed 31 MiB above its idle RSS with glibc's default and 21.6 MiB
 * with a 16 KiB threshold, at the same server CPU time per request (x64,
 * Node 20). glibc reads it at start, so it is set where the budget's V8 flags
 * are: the launcher lines of the bundle and the restart of `serve`.
 */

export const MALLOC_MMAP_THRESHOLD_ENV = "MALLOC_MMAP_THRESHOLD_";

/** The variables to add: none when the target sets no threshold or the user set one. */
export function mallocTuningEnv(thresholdBytes: number | undefined, env: NodeJS.ProcessEnv): Record<string, string> {
  if (thresholdBytes === undefined || thresholdBytes === 0) return {};
  if (!Number.isInteger(thresholdBytes) || thresholdBytes < 0) {
    throw new RangeError(`Cannot tune malloc: memory.mallocMmapThresholdBytes must be a whole number of bytes ≥ 0, not ${thresholdBytes}`);
  }
  if (env[MALLOC_MMAP_THRESHOLD_ENV] !== undefined) return {};
  return { [MALLOC_MMAP_THRESHOLD_ENV]: String(thresholdBytes) };
}
