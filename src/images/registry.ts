import { createHash } from "node:crypto";
import { RuntimeError } from "../errdefs/index.js";
import { type Logger, silentLogger } from "../log/index.js";
import { Authorizer, parseWwwAuthenticate, pullScope, pushScope, type RegistryCredentials, secretFor } from "./auth.js";
import { type HostCapability, loadRegistryHosts, type RegistryHost } from "./hosts.js";
import { type Descriptor, MANIFEST_ACCEPT, MAX_MANIFEST_SIZE } from "./manifest.js";
import { type Reference, repositoryName } from "./reference.js";
import {
  discard,
  errorDetail,
  type HttpRequestOptions,
  type HttpResponse,
  readBody,
  redact,
  Transport,
} from "./transport.js";

/**
 * A client of the OCI distribution spec (Docker Registry HTTP API v2): pulls here, and the
 * authenticated requests push.ts builds the push protocol from.
 *
 * Lifecycle: one `RegistryClient` per daemon (it owns connection pools and the token cache;
 * `close()` ends them); one `Repository` per pull, which reads the host configuration once and
 * carries the pull's credentials. Every request takes an AbortSignal.
 *
 * Hosts are tried in order (mirrors, then upstream): tags are resolved only on hosts with the
 * `resolve` capability, digests fetched from hosts with `pull`. A 404 or any failure moves on to
 * the next host; when all fail, the first real failure is reported (or NotFound when every host
 * answered 404), as containerd does. Requests to a mirror carry `?ns=<registry>`.
 */

/** Options of {@link RegistryClient}. */
export interface RegistryClientOptions {
  /** `registry.config_path`: hosts.toml roots separated by ":"; empty = no configuration. */
  configPath?: string;
  logger?: Logger;
  /** Overrides host lookup (tests). */
  hosts?: (registry: string) => Promise<RegistryHost[]>;
  /** Total deadline of manifest and token requests; default 60 s. */
  requestTimeoutMs?: number;
  /** Longest silence of any request, blobs included; default 5 minutes. */
  idleTimeoutMs?: number;
}

/** A manifest or index fetched and verified against its digest. */
export interface FetchedManifest {
  descriptor: Descriptor;
  bytes: Buffer;
}

/** The registry client; see the module comment. */
export class RegistryClient {
  private readonly transport: Transport;
  private readonly authorizer: Authorizer;
  private readonly log: Logger;
  private readonly hostsFor: (registry: string) => Promise<RegistryHost[]>;

  constructor(options: RegistryClientOptions = {}) {
    this.log = options.logger ?? silentLogger();
    this.transport = new Transport(this.log, {
      ...(options.requestTimeoutMs !== undefined ? { requestTimeoutMs: options.requestTimeoutMs } : {}),
      ...(options.idleTimeoutMs !== undefined ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
    });
    const configPath = options.configPath ?? "";
    this.hostsFor = options.hosts ?? ((registry) => loadRegistryHosts(configPath, registry));
    this.authorizer = new Authorizer((url, init) =>
      this.transport.request(undefined, url, {
        method: init.method,
        headers: init.headers,
        ...(init.body !== undefined ? { body: init.body } : {}),
        ...(init.signal ? { signal: init.signal } : {}),
      }),
    );
  }

  /** A handle on one repository for one pull, with that pull's credentials. */
  async repository(ref: Reference, options: { credentials?: RegistryCredentials } = {}): Promise<Repository> {
    const hosts = await this.hostsFor(ref.domain);
    return new Repository(ref, hosts, options.credentials, this.transport, this.authorizer, this.log);
  }

  /** Checks `credentials` against the API root of `ref`'s registry (see {@link Repository.checkLogin}). */
  async checkLogin(
    ref: Reference,
    credentials: RegistryCredentials,
    options: { signal?: AbortSignal } = {},
  ): Promise<void> {
    const repo = await this.repository(ref, { credentials });
    await repo.checkLogin(options);
  }

  /** Closes pooled connections. In-flight requests fail. */
  close(): void {
    this.transport.close();
  }
}

const MAX_REDIRECTS = 10;

/** One repository on one registry, seen through its configured hosts. */
export class Repository {
  constructor(
    readonly ref: Reference,
    private readonly hosts: RegistryHost[],
    private readonly credentials: RegistryCredentials | undefined,
    private readonly transport: Transport,
    private readonly authorizer: Authorizer,
    private readonly log: Logger,
  ) {}

