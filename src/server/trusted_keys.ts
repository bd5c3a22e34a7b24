import { promises as fs, statSync, readFileSync, type Stats } from "node:fs";
import path from "node:path";
import type { Logger } from "../logger.ts";
import { isFingerprint } from "../protocol/keys.ts";
import { ConfigError } from "../errors.ts";
import { writeFileAtomic } from "../runtime/atomic_file.ts";
import { withFileLock } from "../runtime/file_lock.ts";
import { CLIENT_KEY_FILE, readClientKeyFingerprint } from "../runtime/client_key_file.ts";
import { ensurePrivateDir } from "../runtime/state_dir.ts";

/** The file, in the state directory, of the client keys the server trusts (`access: "keys"`). */
export const TRUSTED_KEYS_FILE = "trusted-keys";

/** One line of the trusted-keys file: a key, the apps it may open (null: every app), a comment. */
export interface TrustEntry {
  fingerprint: string;
  apps: string[] | null;
  comment: string;
}

/** An app name as a trust line can hold it: no white space, no comma. */
export function isTrustableApp(app: string): boolean {
  return app.length > 0 && app.length <= 255 && !/[\s,]/.test(app);
}

/**
 * Parses the trusted-keys file, one key a line, in the spirit of SSH's
 * `authorized_keys`:
 *
 *     # comment line
 *     SHA256:<43 base64 chars>                       every app
 *     SHA256:<…> apps=printer,scanner  office PC     two apps, a comment
 *
 * A line that cannot be read trusts nothing and is returned in `errors`
 * (line number, why), so a typo never widens access.
 */
