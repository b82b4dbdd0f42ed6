/**
 * Throw-away local OCI registries for tests, and a minimal registry client that pushes fixture images.
 *
 * A registry is Debian's `docker-registry` (distribution 2.8, the v2 API) bound to 127.0.0.1 on a free port,
 * with filesystem storage in its own temporary directory:
 *
 *   <tmpdir>/berth-registry-XXXXXX/
 *   ├── config.yml        our configuration (JSON, which is YAML)
 *   ├── registry.log      the registry's stdout and stderr (shown in start-up errors)
 *   ├── data/             storage.filesystem.rootdirectory
 *   ├── htpasswd          bcrypt users, when auth is on
 *   └── tls/              ca.pem, ca.key, server.pem, server.key, when TLS is on (made with the openssl CLI)
 *
 * Lifecycle: startRegistry() resolves once `GET /v2/` answers; stop() terminates the process by its PID (SIGTERM,
 * then SIGKILL after 5 s), waits for it to be reaped and removes the directory. Registries still running when the
 * test process exits are killed and their directories removed by an `exit` hook (also run on SIGINT, SIGTERM and
 * SIGHUP when nothing else handles them), and a running registry does not keep the process alive. The process
 * also runs under `setpriv --pdeathsig KILL`, so it dies with its parent even on SIGKILL (its directory stays).
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createReadStream, constants as fsConstants, rmSync } from "node:fs";
import { access, chmod, mkdir, mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import * as http from "node:http";
import * as https from "node:https";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { type Descriptor, type FixtureImage, MediaTypes } from "./images.js";

const execFileAsync = promisify(execFile);

/** Where Debian's distribution v2 registry binary lives. */
export const REGISTRY_BINARY = "/usr/bin/docker-registry";

/** Basic-auth credentials. */
export interface Credentials {
  username: string;
  password: string;
}

/**
 * How to reach a registry: its base URL, and optionally the CA that signed its certificate and the credentials
 * it requires. A {@link Registry} is one.
 */
export interface RegistryEndpoint {
  /** `http://127.0.0.1:<port>` or `https://127.0.0.1:<port>`, without a trailing slash. */
  url: string;
  /** PEM of the CA to trust for an https URL. */
  ca?: Buffer;
  auth?: Credentials;
}

/** A running registry process owned by this test process. */
export interface Registry extends RegistryEndpoint {
  /** `127.0.0.1:<port>`: the registry part of an image reference. */
  host: string;
  /** PID of the registry process (valid until stop() resolves). */
  pid: number;
  /** The temporary directory holding config, storage, log and certificates; removed by stop(). */
  dir: string;
  /** Path of the CA certificate (PEM), when TLS is on. */
  caPath?: string;
  /**
   * Kills the process by PID, waits until it has exited and removes `dir`. Idempotent; never rejects because the
   * process had already exited.
   */
  stop(): Promise<void>;
}

/** Options of {@link startRegistry}. */
export interface StartRegistryOptions {
  /** Serve https with a fresh self-signed CA and a server certificate for IP:127.0.0.1 and DNS:localhost. */
  tls?: boolean;
  /** Require these basic-auth credentials (htpasswd, bcrypt) for every /v2/ request. */
  auth?: Credentials;
  /** The registry binary; default {@link REGISTRY_BINARY}. */
  binary?: string;
  /** How long to wait for `/v2/` to answer; default 15 s. */
  startTimeoutMs?: number;
  signal?: AbortSignal;
}