  /**
   * Resolves the reference's tag to the descriptor of its manifest or index (HEAD, then GET when
   * the registry does not send `Docker-Content-Digest`, in which case the verified bytes are
   * returned too). A digest reference resolves to its digest without a request.
   */
  async resolve(options: { signal?: AbortSignal } = {}): Promise<{ descriptor: Descriptor; bytes?: Buffer }> {
    const { ref } = this;
    if (ref.digest !== undefined) return { descriptor: { mediaType: "", digest: ref.digest, size: -1 } };
    const tag = ref.tag ?? "latest";
    return this.eachHost("resolve", `resolve ${repositoryName(ref)}:${tag}`, async (host) => {
      const head = await this.send(
        host,
        "HEAD",
        ["manifests", tag],
        { accept: MANIFEST_ACCEPT.join(", ") },
        options.signal,
      );
      if (head.status === 200) {
        await discard(head);
        const digest = header(head, "docker-content-digest");
        const size = Number(header(head, "content-length") ?? "-1");
        const mediaType = header(head, "content-type")?.split(";")[0]?.trim() ?? "";
        if (digest !== undefined && /^sha256:[a-f0-9]{64}$/.test(digest) && size >= 0) {
          return { descriptor: { mediaType, digest, size } };
        }
      } else if (head.status !== 405 && head.status !== 400) {
        // Some registries refuse HEAD; anything else (404, 5xx) is this host's answer.
        return nextHost(head);
      } else {
        await discard(head);
      }
      const get = await this.send(
        host,
        "GET",
        ["manifests", tag],
        { accept: MANIFEST_ACCEPT.join(", ") },
        options.signal,
      );
      if (get.status !== 200) return nextHost(get);
      const bytes = await readBody(get, MAX_MANIFEST_SIZE, `manifest ${repositoryName(ref)}:${tag}`);
      const digest = sha256(bytes);
      const claimed = header(get, "docker-content-digest");
      if (claimed !== undefined && claimed !== digest) {
        throw new RuntimeError(
          "InvalidArgument",
          `manifest ${repositoryName(ref)}:${tag}: digest mismatch: registry says ${claimed}, content is ${digest}`,
        );
      }
      const mediaType = header(get, "content-type")?.split(";")[0]?.trim() ?? "";
      return { descriptor: { mediaType, digest, size: bytes.length }, bytes };
    });
  }

  /** Fetches a manifest or index by digest and verifies its digest (and size, when known). */
  async fetchManifest(descriptor: Descriptor, options: { signal?: AbortSignal } = {}): Promise<FetchedManifest> {
    const what = `manifest ${descriptor.digest}`;
    return this.eachHost("pull", `fetch ${what}`, async (host) => {
      const res = await this.send(
        host,
        "GET",
        ["manifests", descriptor.digest],
        { accept: MANIFEST_ACCEPT.join(", ") },
        options.signal,
      );
      if (res.status !== 200) return nextHost(res);
      const bytes = await readBody(res, MAX_MANIFEST_SIZE, what);
      const digest = sha256(bytes);
      if (digest !== descriptor.digest)
        throw new RuntimeError("InvalidArgument", `${what}: digest mismatch: content is ${digest}`);
      if (descriptor.size >= 0 && bytes.length !== descriptor.size) {
        throw new RuntimeError(
          "InvalidArgument",
          `${what}: size mismatch: want ${descriptor.size}, got ${bytes.length}`,
        );
      }
      const mediaType = descriptor.mediaType || (header(res, "content-type")?.split(";")[0]?.trim() ?? "");
      return { descriptor: { ...descriptor, mediaType, size: bytes.length }, bytes };
    });
  }

