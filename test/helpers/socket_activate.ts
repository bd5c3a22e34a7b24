import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { after } from "node:test";
import { cliCommand, REPO_ROOT, stopChild } from "./cli.ts";
import { pidAlive } from "./pid_alive.ts";

/** Where `systemd-socket-activate` is (package `systemd`), or null when it is not installed. */
export const SOCKET_ACTIVATE: string | null = (() => {
  const r = spawnSync("sh", ["-c", "command -v systemd-socket-activate"], { encoding: "utf8" });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : null;
})();

export const SKIP_NO_SOCKET_ACTIVATE = SOCKET_ACTIVATE ? false : "systemd-socket-activate is not installed (Debian package systemd)";

export interface Activated {
  child: ChildProcess;
  /** What systemd-socket-activate and the server wrote on stderr so far. */
  stderr(): string;
  /** Resolves once the outermost layer listens on its sockets (a connection then starts the server). */
  listening(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * One `systemd-socket-activate` invocation: `listen` addresses with one
 * socket type (it has one `--datagram` switch for all), optional names.
 */
export interface ActivateLayer {
  listen: string[];
  datagram?: boolean;
  fdnames?: string[];
}

/**
 * Runs `perilink serve ARGS` under `systemd-socket-activate` (several nested
 * layers for a mix of stream and datagram sockets: each passes the sockets of
 * the outer ones through). It starts the server on the first connection or
 * datagram, as systemd does; stopped after the test file.
 */
export function socketActivated(layers: ActivateLayer[], serveArgs: string[], env: NodeJS.ProcessEnv = process.env): Activated {
  const argv: string[] = [];
  for (const layer of layers) {
    argv.push(SOCKET_ACTIVATE!);
    for (const l of layer.listen) argv.push("-l", l);
    if (layer.datagram) argv.push("--datagram");
    if (layer.fdnames) argv.push(`--fdname=${layer.fdnames.join(":")}`);
    argv.push("--");
  }
  const { cmd, args } = cliCommand(["serve", "--access", "open", ...serveArgs]);
  argv.push(cmd, ...args);
  const child = spawn(argv[0]!, argv.slice(1), { cwd: REPO_ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (err += s));
  child.stdout!.resume();
  after(() => stopChild(child, 3000));
  const outer = layers[0]?.listen.length ?? 0;
  const listening = async (): Promise<void> => {
    const end = Date.now() + 10_000;
    while ((err.match(/^Listening on /gm)?.length ?? 0) < outer) {
      if (Date.now() > end || child.exitCode !== null) throw new Error(`systemd-socket-activate did not listen: ${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { child, stderr: () => err, listening, stop: () => stopChild(child, 3000) };
}

/**
 * Ends process `pid` (a server an upgrade started, which is no child of the
 * test) after the test file, should the test not have stopped it: SIGTERM,
 * then SIGKILL after 3 s.
 */
export function stopPidAfter(pid: number): void {
  after(async () => {
    const alive = (): boolean => pidAlive(pid);
    if (!alive()) return;
    process.kill(pid, "SIGTERM");
    for (let i = 0; i < 150 && alive(); i++) await new Promise((r) => setTimeout(r, 20));
    if (alive()) process.kill(pid, "SIGKILL");
  });
}
