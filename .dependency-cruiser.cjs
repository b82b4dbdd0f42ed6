// The import rules of ../shared/STYLE.md ("The shape of the tree"), checked by `npm run deps:rules` in the
// test command (scripts/test.sh). Every rule is an error: a violation fails the test command.
//
// LAYERS is the one place the layer order is written, lowest first. A folder under src/ may import only
// folders on a lower row; folders on the same row are peers and do not import each other. The order
// follows STYLE.md's tree and the README's layout section, read against what the code actually needs:
// store/ is generic persistent records, so images/ (image records, GC) sits above it; network/ sits below
// pods/ so that the sandbox domain can drive it; streaming/ (the exec/attach/port-forward server) sits
// above pods/, which serves it, never the other way; cli/ sits above kubelet/, whose commands it hosts.
// A new folder under src/ must be added here (rule "folder-has-a-layer" says so).
const LAYERS = [
  ["errdefs"], //                            error kinds
  ["log", "util", "crilog"], //              logging, atomic writes, ids; CRI log files (read, join, follow)
  ["sys"], //                                what Node lacks: mounts, netns, /proc, cgroups, spawn
  ["config", "metrics"], //                  config.toml; Prometheus metrics (fed by observers)
  ["content", "store", "oci"], //           blobs; persistent records; runtime-spec builders
  ["snapshots", "archive"], //               overlay snapshots; layer tars
  ["images", "runtime", "network"], //       pull/push/GC; runc + conmon; CNI
  ["build"], //                              Dockerfile builder: steps on snapshots through the runtime
  ["pods"], //                               sandboxes and containers: the domain under the CRI
  ["streaming"], //                          exec/attach/port-forward server (SPDY, WebSocket)
  ["cri", "client"], //                      the server's CRI adapter; the typed client of that socket
  ["daemon", "kubelet"], //                  composition root of berthd; the pod runner (library)
  ["cli"], //                                the berth CLI (and the pod runner's commands)
  ["bin"], //                                entry points: berthd and berth
];

// The CLI and the pod runner talk to berthd only through client/: they never import the server's domain.
const CLIENT_SIDE = ["cli", "kubelet"];
const SERVER_ONLY = [
  ...["content", "store", "oci", "snapshots", "archive", "images", "runtime", "network", "build", "pods"],
  ...["cri", "daemon"],
];

// Entry points only hand argv over: berth's to cli/, berthd's to daemon/.
const ENTRY_POINTS_USE = ["cli", "daemon"];

// The CRI adapter is thin: it reaches the host (mounts, /proc, runc, CNI, stored records, blobs) only
// through the domain folders under it, never directly.
const CRI_NEVER_USES = ["sys", "content", "store", "oci", "snapshots", "archive", "runtime", "network"];

// Only these folders speak the generated protobuf types (STYLE.md: "only cri/, client/, cli/ and kubelet/
// import the generated CRI types"); every other domain speaks its own types.
const PROTO_SPEAKERS = ["cri", "client", "cli", "kubelet"];

const SRC = "^src/";
const oneOf = (names) => `(${names.join("|")})`;
// Production code only: tests (beside the code or under test/) and the bench may import anything.
const PRODUCTION = { path: SRC, pathNot: ["\\.test\\.ts$"] };

const layerRules = LAYERS.map((row, i) => ({
  name: `layer-${row.join("-")}`,
  comment:
    `${row.join(", ")} may import only lower layers (${LAYERS.slice(0, i).flat().join(", ") || "none"}); ` +
    "the order is LAYERS in .dependency-cruiser.cjs",
  severity: "error",
  from: { ...PRODUCTION, path: `${SRC}${oneOf(row)}/` },
  // Its own folder is fine ($1 is the folder the path matched); a peer or anything above is not.
  to: { path: `${SRC}${oneOf(LAYERS.slice(i).flat())}/`, pathNot: `${SRC}$1/` },
}));

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: "folder-has-a-layer",
      comment: "every folder under src/ (but the generated api/) has a row in LAYERS in .dependency-cruiser.cjs",
      severity: "error",
      from: { ...PRODUCTION, pathNot: [`${SRC}${oneOf([...LAYERS.flat(), "api"])}/`, "\\.test\\.ts$"] },
      to: {},
    },
    {
      name: "no-deep-import",
      comment:
        "another folder is imported only through its index.ts (a folder's curated surface), or a sub-folder's " +
        "index.ts where the folder splits off a part loaded on demand (client/streaming); " +
        "within a folder any file may import any other",
      severity: "error",
      from: { ...PRODUCTION, path: `${SRC}([^/]+)/` },
      to: {
        path: `${SRC}[^/]+/.`,
        pathNot: [`${SRC}$1/`, `${SRC}[^/]+/index\\.ts$`, `${SRC}[^/]+/[^/]+/index\\.ts$`, `${SRC}api/gen/`],
      },
    },
    {
      name: "client-side-through-client",
      comment: `${CLIENT_SIDE.join(" and ")} talk to berthd only through client/, never its domain folders`,
      severity: "error",
      from: { ...PRODUCTION, path: `${SRC}${oneOf(CLIENT_SIDE)}/` },
      to: { path: `${SRC}${oneOf(SERVER_ONLY)}/` },
    },
    {
      name: "bin-only-entry-points",
      comment: `bin/ holds entry points only: it imports ${ENTRY_POINTS_USE.join(" and ")}, nothing else of src/`,
      severity: "error",
      from: { ...PRODUCTION, path: `${SRC}bin/` },
      to: { path: SRC, pathNot: `${SRC}${oneOf(ENTRY_POINTS_USE)}/` },
    },
    {
      name: "cri-is-thin",
      comment: `cri/ reaches the host through the domain, never ${CRI_NEVER_USES.join(", ")} directly`,
      severity: "error",
      from: { ...PRODUCTION, path: `${SRC}cri/` },
      to: { path: `${SRC}${oneOf(CRI_NEVER_USES)}/` },
    },
    {
      name: "protobuf-only-at-the-edges",
      comment: `only ${PROTO_SPEAKERS.join(", ")} import the generated protobuf types (src/api/gen)`,
      severity: "error",
      from: { ...PRODUCTION, pathNot: [`${SRC}${oneOf([...PROTO_SPEAKERS, "api"])}/`, "\\.test\\.ts$"] },
      to: { path: `${SRC}api/gen/` },
    },
    {
      name: "src-never-imports-tests",
      comment: "test helpers and fixtures live under test/; src/ never imports them, nor a *.test.ts file",
      severity: "error",
      from: { path: SRC, pathNot: "\\.test\\.ts$" },
      to: { path: ["^test/", "^bench/", "\\.test\\.ts$"] },
    },
    {
      name: "no-cycles",
      comment: "imports flow one way: no cycles (madge checks the same)",
      severity: "error",
      from: { path: SRC },
      to: { circular: true },
    },
    {
      name: "resolvable",
      comment: "every relative import resolves to a file (else the rules above would silently see nothing)",
      severity: "error",
      from: {},
      to: { couldNotResolve: true, dependencyTypesNot: ["npm", "npm-dev", "core"] },
    },
  ],
  options: {
    // Run on src/, test/ and bench/ (tests are checked for resolvability only). No includeOnly: it would
    // also hide the imports that fail to resolve.
    // Generated code is a leaf: its own imports are not checked.
    doNotFollow: { path: ["node_modules", "^src/api/gen/"] },
    // Type-only imports count: they tie the layers together just as much.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["import", "require", "node", "default", "types"],
      extensions: [".ts", ".js", ".d.ts"],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
