import { createHash } from "node:crypto";
import { RuntimeError } from "../errdefs/index.js";
import { type HttpResponse, readBody, redact } from "./transport.js";

/**
 * Registry authentication: the challenges in `WWW-Authenticate`, the credentials a pull carries
 * (the CRI `AuthConfig`, in domain form), and an Authorizer that turns them into an
 * `Authorization` header: Basic, or Bearer from the distribution token flow (anonymous or
 * with credentials; an identity token uses the OAuth2 refresh_token grant), or a registry token
 * sent as Bearer directly. Tokens are cached per (realm, service, scope, credentials) until they
 * expire. Secrets never appear in errors or logs: messages name hosts, realms and scopes only.
 */

/** Credentials for one pull, as the kubelet sends them (CRI `AuthConfig`). */
export interface RegistryCredentials {
  username?: string;
  password?: string;
  /** base64 of `username:password`, Docker config style. */
  auth?: string;
  /** Registry the credentials are for (`host[:port]`, optionally with scheme and path); empty = any. */
  serverAddress?: string;
  /** An OAuth2 refresh token, exchanged at the token realm. */
  identityToken?: string;
  /** A bearer token sent to the registry as is. */
  registryToken?: string;
}

/** One challenge from `WWW-Authenticate`; `scheme` is lowercase, parameter names too. */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parses `WWW-Authenticate` header values (RFC 7235): several challenges may share one value,
 * separated by commas, each a scheme followed by `key=value` or `key="quoted \"value\""` pairs.
 */
export function parseWwwAuthenticate(values: readonly string[]): Challenge[] {
  const out: Challenge[] = [];
  for (const value of values) {
    let i = 0;
    let current: Challenge | undefined;
    const skip = () => {
      while (i < value.length && /[\s,]/.test(value[i] as string)) i++;
    };
    const token = () => {
      const m = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/.exec(value.slice(i));
      if (!m) return "";
      i += m[0].length;
      return m[0];
    };
    for (;;) {
      skip();
      if (i >= value.length) break;
      const start = i;
      const name = token();
      if (name === "") {
        i++; // a stray character: skip it rather than loop forever
        continue;
      }
      let j = i;
      while (j < value.length && value[j] === " ") j++;
      if (value[j] === "=" && (value[j + 1] === "=" || j + 1 >= value.length || value[j + 1] === ",")) {
        // token68 (e.g. `Negotiate abc==`): credentials data of the previous scheme, not used here.
        i = j;
        while (value[i] === "=") i++;
        continue;
      }
      if (value[j] === "=" && current !== undefined) {
        i = j + 1;
        while (value[i] === " ") i++;
        let v: string;
        if (value[i] === '"') {
          i++;
          v = "";
          while (i < value.length && value[i] !== '"') {
            if (value[i] === "\\" && i + 1 < value.length) i++;
            v += value[i];
            i++;
          }
          i++;
        } else {
          // Unquoted values should be tokens, but some servers send `scope=repository:a:pull`.
          const m = /^[^\s,]*/.exec(value.slice(i));
          v = m?.[0] ?? "";
          i += v.length;
        }
        current.params[name.toLowerCase()] = v;
      } else {
        // A token not followed by "=" starts a new challenge (token68 forms are ignored).
        current = { scheme: value.slice(start, i).toLowerCase(), params: {} };
        out.push(current);
      }
    }
  }
  return out;
}

/** Credentials reduced to what the token and basic flows use. */
interface Secret {
  username?: string;
  password?: string;
  identityToken?: string;
  registryToken?: string;
}