/** True if the registry binary is installed and executable. */
export async function registryAvailable(binary: string = REGISTRY_BINARY): Promise<boolean> {
  try {
    await access(binary, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts a registry on 127.0.0.1 at a free port and resolves once `GET /v2/` answers (200, or 401 with auth).
 * On failure nothing is left behind (process killed, directory removed) and the error carries the registry log.
 */
export async function startRegistry(options: StartRegistryOptions = {}): Promise<Registry> {
  const binary = options.binary ?? REGISTRY_BINARY;
  installExitHook();
  const dir = await mkdtemp(join(tmpdir(), "berth-registry-"));
  liveDirs.add(dir);
  try {
    const tls = options.tls === true ? await makeCertificates(join(dir, "tls"), options.signal) : undefined;
    const htpasswd =
      options.auth !== undefined ? await writeHtpasswd(join(dir, "htpasswd"), options.auth, options.signal) : undefined;
    // The free port is found by binding port 0 and releasing it, so another process can take it before the
    // registry binds; a start that fails with EADDRINUSE is retried on a new port.
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const config = {
        version: 0.1,
        log: { level: "warn", formatter: "text", accesslog: { disabled: true } },
        storage: {
          filesystem: { rootdirectory: join(dir, "data") },
          delete: { enabled: true },
          maintenance: { uploadpurging: { enabled: false } },
        },
        http: {
          addr: `127.0.0.1:${port}`,
          secret: randomBytes(16).toString("hex"),
          headers: { "X-Content-Type-Options": ["nosniff"] },
          ...(tls ? { tls: { certificate: tls.certPath, key: tls.keyPath } } : {}),
        },
        ...(htpasswd ? { auth: { htpasswd: { realm: "berth-test", path: htpasswd } } } : {}),
      };
      const configPath = join(dir, "config.yml");
      await writeFile(configPath, `${JSON.stringify(config, null, 2)}\n`);
      const logPath = join(dir, "registry.log");
      const child = await spawnRegistry(binary, configPath, logPath);
      const host = `127.0.0.1:${port}`;
      const registry = createHandle(child, dir, {
        url: `${tls ? "https" : "http"}://${host}`,
        host,
        ...(tls ? { ca: tls.ca, caPath: tls.caPath } : {}),
        ...(options.auth ? { auth: options.auth } : {}),
      });
      try {
        await waitReady(registry, child, options.startTimeoutMs ?? 15_000, options.signal);
        return registry;
      } catch (err) {
        const log = await readFile(logPath, "utf8").catch(() => "");
        await registry.stopProcess();
        if (attempt < 5 && /address already in use/.test(log)) continue;
        throw new Error(`start registry ${host}: ${errorMessage(err)}${log ? `: ${log.trim().slice(-2000)}` : ""}`);
      }
    }
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    liveDirs.delete(dir);
    throw err;
  }
}

/** PIDs and directories of registries this process has not stopped yet; cleaned up synchronously at exit. */
const livePids = new Set<number>();
const liveDirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", cleanUpSync);
  // A signal that nobody else handles would end the process without "exit": clean up, then re-raise it with our
  // listener removed so the process still dies the default way. If another listener exists (node --test turns
  // SIGINT/SIGTERM of a test file into process.exit()), that listener decides and the exit hook cleans up.
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const onSignal = (): void => {
      process.removeListener(signal, onSignal);
      if (process.listenerCount(signal) > 0) return;
      cleanUpSync();
      process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

/** Kills every live registry and removes every live directory, synchronously (usable in an exit hook). */
function cleanUpSync(): void {
  for (const pid of livePids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
  livePids.clear();
  liveDirs.clear();
}

async function spawnRegistry(binary: string, configPath: string, logPath: string): Promise<ChildProcess> {
  const log = await open(logPath, "a");
  try {
    const usePdeathsig = await access("/usr/bin/setpriv", fsConstants.X_OK).then(
      () => true,
      () => false,
    );
    // setpriv execs the registry, so the PID we hold is the registry's.
    const [file, args] = usePdeathsig
      ? ["/usr/bin/setpriv", ["--pdeathsig", "KILL", "--", binary, "serve", configPath]]
      : [binary, ["serve", configPath]];
    const child = spawn(file, args, { stdio: ["ignore", log.fd, log.fd], env: registryEnv() });
    await Promise.race([once(child, "spawn"), once(child, "error").then(([e]: unknown[]) => Promise.reject(e))]);
    if (child.pid === undefined) throw new Error(`spawn ${binary}: no pid`);
    livePids.add(child.pid);
    // A forgotten registry must not keep the test process alive; the exit hook kills it. stop() re-refs the
    // child while it waits for the exit.
    child.unref();
    return child;
  } finally {
    await log.close();
  }
}

/** The environment without REGISTRY_* variables, which would override our config file. */
function registryEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith("REGISTRY_") && !k.startsWith("OTEL_")) env[k] = v;
  return env;
}

interface Handle extends Registry {
  /** Kills and reaps the process without removing the directory. */
  stopProcess(): Promise<void>;
}

function createHandle(
  child: ChildProcess,
  dir: string,
  endpoint: { url: string; host: string; ca?: Buffer; caPath?: string; auth?: Credentials },
): Handle {
  const pid = child.pid ?? -1;
  const exited: Promise<void> =
    child.exitCode !== null || child.signalCode !== null
      ? Promise.resolve()
      : once(child, "exit").then(() => undefined);
  let stopping: Promise<void> | undefined;
  const stopProcess = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.ref();
      child.kill("SIGTERM");
      const grace = new AbortController();
      const killed = await Promise.race([
        exited.then(() => true),
        sleep(5000, false, { signal: grace.signal }).catch(() => true),
      ]);
      grace.abort();
      if (!killed) child.kill("SIGKILL");
    }
    await exited;
    livePids.delete(pid);
  };
  return {
    ...endpoint,
    pid,
    dir,
    stopProcess,
    stop() {
      stopping ??= (async () => {
        await stopProcess();
        await rm(dir, { recursive: true, force: true });
        liveDirs.delete(dir);
      })();
      return stopping;
    },
  };
}