  /**
   * Opens a blob's byte stream, following redirects. Credentials go to the registry host's own
   * origin only, judged at every hop against that origin (never against the previous hop, which a
   * foreign host may have chosen): object stores and CDNs get none, not even after a second
   * redirect within their own domain.
   * The caller verifies the bytes (the content store does, while ingesting) and must consume or
   * destroy the stream. A Content-Length that contradicts the descriptor fails at once.
   */
  async fetchBlob(
    descriptor: Descriptor,
    options: { signal?: AbortSignal } = {},
  ): Promise<AsyncIterable<Uint8Array> & { destroy(): void }> {
    const what = `blob ${descriptor.digest}`;
    return this.eachHost("pull", `fetch ${what}`, async (host) => {
      let res = await this.send(host, "GET", ["blobs", descriptor.digest], {}, options.signal, { deadline: false });
      for (let hops = 0; res.status >= 300 && res.status < 400 && res.status !== 304; hops++) {
        const location = header(res, "location");
        await discard(res);
        if (location === undefined || hops >= MAX_REDIRECTS) {
          throw new RuntimeError(
            "Unavailable",
            `${what}: ${location === undefined ? "redirect without location" : "too many redirects"}`,
          );
        }
        const next = new URL(location, res.url);
        if (next.protocol !== "http:" && next.protocol !== "https:")
          throw new RuntimeError("Unavailable", `${what}: redirect to unsupported scheme ${next.protocol}`);
        const authz = isOwnOrigin(host, next)
          ? await this.authorizer.prepare(originOf(host), [pullScope(this.ref.path)], this.secret(host), {
              allowPlainHttpRealm: speaksPlainHttp(host),
              ...(options.signal ? { signal: options.signal } : {}),
            })
          : undefined;
        res = await this.transport.request(host, next, {
          headers: authz ? { authorization: authz } : {},
          deadline: false,
          ...(options.signal ? { signal: options.signal } : {}),
        });
      }
      if (res.status !== 200) return nextHost(res);
      const length = header(res, "content-length");
      if (length !== undefined && Number(length) !== descriptor.size) {
        res.body.destroy();
        throw new RuntimeError(
          "InvalidArgument",
          `${what}: size mismatch: want ${descriptor.size}, registry sends ${length}`,
        );
      }
      return res.body;
    });
  }

  private secret(host: RegistryHost) {
    return secretFor(this.credentials, this.ref.domain, host.host);
  }

  /**
   * Sends one request with authentication: up-front from the origin's known challenge, else
   * anonymously, then once more after a 401 with what the challenge asks for. A second 401 is
   * Unauthenticated.
   */
  private async send(
    host: RegistryHost,
    method: string,
    parts: string[],
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
    extra: { deadline?: boolean } = {},
  ): Promise<HttpResponse> {
    return this.sendTo(host, this.urlOf(host, parts), method, {
      headers,
      scopes: [pullScope(this.ref.path)],
      ...extra,
      ...(signal ? { signal } : {}),
    });
  }

  /** The URL of `parts` under this repository's API path on `host` (with `?ns=` for a mirror). */
  private urlOf(host: RegistryHost, parts: string[]): URL {
    const url = new URL(`${host.scheme}://${host.host}${host.path}/${this.ref.path}/${parts.join("/")}`);
    if (isMirror(host.host, this.ref.domain)) url.searchParams.set("ns", this.ref.domain);
    return url;
  }