function normaliseRegistry(address: string): string {
  let s = address.replace(/^[a-z]+:\/\//i, "");
  s = s.split("/")[0] ?? "";
  return s === "index.docker.io" || s === "registry-1.docker.io" ? "docker.io" : s;
}

/**
 * The secret to use for a request to `host` while pulling from `registry`, or undefined. Credentials
 * with a `serverAddress` apply only when it names the registry (or that very host); `auth` is decoded.
 * Throws InvalidArgument for an `auth` that is not base64 of `user:password`.
 */
export function secretFor(creds: RegistryCredentials | undefined, registry: string, host: string): Secret | undefined {
  if (creds === undefined) return undefined;
  if (creds.serverAddress) {
    const server = normaliseRegistry(creds.serverAddress);
    if (server !== normaliseRegistry(registry) && server !== host) return undefined;
  }
  if (creds.registryToken) return { registryToken: creds.registryToken };
  if (creds.username) return { username: creds.username, password: creds.password ?? "" };
  if (creds.identityToken) return { identityToken: creds.identityToken };
  if (creds.auth) {
    const decoded = Buffer.from(creds.auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon <= 0) throw new RuntimeError("InvalidArgument", "auth config: auth is not base64 of username:password");
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  return undefined;
}

/** Sends the token request; the Authorizer does not know about hosts or TLS. */
export type TokenSender = (
  url: URL,
  init: { method: string; headers: Record<string, string>; body?: string; signal?: AbortSignal },
) => Promise<HttpResponse>;

/** Options of {@link Authorizer.prepare} and {@link Authorizer.authorize}. */
export interface AuthorizeOptions {
  signal?: AbortSignal;
  /**
   * The registry itself speaks plain HTTP (configured `http://`, or localhost): only then may a
   * token realm be plain HTTP. A TLS registry whose challenge points to an `http://` realm is
   * refused, since the token request carries the credentials and the token comes back in clear.
   */
  allowPlainHttpRealm?: boolean;
}

interface CachedToken {
  header: string;
  expiresAt: number;
}

/** Tokens live at least this long when the server says nothing (the distribution spec's default). */
const DEFAULT_TOKEN_SECONDS = 60;
/** Renew a little early so a token does not expire between the check and the request. */
const EXPIRY_MARGIN_MS = 5_000;

/**
 * Remembers each origin's last challenge (so later requests, e.g. parallel blob downloads,
 * authenticate up front instead of each collecting a 401) and caches bearer tokens. Shared by
 * every pull; tokens obtained with different credentials never mix.
 */
export class Authorizer {
  private readonly challenges = new Map<string, Challenge>();
  private readonly tokens = new Map<string, CachedToken>();
  private readonly inflight = new Map<string, Promise<CachedToken>>();

  constructor(
    private readonly sendToken: TokenSender,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The Authorization header to send to `origin` before any challenge in this request: the registry
   * token, or what the origin's remembered challenge calls for (a cached or fresh token). Undefined
   * when nothing is known yet (the first request goes out anonymously, as in every client).
   */
  async prepare(
    origin: string,
    scopes: string[],
    secret: Secret | undefined,
    options: AuthorizeOptions = {},
  ): Promise<string | undefined> {
    if (secret?.registryToken) return `Bearer ${secret.registryToken}`;
    const challenge = this.challenges.get(origin);
    if (challenge === undefined) return undefined;
    return this.fromChallenge(challenge, scopes, secret, options, undefined);
  }

  /**
   * The Authorization header answering a 401 with `challenges`. `rejected` is the header the
   * registry just refused (never reused). Throws Unauthenticated when nothing can satisfy them.
   */
  async authorize(
    origin: string,
    challenges: Challenge[],
    scopes: string[],
    secret: Secret | undefined,
    options: AuthorizeOptions & { rejected?: string | undefined },
  ): Promise<string> {
    if (secret?.registryToken) throw new RuntimeError("Unauthenticated", `${origin}: the registry token was rejected`);
    const challenge = challenges.find((c) => c.scheme === "bearer") ?? challenges.find((c) => c.scheme === "basic");
    if (challenge === undefined) {
      throw new RuntimeError(
        "Unauthenticated",
        `${origin}: unauthorized, and no supported authentication scheme offered`,
      );
    }
    this.challenges.set(origin, challenge);
    const header = await this.fromChallenge(challenge, scopes, secret, options, options.rejected);
    if (header === undefined || header === options.rejected) {
      throw new RuntimeError(
        "Unauthenticated",
        `${origin}: unauthorized${secret ? ": the credentials were rejected" : ": credentials required"}`,
      );
    }
    return header;
  }

  private async fromChallenge(
    challenge: Challenge,
    scopes: string[],
    secret: Secret | undefined,
    options: AuthorizeOptions,
    rejected: string | undefined,
  ): Promise<string | undefined> {
    if (challenge.scheme === "basic") {
      if (secret?.username === undefined) return undefined;
      return `Basic ${Buffer.from(`${secret.username}:${secret.password ?? ""}`).toString("base64")}`;
    }
    const realm = challenge.params.realm;
    if (challenge.scheme !== "bearer" || realm === undefined) return undefined;
    const service = challenge.params.service ?? "";
    // The registry may ask for more than we would (e.g. a mount scope); ask for both.
    const wanted = [...new Set([...(challenge.params.scope?.split(" ").filter(Boolean) ?? []), ...scopes])].sort();
    const key = JSON.stringify([realm, service, wanted, fingerprint(secret)]);
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt > this.now() && cached.header !== rejected) return cached.header;
    if (cached) this.tokens.delete(key);
    let pending = this.inflight.get(key);
    if (pending === undefined) {
      pending = this.fetchToken(realm, service, wanted, secret, options).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    const token = await pending;
    this.tokens.set(key, token);
    return token.header;
  }

  private async fetchToken(
    realm: string,
    service: string,
    scopes: string[],
    secret: Secret | undefined,
    options: AuthorizeOptions,
  ): Promise<CachedToken> {
    const { signal } = options;
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new RuntimeError("Unauthenticated", `invalid token realm ${JSON.stringify(realm)}`);
    }
    if (url.protocol !== "https:" && url.protocol !== "http:")
      throw new RuntimeError("Unauthenticated", `token realm ${redact(url)}: unsupported scheme ${url.protocol}`);
    if (url.protocol === "http:" && !options.allowPlainHttpRealm) {
      throw new RuntimeError(
        "PermissionDenied",
        `token realm ${redact(url)} is plain HTTP but the registry uses TLS: refusing to send credentials or receive a token in clear text`,
      );
    }
    const headers: Record<string, string> = { accept: "application/json" };
    let res: HttpResponse;
    if (secret?.identityToken !== undefined) {
      // OAuth2 refresh_token grant (Docker's identity token), POSTed as a form.
      const form = new URLSearchParams({
        grant_type: "refresh_token",
        refresh_token: secret.identityToken,
        client_id: "berth",
      });
      if (service) form.set("service", service);
      if (scopes.length > 0) form.set("scope", scopes.join(" "));
      headers["content-type"] = "application/x-www-form-urlencoded";
      res = await this.sendToken(url, {
        method: "POST",
        headers,
        body: form.toString(),
        ...(signal ? { signal } : {}),
      }).catch(tokenFailure());
    } else {
      if (service) url.searchParams.set("service", service);
      for (const s of scopes) url.searchParams.append("scope", s);
      if (secret?.username !== undefined) {
        url.searchParams.set("account", secret.username);
        headers.authorization = `Basic ${Buffer.from(`${secret.username}:${secret.password ?? ""}`).toString("base64")}`;
      }
      res = await this.sendToken(url, { method: "GET", headers, ...(signal ? { signal } : {}) }).catch(tokenFailure());
    }
    const body = await readBody(res, 1024 * 1024, `token from ${redact(url)}`).catch(tokenFailure());
    if (res.status === 401 || res.status === 403) {
      throw new RuntimeError(
        "Unauthenticated",
        `fetch token from ${redact(url)}: ${res.status}: ${secret ? "the credentials were rejected" : "credentials required"}`,
      );
    }
    if (res.status < 200 || res.status > 299) {
      throw new RuntimeError("Unavailable", `fetch token from ${redact(url)}: unexpected status ${res.status}`);
    }
    let doc: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown };
    try {
      doc = JSON.parse(body.toString("utf8")) as typeof doc;
    } catch {
      throw new RuntimeError("Unavailable", `fetch token from ${redact(url)}: response is not JSON`);
    }
    const token = typeof doc.access_token === "string" && doc.access_token ? doc.access_token : doc.token;
    if (typeof token !== "string" || token === "")
      throw new RuntimeError("Unavailable", `fetch token from ${redact(url)}: no token in response`);
    const seconds = typeof doc.expires_in === "number" && doc.expires_in > 0 ? doc.expires_in : DEFAULT_TOKEN_SECONDS;
    const issued = typeof doc.issued_at === "string" ? Date.parse(doc.issued_at) : Number.NaN;
    const start = Number.isNaN(issued) ? this.now() : Math.min(issued, this.now());
    return { header: `Bearer ${token}`, expiresAt: start + seconds * 1000 - EXPIRY_MARGIN_MS };
  }
}

/** Names the phase in a transport failure (timeouts, refused connections) of a token request. */
function tokenFailure(): (err: unknown) => never {
  return (err) => {
    if (err instanceof RuntimeError && !err.message.startsWith("token from"))
      throw new RuntimeError(err.kind, `fetch token: ${err.message}`, { cause: err });
    throw err;
  };
}

/** A non-reversible key for a secret, so cached tokens are never shared across credentials. */
function fingerprint(secret: Secret | undefined): string {
  if (secret === undefined) return "anonymous";
  return createHash("sha256")
    .update(JSON.stringify([secret.username, secret.password, secret.identityToken]))
    .digest("hex");
}

/** The pull scope of a repository (`repository:library/busybox:pull`). */
export function pullScope(path: string): string {
  return `repository:${path}:pull`;
}

/** The pull and push scope of a repository (`repository:demo/web:pull,push`). */
export function pushScope(path: string): string {
  return `repository:${path}:pull,push`;
}
