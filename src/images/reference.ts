import { RuntimeError } from "../errdefs/index.js";

/**
 * Image references, parsed and normalised exactly as Kubernetes and containerd do (the
 * docker/distribution reference grammar plus `ParseDockerRef`'s normalisation):
 *
 *   reference  := name [ ":" tag ] [ "@" digest ]
 *   name       := [ domain "/" ] path-component *( "/" path-component )
 *   domain     := host [ ":" port ]          host = domain-name | "[" ipv6 "]"
 *   path-comp  := [a-z0-9]+ *( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )
 *   tag        := [\w][\w.-]{0,127}
 *   digest     := algorithm ":" hex          (sha256 = 64, sha384 = 96, sha512 = 128 lowercase hex)
 *
 * Normalisation: a first component without `.` or `:` that is not `localhost` (and is all
 * lowercase) is not a domain, so `busybox` is `docker.io/library/busybox:latest`;
 * `index.docker.io` is `docker.io`; single-component Docker Hub names get `library/`; a name
 * with neither tag nor digest gets `:latest`.
 */

/** A parsed, normalised image reference. */
export interface Reference {
  /** Registry host with optional port, e.g. `docker.io`, `localhost:5000`, `[::1]:5000`. */
  domain: string;
  /** Repository path inside the registry, e.g. `library/busybox`. */
  path: string;
  /** The tag, when given (or `latest` when neither tag nor digest was given). */
  tag?: string;
  /**
   * The digest, when given. When both a tag and a digest are given the digest decides what is
   * pulled (the tag is kept for display only), as in containerd.
   */
  digest?: string;
}

const DEFAULT_DOMAIN = "docker.io";
const LEGACY_DEFAULT_DOMAIN = "index.docker.io";
const OFFICIAL_REPO_PREFIX = "library/";
const NAME_TOTAL_LENGTH_MAX = 255;

// The grammar above as regular expressions; the same pieces as distribution/reference's regexp.go.
const alphanumeric = "[a-z0-9]+";
const separator = "(?:[._]|__|[-]+)";
const pathComponent = `${alphanumeric}(?:${separator}${alphanumeric})*`;
const domainNameComponent = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const domainName = `${domainNameComponent}(?:\\.${domainNameComponent})*`;
const ipv6address = "\\[(?:[a-fA-F0-9:]+)\\]";
const domainAndPort = `(?:${domainName}|${ipv6address})(?::[0-9]+)?`;
const namePattern = `(?:${domainAndPort}/)?${pathComponent}(?:/${pathComponent})*`;
const tagPattern = "[\\w][\\w.-]{0,127}";
const digestPattern = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
const REFERENCE_RE = new RegExp(`^(${namePattern})(?::(${tagPattern}))?(?:@(${digestPattern}))?$`);
const IDENTIFIER_RE = /^[a-f0-9]{64}$/;

/** Hex lengths of the digest algorithms go-digest knows. */
const DIGEST_HEX_LENGTHS: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

function invalid(s: string, reason: string): RuntimeError {
  return new RuntimeError("InvalidArgument", `invalid reference ${JSON.stringify(s)}: ${reason}`);
}

/**
 * Validates a digest string as go-digest does. Returns the reason it is invalid, or undefined.
 * Only lowercase hex of the algorithm's exact length is valid.
 */
export function digestError(digest: string): string | undefined {
  const i = digest.indexOf(":");
  if (i <= 0 || i + 1 === digest.length) return "invalid checksum digest format";
  const algorithm = digest.slice(0, i);
  const hex = digest.slice(i + 1);
  const length = DIGEST_HEX_LENGTHS[algorithm];
  if (length === undefined) {
    return new RegExp(`^${digestPattern}$`).test(digest)
      ? "unsupported digest algorithm"
      : "invalid checksum digest format";
  }
  if (hex.length !== length) return "invalid checksum digest length";
  return /^[a-f0-9]+$/.test(hex) ? undefined : "invalid checksum digest format";
}

/** True when `s` is a valid `sha256:<64 lowercase hex>` digest (the only kind berth stores). */
export function isSha256Digest(s: string): boolean {
  return /^sha256:[a-f0-9]{64}$/.test(s);
}

/** Splits off the domain as distribution's `splitDockerDomain` does. */
function splitDomain(name: string): [string, string] {
  const i = name.indexOf("/");
  let domain: string;
  let remainder: string;
  const first = i === -1 ? "" : name.slice(0, i);
  if (i === -1 || (!/[.:]/.test(first) && first !== "localhost" && first.toLowerCase() === first)) {
    domain = DEFAULT_DOMAIN;
    remainder = name;
  } else {
    domain = first;
    remainder = name.slice(i + 1);
  }
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !remainder.includes("/")) remainder = OFFICIAL_REPO_PREFIX + remainder;
  return [domain, remainder];
}

/**
 * Parses and normalises `s`. Throws RuntimeError("InvalidArgument", `invalid reference "<s>": <reason>`)
 * with distribution's reasons (e.g. `invalid reference format`, `repository name must be lowercase`).
 * The result always has a tag or a digest (or both).
 */
export function parseReference(s: string): Reference {
  if (s === "") throw invalid(s, "repository name must have at least one component");
  if (IDENTIFIER_RE.test(s)) throw invalid(s, "cannot specify 64-byte hexadecimal strings");
  const [domain, remainder] = splitDomain(s);
  const colon = remainder.indexOf(":");
  const remoteName = colon === -1 ? remainder : remainder.slice(0, colon);
  if (remoteName.toLowerCase() !== remoteName) throw invalid(s, "repository name must be lowercase");

  const full = `${domain}/${remainder}`;
  const m = REFERENCE_RE.exec(full);
  if (!m) {
    if (REFERENCE_RE.test(full.toLowerCase())) throw invalid(s, "repository name must be lowercase");
    throw invalid(s, "invalid reference format");
  }
  const name = m[1] ?? "";
  if (name.length > NAME_TOTAL_LENGTH_MAX) {
    throw invalid(s, `repository name must not be more than ${NAME_TOTAL_LENGTH_MAX} characters`);
  }
  const ref: Reference = { domain, path: name.slice(domain.length + 1) };
  if (m[2] !== undefined) ref.tag = m[2];
  if (m[3] !== undefined) {
    const why = digestError(m[3]);
    if (why) throw invalid(s, why);
    ref.digest = m[3];
  }
  if (ref.tag === undefined && ref.digest === undefined) ref.tag = "latest";
  return ref;
}

/** `domain/path`, the repository name used in repoTags and repoDigests. */
export function repositoryName(ref: Reference): string {
  return `${ref.domain}/${ref.path}`;
}

/** The full normalised string: `domain/path[:tag][@digest]`. */
export function formatReference(ref: Reference): string {
  return `${repositoryName(ref)}${ref.tag !== undefined ? `:${ref.tag}` : ""}${ref.digest !== undefined ? `@${ref.digest}` : ""}`;
}

/** The tag form recorded in an image's repoTags (undefined for digest references, where the digest wins). */
export function tagReference(ref: Reference): string | undefined {
  return ref.digest === undefined && ref.tag !== undefined ? `${repositoryName(ref)}:${ref.tag}` : undefined;
}

/** `domain/path@digest`, the form recorded in an image's repoDigests. */
export function digestReference(ref: Reference, digest: string): string {
  return `${repositoryName(ref)}@${digest}`;
}
