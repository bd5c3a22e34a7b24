import { getHeapStatistics } from "node:v8";

/** A process's memory as `perilink status` reports it. */
export interface MemoryFigures {
  /** Resident set size of the whole process. */
  rssBytes: number;
  /** JavaScript heap in use. */
  heapUsedBytes: number;
  /** V8's heap limit (old space plus young generation); the target's budget sets the old-space part. */
  heapLimitBytes: number;
}

export function memoryFigures(): MemoryFigures {
  const heap = getHeapStatistics();
  return { rssBytes: process.memoryUsage.rss(), heapUsedBytes: heap.used_heap_size, heapLimitBytes: heap.heap_size_limit };
}
