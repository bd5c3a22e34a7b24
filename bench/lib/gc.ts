import { constants, PerformanceObserver, type PerformanceEntry } from "node:perf_hooks";

export interface GcCounts {
  minor: number;
  major: number;
  other: number;
  /** Total time spent in the counted collections, ms. */
  pauseMs: number;
}

/** Counts garbage collections of this process between `start()` and `stop()`. */
export class GcCounter {
  #observer: PerformanceObserver | null = null;
  #counts: GcCounts = { minor: 0, major: 0, other: 0, pauseMs: 0 };

  start(): void {
    this.stop();
    this.#counts = { minor: 0, major: 0, other: 0, pauseMs: 0 };
    this.#observer = new PerformanceObserver((list) => this.#add(list.getEntries()));
    this.#observer.observe({ entryTypes: ["gc"] });
  }

  stop(): GcCounts {
    const observer = this.#observer;
    if (observer) {
      this.#add(observer.takeRecords());
      observer.disconnect();
      this.#observer = null;
    }
    return { ...this.#counts };
  }

  #add(entries: PerformanceEntry[]): void {
    const c = this.#counts;
    for (const e of entries) {
      const kind = (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MINOR) c.minor++;
      else if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) c.major++;
      else c.other++;
      c.pauseMs += e.duration;
    }
  }
}
