import type { ChildProcess } from "node:child_process";

/**
 * The port a `perilink serve --listen 127.0.0.1:0` child listens on, from its
 * JSON log on stderr (the port of listener_added, once server_started is
 * logged). Rejects, naming `what` and quoting the log, if the child exits
 * first or after `timeoutMs`.
 */
export function servedPort(child: ChildProcess, what: string, timeoutMs: number): Promise<number> {
  let err = "";
  return new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start: ${err}`)), timeoutMs);
    child.stderr!.setEncoding("utf8").on("data", (s: string) => {
      err += s;
      const m = /"event":"server_started"/.test(err) && /"event":"listener_added"[^\n]*"port":(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code}): ${err}`));
    });
  });
}