export function parseTrustedKeys(text: string): { entries: TrustEntry[]; errors: { line: number; why: string }[] } {
  const entries: TrustEntry[] = [];
  const errors: { line: number; why: string }[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "" || line.startsWith("#")) continue;
    const words = line.split(/\s+/);
    const fingerprint = words.shift()!;
    if (!isFingerprint(fingerprint)) {
      errors.push({ line: i + 1, why: `"${fingerprint.slice(0, 60)}" is not a key fingerprint (SHA256:…)` });
      continue;
    }
    let apps: string[] | null = null;
    // A second word that looks like an attempt at "apps=" (any case, a space, ":" for "=", a character
    // that does not show) is an error, not a comment: a typo must never trust a key for every app.
    const second = words[0] ?? "";
    if (!second.startsWith("apps=") && (/^\W*apps?(\W|$)/i.test(second) || /[=:＝：\u200b-\u200f\u2060\ufeff]/.test(second) || words[1]?.startsWith("="))) {
      errors.push({ line: i + 1, why: `"${second.slice(0, 40)}" is not "apps=NAME,…"` });
      continue;
    }
    if (second.startsWith("apps=")) {
      apps = words.shift()!.slice(5).split(",");
      if (!apps.every(isTrustableApp)) {
        errors.push({ line: i + 1, why: `"apps=" must list app names separated by commas` });
        continue;
      }
    }
    entries.push({ fingerprint, apps, comment: words.join(" ").replace(/^#\s*/, "") });
  }
  return { entries, errors };
}

/** One entry as a line of the file. */
export function formatTrustEntry(e: TrustEntry): string {
  // The comment after "#": whatever its words, it can never read as a misspelt "apps=".
  return [e.fingerprint, e.apps ? `apps=${e.apps.join(",")}` : "", e.comment ? `# ${e.comment}` : ""].filter((w) => w !== "").join(" ");
}

/** The trusted-keys file's text, "" when there is none. */
async function readTrustText(file: string): Promise<string> {
  try {
    return await fs.readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return "";
    throw err;
  }
}

const isLineOf = (line: string, fp: string): boolean => line.trim().split(/\s+/)[0] === fp;

/**
 * Trusts `e.fingerprint` in `stateDir` and returns what it is trusted for
 * now: a key trusted already keeps what it had and gains `e.apps` (every app
 * if either says every app), and keeps its comment unless `e` has one; every
 * other line stays as it was. Written atomically: a server reads the old
 * file or the new, never half of one.
 */
export async function addTrust(stateDir: string, e: TrustEntry): Promise<TrustEntry> {
  return editTrust(stateDir, (lines) => {
    const had = parseTrustedKeys(lines.filter((l) => isLineOf(l, e.fingerprint)).join("\n")).entries;
    let merged = e;
    for (const h of had) merged = { fingerprint: e.fingerprint, apps: h.apps === null || merged.apps === null ? null : [...new Set([...h.apps, ...merged.apps])], comment: merged.comment || h.comment };
    return { lines: [...lines.filter((l) => !isLineOf(l, e.fingerprint)), formatTrustEntry(merged)], result: merged };
  });
}

/**
 * A read-modify-write of `stateDir`'s trusted-keys file, as its owner, under
 * a lock (`trusted-keys.lock`), so edits from several processes (the command
 * line, a pairing in any service process) never lose one another. The file
 * is never a symlink: a rename would detach it from what it points to.
 */
async function editTrust<T>(stateDir: string, edit: (lines: string[]) => { lines: string[]; result: T }): Promise<T> {
  await ensurePrivateDir(stateDir);
  const file = path.join(stateDir, TRUSTED_KEYS_FILE);
  return withFileLock(
    `${file}.lock`,
    async () => {
      const st = await fs.lstat(file).catch(() => null);
      if (st?.isSymbolicLink()) throw new ConfigError(`Cannot edit ${file}: it is a symlink; edit the file it points to, or make it a plain file`);
      const lines = (await readTrustText(file)).split("\n");
      if (lines[lines.length - 1] === "") lines.pop();
      const out = edit(lines);
      if (out.lines !== lines) await writeFileAtomic(file, out.lines.join("\n") + (out.lines.length > 0 ? "\n" : ""), 0o600);
      return out.result;
    },
    () => new ConfigError(`Cannot edit ${file}: its .lock stays; if no perilink command or pairing runs, delete it`),
  );
}

/** Removes `fingerprint`'s lines from `stateDir`'s trusted keys; false when it had none. */
export async function removeTrust(stateDir: string, fingerprint: string): Promise<boolean> {
  return editTrust(stateDir, (lines) => {
    const kept = lines.filter((l) => !isLineOf(l, fingerprint));
    return kept.length === lines.length ? { lines, result: false } : { lines: kept, result: true };
  });
}

/** The entries of `stateDir`'s trusted-keys file, and the lines that trust nothing. */
export async function listTrust(stateDir: string): Promise<ReturnType<typeof parseTrustedKeys>> {
  return parseTrustedKeys(await readTrustText(path.join(stateDir, TRUSTED_KEYS_FILE)));
}

/** What identifies a version of a file: a write by rename changes the inode, an edit in place the size or time. */
function versionOf(file: string): string {
  let st: Stats;
  try {
    st = statSync(file);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? "error";
  }
  return `${st.ino}:${st.size}:${st.mtimeMs}`;
}

/**
 * Who may open channels on a server with `access: "keys"`: the keys in the
 * state directory's trusted-keys file (optionally per app), and the state
 * directory's own client key (the one `perilink call` on the device proves),
 * for every app. Both files are looked at (one stat each) on every check, so
 * `perilink trust add|remove` takes effect for the next channel without a
 * restart, in every process that serves the state directory, and across
 * upgrades. A file that cannot be read trusts nothing from it (logged).
 */
export class TrustedKeys {
  readonly #keysFile: string;
  readonly #ownFile: string;
  readonly #stateDir: string;
  readonly #log: Logger;
  #keysVersion = "";
  #ownVersion = "";
  #byKey = new Map<string, TrustEntry>();
  #own: string | null = null;

  constructor(stateDir: string, log: Logger) {
    this.#stateDir = stateDir;
    this.#keysFile = path.join(stateDir, TRUSTED_KEYS_FILE);
    this.#ownFile = path.join(stateDir, CLIENT_KEY_FILE);
    this.#log = log;
  }

  /** Whether the client with key `fingerprint` may open a channel for `app`. */
  allows(fingerprint: string, app: string): boolean {
    this.#refresh();
    if (fingerprint === "") return false;
    if (fingerprint === this.#own) return true;
    const e = this.#byKey.get(fingerprint);
    return e !== undefined && (e.apps === null || e.apps.includes(app));
  }

  /**
   * Whether `fingerprint` is trusted for any app at all. `fresh` false takes
   * the files as last read (choosing sessions to evict looks at many at once).
   */
  knows(fingerprint: string, fresh = true): boolean {
    if (fresh) this.#refresh();
    return fingerprint !== "" && (fingerprint === this.#own || this.#byKey.has(fingerprint));
  }

  #refresh(): void {
    const kv = versionOf(this.#keysFile);
    if (kv !== this.#keysVersion) {
      this.#keysVersion = kv;
      this.#byKey = this.#load();
    }
    const ov = versionOf(this.#ownFile);
    if (ov !== this.#ownVersion) {
      this.#ownVersion = ov;
      try {
        this.#own = readClientKeyFingerprint(this.#stateDir);
      } catch (err) {
        this.#own = null;
        this.#log.error("client_key_unreadable", { file: this.#ownFile, error: err });
      }
    }
  }

  #load(): Map<string, TrustEntry> {
    const map = new Map<string, TrustEntry>();
    let text: string;
    try {
      text = readFileSync(this.#keysFile, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
        this.#log.error("trusted_keys_unreadable", { file: this.#keysFile, error: err });
      }
      return map;
    }
    const { entries, errors } = parseTrustedKeys(text);
    for (const e of errors) this.#log.warn("trusted_keys_line_ignored", { file: this.#keysFile, ...e });
    for (const e of entries) {
      const had = map.get(e.fingerprint);
      // A key on two lines gets the union of their apps.
      map.set(e.fingerprint, had ? { ...e, apps: had.apps === null || e.apps === null ? null : [...had.apps, ...e.apps] } : e);
    }
    this.#log.info("trusted_keys_loaded", { file: this.#keysFile, keys: map.size });
    return map;
  }
}