  /**
   * Sends one request with authentication: up-front from the origin's known challenge, else
   * anonymously, then once more after a 401 with what the challenge asks for. A second 401 is
   * Unauthenticated. A URL off the host's own origin (an upload location on an object store) gets
   * no credentials at all.
   */
  private async sendTo(
    host: RegistryHost,
    url: URL,
    method: string,
    o: {
      headers?: Record<string, string>;
      scopes: string[];
      signal?: AbortSignal;
      deadline?: boolean;
      body?: HttpRequestOptions["body"];
    },
  ): Promise<HttpResponse> {
    const { signal, scopes } = o;
    const origin = originOf(host);
    const own = isOwnOrigin(host, url);
    const secret = own ? this.secret(host) : undefined;
    const base: Record<string, string | string[]> = own ? { ...host.header, ...o.headers } : { ...o.headers };
    const go = (authz: string | undefined) =>
      this.transport.request(host, url, {
        method,
        headers: authz ? { ...base, authorization: authz } : base,
        ...(o.deadline !== undefined ? { deadline: o.deadline } : {}),
        ...(o.body !== undefined ? { body: o.body } : {}),
        ...(signal ? { signal } : {}),
      });
    if (!own) return go(undefined);
    const authOptions = { allowPlainHttpRealm: speaksPlainHttp(host), ...(signal ? { signal } : {}) };

    const first = await this.authorizer.prepare(origin, scopes, secret, authOptions).catch((err: unknown) => {
      throw wrapAuth(err, method, url);
    });
    const res = await go(first);
    if (res.status !== 401) return res;
    const challenges = parseWwwAuthenticate(res.headersDistinct["www-authenticate"] ?? []);
    await discard(res);
    const authz = await this.authorizer
      .authorize(origin, challenges, scopes, secret, { rejected: first, ...authOptions })
      .catch((err: unknown) => {
        throw wrapAuth(err, method, res.url);
      });
    const retry = await go(authz);
    if (retry.status === 401) {
      const detail = await errorDetail(retry);
      throw new RuntimeError(
        "Unauthenticated",
        `${method} ${redact(retry.url)}: unauthorized${secret ? ": the credentials were rejected" : ": credentials required"}${detail ? `: ${detail}` : ""}`,
      );
    }
    return retry;
  }

  /**
   * The host pushes go to: the first one configured with the `push` capability (a push is never
   * split over hosts). Throws NotFound when none is.
   */
  pushHost(): RegistryHost {
    const host = this.hosts.find((h) => h.capabilities.includes("push"));
    if (host === undefined)
      throw new RuntimeError("NotFound", `no registry host configured for push on ${this.ref.domain}`);
    return host;
  }

