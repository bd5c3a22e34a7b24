/**
 * The target's V8 heap budget (`memory.maxOldSpaceMiB`). V8 fixes its heap
 * limits when the isolate is created, so a running process cannot lower its
 * own (`v8.setFlagsFromString` after start-up changes nothing): the flag must
 * be on the command line or in `NODE_OPTIONS` of the process that serves.
 *
 * The budget travels in `NODE_OPTIONS` rather than in the arguments, because
 * every process a server starts inherits its environment: the new process of
 * an upgrade has the limit whether the program is a script run by node or an
 * executable (`/usr/bin/perilink`).
 */

/** `--max-old-space-size=N` or `--max_old_space_size N`, as V8 accepts it. */
const OLD_SPACE_FLAG = /(?:^|\s)--max[-_]old[-_]space[-_]size(?:[=\s]|$)/;

/** Whether the user already chose an old-space limit (on the command line or in NODE_OPTIONS). */
export function hasOldSpaceFlag(execArgv: readonly string[], nodeOptions: string | undefined): boolean {
  return execArgv.some((a) => OLD_SPACE_FLAG.test(a)) || OLD_SPACE_FLAG.test(nodeOptions ?? "");
}

/** What to add for a budget: the flag, or null when there is nothing to do. */
export function heapBudgetFlag(budgetMiB: number, execArgv: readonly string[], nodeOptions: string | undefined): string | null {
  if (!Number.isInteger(budgetMiB) || budgetMiB < 0) {
    throw new RangeError(`Cannot apply the heap budget: memory.maxOldSpaceMiB must be a whole number of MiB ≥ 0, not ${budgetMiB}`);
  }
  if (budgetMiB === 0 || hasOldSpaceFlag(execArgv, nodeOptions)) return null;
  return `--max-old-space-size=${budgetMiB}`;
}

/** `NODE_OPTIONS` with the flag appended to what the user set. */
export function withNodeOption(nodeOptions: string | undefined, flag: string): string {
  const base = (nodeOptions ?? "").trim();
  return base ? `${base} ${flag}` : flag;
}
