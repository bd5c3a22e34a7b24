/** What a table has changed since its last write: the rows it set and the keys it deleted, each with the change's number. */
export interface TableChanges<V> {
  set: [key: string, value: V][];
  deleted: string[];
  gens: Map<string, number>;
}

/**
 * A bounded table kept in memory and in a file that other processes write
 * too (pins, known servers). The file is the truth for every row this
 * process has not changed since its last write: `adopt(file)` takes the
 * file's rows — a row another process deleted goes here too, one it
 * changed takes its value — while rows changed here stand until a write
 * has put them in the file (`changes()`, then `written()`). So a `forget`
 * in one process is not undone by another that still held the row, and a
 * change here is not lost to a read of the file while it is being written.
 * Least recently used rows go first past `max`; `touch()` marks a use.
 */
export class SyncedTable<V> {
  #rows = new Map<string, V>();
  /** Keys set or deleted here and not yet written, with the number of their latest change. */
  #dirty = new Map<string, number>();
  #deleted = new Set<string>();
  #gen = 0;
  readonly max: number;

  constructor(max: number) {
    this.max = max;
  }

  get(key: string): V | undefined {
    return this.#rows.get(key);
  }

  get size(): number {
    return this.#rows.size;
  }

  /** Marks a use: the row is the most recently used. */
  touch(key: string): void {
    const v = this.#rows.get(key);
    if (v === undefined) return;
    this.#rows.delete(key);
    this.#rows.set(key, v);
  }

  set(key: string, value: V): void {
    this.#rows.delete(key);
    this.#rows.set(key, value);
    this.#deleted.delete(key);
    this.#dirty.set(key, ++this.#gen);
    while (this.#rows.size > this.max) this.#rows.delete(this.#rows.keys().next().value!);
  }

  delete(key: string): boolean {
    const had = this.#rows.delete(key);
    this.#deleted.add(key);
    this.#dirty.set(key, ++this.#gen);
    return had;
  }

  entries(): IterableIterator<[string, V]> {
    return this.#rows.entries();
  }

  /** What a write must put in the file and take out of it. */
  changes(): TableChanges<V> {
    const set: [string, V][] = [];
    const deleted: string[] = [];
    for (const k of this.#dirty.keys()) {
      const v = this.#rows.get(k);
      if (this.#deleted.has(k)) deleted.push(k);
      else if (v !== undefined) set.push([k, v]);
    }
    return { set, deleted, gens: new Map(this.#dirty) };
  }

  /** A write of `c` reached the file: those changes are the file's now (unless changed again since). */
  written(c: TableChanges<V>): void {
    for (const [k, g] of c.gens) {
      if (this.#dirty.get(k) !== g) continue;
      this.#dirty.delete(k);
      this.#deleted.delete(k);
    }
  }

  /** Takes the file's rows (least recently used first) for every row not changed here. */
  adopt(file: readonly [string, V][]): void {
    const inFile = new Map(file);
    for (const k of [...this.#rows.keys()]) if (!this.#dirty.has(k) && !inFile.has(k)) this.#rows.delete(k);
    const older: [string, V][] = [];
    for (const [k, v] of file) {
      if (this.#dirty.has(k)) continue;
      if (this.#rows.has(k)) this.#rows.set(k, v); // keeps its place
      else older.push([k, v]);
    }
    if (older.length === 0) return;
    const merged = new Map<string, V>(older);
    for (const [k, v] of this.#rows) {
      merged.delete(k);
      merged.set(k, v);
    }
    while (merged.size > this.max) merged.delete(merged.keys().next().value!);
    this.#rows = merged;
  }
}
