/**
 * `perilink call … | head -1`: once the reader of our output has gone, the
 * next write fails with EPIPE. Like other Unix tools, a command then says
 * nothing more and exits 0: the reader has what it wanted, and a stack trace
 * on stderr would only be noise. A server keeps serving: losing the reader of
 * its log is no reason to drop its clients.
 */

/** Exit code of a command whose output's reader has gone. */
export const CLOSED_PIPE_EXIT_CODE = 0;

export function isClosedPipe(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { code?: unknown }).code === "EPIPE";
}

/**
 * Handles EPIPE on stdout and stderr: `exit` ends the process quietly,
 * `ignore` drops further output. Any other stream error is rethrown.
 */
export function handleClosedPipe(then: "exit" | "ignore", streams: NodeJS.WritableStream[] = [process.stdout, process.stderr]): void {
  for (const stream of streams) {
    stream.on("error", (err: unknown) => {
      if (!isClosedPipe(err)) throw err;
      if (then === "exit") process.exit(CLOSED_PIPE_EXIT_CODE);
    });
  }
}