  /**
   * One authenticated request to the push host, for the push protocol (push.ts): `target` is a
   * path under this repository (`["blobs", "uploads", ""]`) or an absolute URL (an upload's
   * `Location`). `scopes` defaults to pull and push on this repository; a mount adds pull on its
   * source. Blob bodies opt out of the total deadline (`deadline: false`).
   */
  pushRequest(
    method: string,
    target: string[] | URL,
    o: {
      headers?: Record<string, string>;
      query?: Record<string, string>;
      scopes?: string[];
      body?: HttpRequestOptions["body"];
      deadline?: boolean;
      signal?: AbortSignal;
    } = {},
  ): Promise<HttpResponse> {
    const host = this.pushHost();
    const url = Array.isArray(target) ? this.urlOf(host, target) : new URL(target);
    for (const [k, v] of Object.entries(o.query ?? {})) url.searchParams.set(k, v);
    return this.sendTo(host, url, method, {
      scopes: o.scopes ?? [pushScope(this.ref.path)],
      ...(o.headers ? { headers: o.headers } : {}),
      ...(o.body !== undefined ? { body: o.body } : {}),
      ...(o.deadline !== undefined ? { deadline: o.deadline } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
    });
  }

  /**
   * Checks that the credentials open the registry's API root (`GET /v2/`) on the push host, as
   * `docker login` does: the token flow runs with no repository scope. Throws Unauthenticated
   * when they are refused.
   */
  async checkLogin(options: { signal?: AbortSignal } = {}): Promise<void> {
    const host = this.pushHost();
    const url = new URL(`${host.scheme}://${host.host}${host.path}/`);
    const res = await this.sendTo(host, url, "GET", {
      scopes: [],
      ...(options.signal ? { signal: options.signal } : {}),
    });
    if (res.status === 200) return discard(res);
    const detail = await errorDetail(res);
    throw new RuntimeError(
      res.status === 403 ? "PermissionDenied" : "Unavailable",
      `GET ${redact(res.url)}: unexpected status ${res.status}${detail ? `: ${detail}` : ""}`,
    );
  }

  /**
   * Runs `attempt` on each host with `capability` in order. An attempt returns a value (done) or
   * a non-success response (try the next host); a thrown error also moves on (a mirror may want
   * credentials meant for the upstream), except cancellation and bad content, which another host
   * would not cure.
   */
  private async eachHost<T>(
    capability: HostCapability,
    what: string,
    attempt: (host: RegistryHost) => Promise<T | NextHost>,
  ): Promise<T> {
    const hosts = this.hosts.filter(
      (h) => h.capabilities.includes(capability) && (capability !== "resolve" || h.capabilities.includes("pull")),
    );
    if (hosts.length === 0)
      throw new RuntimeError(
        "NotFound",
        `${what}: no registry host configured for ${capability} on ${this.ref.domain}`,
      );
    let firstError: RuntimeError | undefined;
    for (const host of hosts) {
      let result: T | NextHost;
      try {
        result = await attempt(host);
      } catch (err) {
        if (!(err instanceof RuntimeError) || FINAL_KINDS.has(err.kind)) {
          throw err instanceof RuntimeError
            ? new RuntimeError(err.kind, `${what}: ${err.message}`, { cause: err })
            : err;
        }
        this.log.info({ host: host.host, err: err.message }, "registry host failed, trying the next one");
        firstError ??= err;
        continue;
      }
      if (!isNextHost(result)) return result;
      const res = result[NEXT_HOST];
      const status = res.status;
      const detail = await errorDetail(res);
      if (status === 404) {
        this.log.debug({ host: host.host }, "not found on registry host, trying the next one");
        continue;
      }
      const kind = status === 403 ? "PermissionDenied" : status === 429 ? "ResourceExhausted" : "Unavailable";
      firstError ??= new RuntimeError(
        kind,
        `${redact(res.url)}: unexpected status ${status}${detail ? `: ${detail}` : ""}`,
      );
    }
    if (firstError) throw new RuntimeError(firstError.kind, `${what}: ${firstError.message}`, { cause: firstError });
    throw new RuntimeError("NotFound", `${what}: not found`);
  }
}

/** Marks an attempt's non-success response: the next host is tried. */
const NEXT_HOST = Symbol("next host");
type NextHost = { [NEXT_HOST]: HttpResponse };
function nextHost(res: HttpResponse): NextHost {
  return { [NEXT_HOST]: res };
}
function isNextHost(v: unknown): v is NextHost {
  return typeof v === "object" && v !== null && NEXT_HOST in v;
}

/** Errors another host would not cure. */
const FINAL_KINDS = new Set(["InvalidArgument", "Unimplemented", "Canceled"]);

function header(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function originOf(host: RegistryHost): string {
  return `${host.scheme}://${host.host}`;
}

/**
 * Whether `url` is on the host's own origin: the same `host:port`, in the host's scheme or, for a
 * host that falls back to plain HTTP, in plain HTTP (the same server the first request reached).
 */
export function isOwnOrigin(host: RegistryHost, url: URL): boolean {
  if (url.host !== host.host) return false;
  return url.protocol === `${host.scheme}:` || (host.httpFallback && url.protocol === "http:");
}

/**
 * Whether the registry host is itself spoken to in plain HTTP (configured `http://`, or a localhost
 * or configured host that may fall back to it). Only then may its token realm be plain HTTP: a
 * TLS registry's realm in plain HTTP would send the credentials in clear text.
 */
export function speaksPlainHttp(host: RegistryHost): boolean {
  return host.scheme === "http" || host.httpFallback;
}

/** A request to a host other than the registry's own (docker.io's is registry-1.docker.io) is a mirror. */
function isMirror(host: string, registry: string): boolean {
  return host !== registry && !(registry === "docker.io" && host === "registry-1.docker.io");
}

function wrapAuth(err: unknown, method: string, url: URL): unknown {
  if (err instanceof RuntimeError)
    return new RuntimeError(err.kind, `${method} ${redact(url)}: ${err.message}`, { cause: err });
  return err;
}

/** `sha256:<hex>` of bytes. */
export function sha256(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}
