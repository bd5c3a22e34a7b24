/** Types of choose_target.mjs (plain JavaScript, since it is copied into the package as it is). */
export declare const TARGETS: string[];
export interface MachineFacts {
  env: Record<string, string | undefined>;
  isDeno: boolean;
  arch: string;
  totalMemBytes: number;
  model: string;
}
export declare function chooseTarget(facts: MachineFacts): string;
export declare function machineFacts(): Promise<MachineFacts>;
