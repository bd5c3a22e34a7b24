/**
 * Child process: one attack of the torture benchmark (torture/attacks/).
 *
 *   ← start {kind, target, options}
 *   → started            (the attack is set up and running)
 *   ← stop
 *   → result {counters}, then exits (`counters.activeMs`: from started to stop)
 *
 * Bounded: the attack stops by itself at `options.deadline`, and the process
 * exits 10 s after that, or when the parent goes away.
 */
import type { AttackOptions, AttackTarget, Counters } from "../torture/attack.ts";
import { ATTACKS } from "../torture/attacks/index.ts";
import { tell } from "../proc.ts";

export interface StartAttack {
  type: "start";
  kind: string;
  target: AttackTarget;
  options: AttackOptions;
}

export type AttackDone = {
  type: "result";
  kind: string;
  counters: Counters;
};

async function run(m: StartAttack): Promise<void> {
  const def = ATTACKS[m.kind];
  if (!def) throw new Error(`unknown attack ${m.kind}`);
  setTimeout(() => process.exit(3), Math.max(0, m.options.deadline - Date.now()) + 10_000).unref();
  const attack = def.start(m.target, m.options);
  await attack.ready;
  const t0 = performance.now();
  await tell({ type: "started" });
  await new Promise<void>((resolve) => {
    process.once("message", () => resolve());
    setTimeout(resolve, Math.max(0, m.options.deadline - Date.now())).unref();
  });
  const activeMs = performance.now() - t0;
  const counters = { ...(await attack.stop()), activeMs };
  await tell({ type: "result", kind: m.kind, counters } satisfies AttackDone);
}

process.on("disconnect", () => process.exit(0));
process.once("message", (raw) => {
  run(raw as StartAttack).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`torture_attacker: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
});
