import { after, before } from "node:test";
import { startLineServer, type LineServer } from "./line_server.ts";
import { createTopology, type Topology } from "./netns_topology.ts";

/** The two-line topology and its line server, shared by a test file; null with `skip` saying why where it cannot be made. */
export interface TwoLines {
  topo: Topology | null;
  server: LineServer | null;
  skip: string;
}

/**
 * Creates the two-line topology (test/helpers/netns_topology.ts) and starts a
 * line server in it before the file's tests; stops the server and removes the
 * topology after them. Call at the top level of a test file.
 */
export function twoLinesPerFile(): TwoLines {
  const lines: TwoLines = { topo: null, server: null, skip: "" };
  before(async () => {
    const t = await createTopology();
    if ("skip" in t) {
      lines.skip = t.skip;
      return;
    }
    lines.topo = t;
    lines.server = await startLineServer(t);
  });
  after(async () => {
    await lines.server?.stop();
    await lines.topo?.destroy();
  });
  return lines;
}
