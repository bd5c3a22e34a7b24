/**
 * The target's V8 heap budget: `memory.maxOldSpaceMiB` (old generation) and
 * `memory.maxSemiSpaceMiB` (each young-generation semi-space; optional). V8
 * fixes its heap limits when the isolate is created, so a running process
 * cannot lower its own (`v8.setFlagsFromString` after start-up changes
 * nothing): the flags must be on the command line or in `NODE_OPTIONS` of the
 * process that serves.
 *
 * The budget travels in `NODE_OPTIONS` rather than in the arguments, because
 * every process a server starts inherits its environment: the new process of
 * an upgrade has the limit whether the program is a script run by node or an
 * executable (`/usr/bin/perilink`).
 *
 * Why cap the semi-space: V8 grows the young generation under allocation
 * bursts (up to 3 × 16 MiB on 64-bit) and a server that is never told it is
 * idle keeps it committed. After 4,000 connect → 20 requests → close cycles,
 * the pi-zero-2w `serve` stayed 50 MiB above its idle RSS with V8's default
 * and 31 MiB above with 1 MiB semi-spaces (x64, Node 20).
 *
 * A target with a semi-space cap but no old-space limit (node20) is not
 * restarted for it: the process that serves stops the young generation from
 * growing at run time instead (`--semi-space-growth-factor=1`, which V8 reads
 * each time it would grow), so it keeps its first size: 1 MiB semi-spaces on
 * 64-bit, 512 KiB on 32-bit, the same as `--max-semi-space-size=1` or less.
 */

export interface HeapBudget {
  maxOldSpaceMiB: number;
  maxSemiSpaceMiB?: number;
  /** C heap tuning that travels with the budget (runtime/malloc_tuning.ts). */
  mallocMmapThresholdBytes?: number;
  /** How full the young generation gets before V8 collects it, in percent (V8's `--minor-gc-task-trigger`, 80 by default). */
  minorGcTriggerPercent?: number;
}

/** `--max-old-space-size=N` or `--max_old_space_size N`, as V8 accepts it. */
const OLD_SPACE_FLAG = /(?:^|\s)--max[-_]old[-_]space[-_]size(?:[=\s]|$)/;
const SEMI_SPACE_FLAG = /(?:^|\s)--max[-_]semi[-_]space[-_]size(?:[=\s]|$)/;
const MINOR_GC_TRIGGER_FLAG = /(?:^|\s)--minor[-_]gc[-_]task[-_]trigger(?:[=\s]|$)/;

function given(re: RegExp, execArgv: readonly string[], nodeOptions: string | undefined): boolean {
  return execArgv.some((a) => re.test(a)) || re.test(nodeOptions ?? "");
}

/** Whether the user already chose an old-space limit (on the command line or in NODE_OPTIONS). */
export function hasOldSpaceFlag(execArgv: readonly string[], nodeOptions: string | undefined): boolean {
  return given(OLD_SPACE_FLAG, execArgv, nodeOptions);
}

function checkMiB(n: number | undefined, name: string): void {
  if (n !== undefined && (!Number.isInteger(n) || n < 0)) {
    throw new RangeError(`Cannot apply the heap budget: memory.${name} must be a whole number of MiB ≥ 0, not ${n}`);
  }
}

/**
 * The flags to add for a budget: none for a 0 (or absent) entry, or for a
 * limit the user set already. The old-space budget decides: when it is 0 or
 * the user chose the old-space limit, nothing is added.
 */
export function heapBudgetFlags(budget: HeapBudget, execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  checkMiB(budget.maxOldSpaceMiB, "maxOldSpaceMiB");
  checkMiB(budget.maxSemiSpaceMiB, "maxSemiSpaceMiB");
  if (budget.maxOldSpaceMiB === 0 || given(OLD_SPACE_FLAG, execArgv, nodeOptions)) return [];
  const flags = [`--max-old-space-size=${budget.maxOldSpaceMiB}`];
  if (budget.maxSemiSpaceMiB && !given(SEMI_SPACE_FLAG, execArgv, nodeOptions)) flags.push(`--max-semi-space-size=${budget.maxSemiSpaceMiB}`);
  return flags;
}

/** `NODE_OPTIONS` with the flags appended to what the user set. */
export function withNodeOptions(nodeOptions: string | undefined, flags: readonly string[]): string {
  return [(nodeOptions ?? "").trim(), ...flags].filter((s) => s !== "").join(" ");
}

/**
 * The V8 flag that keeps the young generation at its first size, set at run
 * time by a process that serves without a semi-space limit of its own: when
 * the budget caps semi-spaces (at 1 MiB or more) and neither the command line
 * nor `NODE_OPTIONS` sets a semi-space size. Null otherwise.
 */
export function youngGenerationRuntimeFlag(budget: HeapBudget, execArgv: readonly string[], nodeOptions: string | undefined): string | null {
  checkMiB(budget.maxSemiSpaceMiB, "maxSemiSpaceMiB");
  if (!budget.maxSemiSpaceMiB || given(SEMI_SPACE_FLAG, execArgv, nodeOptions)) return null;
  return "--semi-space-growth-factor=1";
}

/**
 * The V8 flag that collects the young generation earlier than V8's 80 %, set
 * at run time by every process that serves (V8 reads it each time it decides
 * whether to collect; `NODE_OPTIONS` cannot carry it): when the budget has
 * `minorGcTriggerPercent` and the command line does not set the flag.
 *
 * Why: what a bulk transfer allocates outside the JavaScript heap (each read
 * from a socket, each record's plaintext) is freed only when the collector
 * finds its small JavaScript object dead, so between two collections of the
 * young generation it piles up. Eight 64 MiB uploads to the pi-zero-2w server
 * held about 10 MiB of such buffers at 80 % (18 MiB of RSS over idle) and
 * about 5 MiB at 20 % (11 MiB over idle).
 */
export function minorGcRuntimeFlag(budget: HeapBudget, execArgv: readonly string[]): string | null {
  const n = budget.minorGcTriggerPercent;
  if (n === undefined) return null;
  if (!Number.isInteger(n) || n < 1 || n > 100) throw new RangeError(`Cannot apply the heap budget: memory.minorGcTriggerPercent must be a whole number from 1 to 100, not ${n}`);
  if (given(MINOR_GC_TRIGGER_FLAG, execArgv, undefined)) return null;
  return `--minor-gc-task-trigger=${n}`;
}
