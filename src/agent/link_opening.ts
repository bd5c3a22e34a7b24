import type { Link } from "../client/link.ts";

/**
 * A link the agent is opening for a process. Its number is taken, and the
 * requests and messages the process sends on it meanwhile wait for it: a
 * process may send them right behind its connect (agent_link.ts opens links
 * ahead to a server it reached already), and they fail with the connect's
 * error if it fails. `closing`: the process closed it while it opened.
 */
export class LinkOpening {
  closing = false;
  readonly opened: Promise<Link>;
  #open!: (link: Link) => void;
  #fail!: (err: unknown) => void;

  constructor() {
    this.opened = new Promise<Link>((resolve, reject) => {
      this.#open = resolve;
      this.#fail = reject;
    });
    this.opened.catch(() => {}); // nothing may have waited for it
  }

  open(link: Link): void {
    this.#open(link);
  }

  fail(err: unknown): void {
    this.#fail(err);
  }
}
