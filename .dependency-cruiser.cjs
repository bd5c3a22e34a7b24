/**
 * The layer rule of src/ (docs/architecture.md): a file imports only from its
 * own layer or the layers below it, server/ and client/ never import each
 * other, and no import cycle exists, type-only imports included.
 * `npm run check:layers` checks it; CI fails on any violation.
 */
const LAYERS = [
  ["kernel", "^src/(errors|logger|target|version|address|duration|open_metrics)\\.ts$"],
  ["protocol", "^src/protocol/"],
  ["runtime", "^src/runtime/"],
  ["server", "^src/server/"],
  ["client", "^src/client/"],
  ["systemd", "^src/systemd/"],
  ["handoff", "^src/handoff/"],
  ["group", "^src/group/"],
  ["agent", "^src/agent/"],
  ["http", "^src/http/"],
  ["serve", "^src/serve/"],
  ["cli", "^src/cli/"],
  ["library", "^src/(index|http)\\.ts$"],
];
/** server and client share a rank: side by side, above runtime, below systemd. */
const RANK = { kernel: 0, protocol: 1, runtime: 2, server: 3, client: 3, systemd: 4, handoff: 5, group: 6, agent: 6, http: 6, serve: 7, cli: 8, library: 8 };

const upward = LAYERS.map(([name, path]) => ({
  name: `no-upward-from-${name}`,
  comment: `${name} imports only from its own layer or below (docs/architecture.md)`,
  severity: "error",
  from: { path },
  to: { path: LAYERS.filter(([other]) => RANK[other] > RANK[name] || (RANK[other] === RANK[name] && other !== name)).map(([, p]) => p) },
}));

module.exports = {
  forbidden: [
    ...upward,
    { name: "no-circular", comment: "no import cycle, type-only imports included", severity: "error", from: {}, to: { circular: true } },
    { name: "known-layer", comment: "every file under src/ belongs to a layer of .dependency-cruiser.cjs", severity: "error", from: { path: "^src/", pathNot: LAYERS.map(([, p]) => p) }, to: {} },
    { name: "not-to-unresolvable", severity: "error", from: { path: "^src/" }, to: { couldNotResolve: true } },
  ],
  options: {
    parser: "swc",
    tsPreCompilationDeps: true,
    doNotFollow: { path: "node_modules" },
    exclude: { path: "node_modules" },
  },
};