async function waitReady(
  registry: Registry,
  child: ChildProcess,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  const deadline = AbortSignal.any([AbortSignal.timeout(timeoutMs), ...(signal ? [signal] : [])]);
  const agent = createAgent(registry);
  try {
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`registry exited (${child.exitCode ?? child.signalCode}) before answering`);
      }
      deadline.throwIfAborted();
      try {
        const res = await registryRequest(registry, "/v2/", {
          agent,
          signal: AbortSignal.any([deadline, AbortSignal.timeout(1000)]),
        });
        if (res.status === 200 || (registry.auth !== undefined && res.status === 401)) return;
      } catch (err) {
        if (deadline.aborted) throw err;
        // not listening yet
      }
      await sleep(20);
    }
  } finally {
    agent.destroy();
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, "close");
  return port;
}

interface Certificates {
  ca: Buffer;
  caPath: string;
  certPath: string;
  keyPath: string;
}

/** A fresh CA (P-256) and a server certificate for IP:127.0.0.1 and DNS:localhost signed by it. */
async function makeCertificates(dir: string, signal: AbortSignal | undefined): Promise<Certificates> {
  await mkdir(dir, { mode: 0o700 });
  const p = (name: string): string => join(dir, name);
  const run = async (args: string[]): Promise<void> => {
    try {
      await execFileAsync("openssl", args, { ...(signal ? { signal } : {}) });
    } catch (err) {
      throw new Error(`openssl ${args[0] ?? ""}: ${errorMessage(err)}`);
    }
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await run([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    p("ca.key"),
    "-out",
    p("ca.pem"),
    "-days",
    "3650",
    "-subj",
    "/CN=berth test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  await run(["req", "-new", ...ec, "-keyout", p("server.key"), "-out", p("server.csr"), "-subj", "/CN=127.0.0.1"]);
  await writeFile(
    p("server.ext"),
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n" +
      "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
  );
  await run([
    "x509",
    "-req",
    "-in",
    p("server.csr"),
    "-CA",
    p("ca.pem"),
    "-CAkey",
    p("ca.key"),
    "-set_serial",
    `0x${randomBytes(8).toString("hex")}`,
    "-days",
    "3650",
    "-extfile",
    p("server.ext"),
    "-out",
    p("server.pem"),
  ]);
  await chmod(p("server.key"), 0o600);
  return { ca: await readFile(p("ca.pem")), caPath: p("ca.pem"), certPath: p("server.pem"), keyPath: p("server.key") };
}

async function writeHtpasswd(path: string, auth: Credentials, signal: AbortSignal | undefined): Promise<string> {
  // -B bcrypt (the only scheme distribution accepts) at the minimum cost 4 (every request is verified, and these
  // are throw-away test credentials), -b password from argv, -n print instead of editing a file.
  const { stdout } = await execFileAsync("htpasswd", ["-Bbn", "-C", "4", auth.username, auth.password], {
    encoding: "utf8",
    ...(signal ? { signal } : {}),
  });
  await writeFile(path, stdout, { mode: 0o600 });
  return path;
}

// ---------------------------------------------------------------------------------------------------------------
// Client

/** A response with its whole body read. */
export interface RegistryResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** Options of {@link registryRequest}. */
export interface RegistryRequestOptions {
  method?: string;
  headers?: Record<string, string>;
  /** A buffer, or a file streamed from disk. */
  body?: Buffer | { path: string; size: number };
  /** Send no Authorization header even if the endpoint has credentials. */
  anonymous?: boolean;
  /** An agent from {@link createAgent} to reuse connections; otherwise one is made for this request. */
  agent?: http.Agent;
  signal?: AbortSignal;
}

/**
 * One HTTP request to `endpoint.url + path` (path may also be an absolute URL, e.g. an upload Location), trusting
 * `endpoint.ca` and sending `endpoint.auth` as basic auth. Resolves with any status; rejects only on transport errors.
 */
export async function registryRequest(
  endpoint: RegistryEndpoint,
  path: string,
  options: RegistryRequestOptions = {},
): Promise<RegistryResponse> {
  const url = new URL(path, `${endpoint.url}/`);
  const agent = options.agent ?? createAgent(endpoint, false);
  const headers: Record<string, string> = { ...options.headers };
  if (endpoint.auth !== undefined && options.anonymous !== true) {
    headers.authorization = `Basic ${Buffer.from(`${endpoint.auth.username}:${endpoint.auth.password}`).toString("base64")}`;
  }
  const body = options.body;
  if (body !== undefined) headers["content-length"] = String(Buffer.isBuffer(body) ? body.length : body.size);
  const requestOptions: http.RequestOptions = {
    method: options.method ?? "GET",
    headers,
    agent,
    ...(options.signal ? { signal: options.signal } : {}),
  };
  const req = url.protocol === "https:" ? https.request(url, requestOptions) : http.request(url, requestOptions);
  try {
    const sendBody = async (): Promise<void> => {
      if (body === undefined) req.end();
      else if (Buffer.isBuffer(body)) req.end(body);
      else await pipelineFile(body.path, req);
    };
    const [responseEvent] = await Promise.all([once(req, "response"), sendBody()]);
    const res = responseEvent[0] as http.IncomingMessage;
    const chunks: Buffer[] = [];
    for await (const chunk of res) chunks.push(chunk as Buffer);
    return { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) };
  } finally {
    if (options.agent === undefined) agent.destroy();
  }
}

async function pipelineFile(path: string, req: http.ClientRequest): Promise<void> {
  await pipeline(createReadStream(path), req);
}

/** An agent for `endpoint` that trusts its CA; destroy it when done. */
export function createAgent(endpoint: RegistryEndpoint, keepAlive = true): http.Agent {
  return endpoint.url.startsWith("https:")
    ? new https.Agent({ keepAlive, ...(endpoint.ca ? { ca: endpoint.ca } : {}) })
    : new http.Agent({ keepAlive });
}

/** Where pushImage() reads blobs from; a FixtureImages is one. */
export interface BlobSource {
  /** Path of the file holding the blob with this digest. */
  blobPath(digest: string): string;
}

/** Options of {@link pushImage}. */
export interface PushImageOptions {
  blobs: BlobSource;
  /** Overrides the endpoint's credentials. */
  auth?: Credentials;
  /** Overrides the endpoint's CA (PEM). */
  ca?: Buffer;
  /** Reuse connections across pushes; otherwise one agent per push. */
  agent?: http.Agent;
  /**
   * A repository of the same registry that may already hold some of the blobs: missing blobs are first
   * cross-mounted from it (POST uploads/?mount=&from=), and uploaded only if the registry declines.
   */
  mountFrom?: string;
  signal?: AbortSignal;
}

/**
 * Pushes `image` to `registry` as `repo:tag` with the plain v2 API: each blob is skipped if HEAD finds it, else
 * uploaded monolithically (POST uploads/, PUT ?digest=); then each manifest is PUT (an index's children by
 * digest first, then the index by tag). Resolves once the registry has acknowledged the tag with the expected
 * digest.
 */
export async function pushImage(
  registry: RegistryEndpoint,
  repo: string,
  tag: string,
  image: FixtureImage,
  options: PushImageOptions,
): Promise<void> {
  const endpoint: RegistryEndpoint = { url: registry.url };
  const ca = options.ca ?? registry.ca;
  const auth = options.auth ?? registry.auth;
  if (ca !== undefined) endpoint.ca = ca;
  if (auth !== undefined) endpoint.auth = auth;
  const agent = options.agent ?? createAgent(endpoint);
  const ctx: PushContext = {
    endpoint,
    repo,
    agent,
    blobs: options.blobs,
    signal: options.signal,
    mountFrom: options.mountFrom,
  };
  try {
    const isIndex =
      image.target.mediaType === MediaTypes.ociIndex || image.target.mediaType === MediaTypes.dockerManifestList;
    for (const m of image.manifests) {
      await Promise.all([m.config, ...m.layers].map((d) => pushBlob(ctx, d)));
      await putManifest(ctx, isIndex ? m.descriptor.digest : tag, m.descriptor);
    }
    if (isIndex) await putManifest(ctx, tag, image.target);
  } catch (err) {
    throw new Error(`push ${repo}:${tag} to ${registry.url}: ${errorMessage(err)}`);
  } finally {
    if (options.agent === undefined) agent.destroy();
  }
}

interface PushContext {
  endpoint: RegistryEndpoint;
  repo: string;
  agent: http.Agent;
  blobs: BlobSource;
  signal: AbortSignal | undefined;
  mountFrom: string | undefined;
}

function req(ctx: PushContext, path: string, options: RegistryRequestOptions = {}): Promise<RegistryResponse> {
  return registryRequest(ctx.endpoint, path, {
    ...options,
    agent: ctx.agent,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
  });
}

async function pushBlob(ctx: PushContext, d: Descriptor): Promise<void> {
  const head = await req(ctx, `/v2/${ctx.repo}/blobs/${d.digest}`, { method: "HEAD" });
  if (head.status === 200) return;
  const mount =
    ctx.mountFrom !== undefined && ctx.mountFrom !== ctx.repo ? `?mount=${d.digest}&from=${ctx.mountFrom}` : "";
  const start = await req(ctx, `/v2/${ctx.repo}/blobs/uploads/${mount}`, { method: "POST" });
  if (mount !== "" && start.status === 201) return;
  const location = start.headers.location;
  if (start.status !== 202 || location === undefined) throw httpError(`start upload of ${d.digest}`, start);
  const url = new URL(location, `${ctx.endpoint.url}/`);
  url.searchParams.set("digest", d.digest);
  const put = await req(ctx, url.toString(), {
    method: "PUT",
    headers: { "content-type": "application/octet-stream" },
    body: { path: ctx.blobs.blobPath(d.digest), size: d.size },
  });
  if (put.status !== 201) throw httpError(`upload ${d.digest}`, put);
}

async function putManifest(ctx: PushContext, reference: string, d: Descriptor): Promise<void> {
  const res = await req(ctx, `/v2/${ctx.repo}/manifests/${reference}`, {
    method: "PUT",
    headers: { "content-type": d.mediaType },
    body: { path: ctx.blobs.blobPath(d.digest), size: d.size },
  });
  if (res.status !== 201) throw httpError(`put manifest ${reference}`, res);
  const digest = res.headers["docker-content-digest"];
  if (digest !== d.digest)
    throw new Error(`put manifest ${reference}: registry says digest ${String(digest)}, want ${d.digest}`);
}

function httpError(what: string, res: RegistryResponse): Error {
  return new Error(`${what}: status ${res.status}: ${res.body.toString("utf8").trim().slice(0, 500)}`);
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
