import fs from "node:fs";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { Readable, Writable } from "node:stream";
import type { Link } from "../client/link.ts";
import { UsageError } from "../errors.ts";

/** How long a transfer runs before a terminal gets a progress line. */
const PROGRESS_AFTER_MS = 1000;
const PROGRESS_EVERY_MS = 250;

/**
 * `perilink call HOST:PORT --data-file FILE|- --output FILE|-`: the request
 * streamed from a file or stdin, the response streamed to a file or stdout,
 * neither held whole; a file is renamed into place only once whole. On a terminal, a transfer that takes longer than a
 * second shows a progress line on stderr (bytes each way, rate, and the ETA
 * when the file's size is known).
 */
export async function transfer(link: Link, dataFile: string | undefined, data: string, output: string, timeoutMs: number): Promise<void> {
  let total: number | null = null;
  let source: AsyncIterable<Uint8Array> | string = data;
  if (dataFile === "-") source = process.stdin;
  else if (dataFile !== undefined) {
    total = checkDataFile(dataFile);
    source = fs.createReadStream(dataFile, { highWaterMark: 64 * 1024 });
  }
  const progress = new Progress(total);
  const counted = typeof source === "string" ? source : progress.countUp(source);
  // A file is written beside itself and renamed into place once the response is whole:
  // a call that fails leaves an existing file as it was, and no half of a new one.
  const part = output === "-" ? null : path.join(path.dirname(output), `.${path.basename(output)}.${process.pid}.part`);
  try {
    const body = await link.stream(counted, { timeoutMs });
    const out: Writable = part === null ? process.stdout : fs.createWriteStream(part, { flags: "wx", mode: 0o644 });
    await pipeline(Readable.from(progress.countDown(body)), out);
    if (part !== null) fs.renameSync(part, output);
  } catch (err) {
    if (part !== null) fs.rmSync(part, { force: true });
    throw err;
  } finally {
    progress.stop();
  }
}

/** The size of `--data-file FILE`, which must be a regular file we can read (a usage error before any connection). */
export function checkDataFile(file: string): number {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
    fs.accessSync(file, fs.constants.R_OK);
  } catch (err) {
    throw new UsageError(`Cannot read --data-file ${file}: ${(err as Error).message}`);
  }
  if (!st.isFile()) throw new UsageError(`Cannot read --data-file ${file}: not a regular file`);
  return st.size;
}

/** The progress line: shown on a TTY only, after the first second. */
class Progress {
  #total: number | null;
  #up = 0;
  #down = 0;
  #t0 = performance.now();
  #timer: ReturnType<typeof setInterval> | null = null;
  #shown = false;

  constructor(total: number | null) {
    this.#total = total;
    if (!process.stderr.isTTY) return;
    this.#timer = setInterval(() => this.#draw(), PROGRESS_EVERY_MS);
    this.#timer.unref?.();
  }

  async *countUp(src: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    for await (const chunk of src) {
      this.#up += chunk.byteLength;
      yield chunk;
    }
  }

  async *countDown(src: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    for await (const chunk of src) {
      this.#down += chunk.byteLength;
      yield chunk;
    }
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    if (this.#shown) {
      this.#draw(true);
      process.stderr.write("\n");
    }
  }

  #draw(force = false): void {
    const s = (performance.now() - this.#t0) / 1000;
    if (!force && s * 1000 < PROGRESS_AFTER_MS) return;
    this.#shown = true;
    const rate = (this.#up + this.#down) / Math.max(s, 0.001);
    let eta = "";
    if (this.#total !== null && this.#total > 0 && this.#up < this.#total && this.#up > 0) {
      eta = `, ETA ${Math.ceil((this.#total - this.#up) / (this.#up / s))} s`;
    }
    const of = this.#total === null ? "" : ` of ${mib(this.#total)}`;
    process.stderr.write(`\r\x1b[Ksent ${mib(this.#up)}${of}, received ${mib(this.#down)}, ${mib(rate)}/s${eta}`);
  }
}

function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}
