/**
 * Docker's client configuration file, where `docker login` (and `berth login`) keep registry
 * credentials: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
 *
 *   { "auths": { "<registry>": { "auth": base64("user:password") } },
 *     "credsStore": "<helper>", "credHelpers": { "<registry>": "<helper>" }, ...other keys kept }
 *
 * Docker Hub's key is `https://index.docker.io/v1/`; other registries are keyed by `host[:port]`
 * (older files may carry a scheme or a `/v1/` path, which is ignored when looking a host up).
 * Credential helpers (`docker-credential-<name>`) are not run by berth: a registry whose
 * credentials live in one gets a clear error instead of an anonymous request.
 */
import { chmod, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { invalidArgumentStatus } from "./context.js";

/** Docker Hub's key in `auths`. */
const DOCKER_HUB_KEY = "https://index.docker.io/v1/";

/** The config file's path: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. */
export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.DOCKER_CONFIG || join(env.HOME || homedir(), ".docker");
  return join(dir, "config.json");
}

/** The `auths` key of a registry (`docker.io` and its aliases share Docker Hub's key). */
export function authKey(registry: string): string {
  return ["docker.io", "index.docker.io", "registry-1.docker.io"].includes(registry) ? DOCKER_HUB_KEY : registry;
}

/** The registry host of an `auths` key (`https://host:5000/v1/` → `host:5000`). */
function hostOfKey(key: string): string {
  const host = key.replace(/^[a-z]+:\/\//i, "").split("/")[0] ?? "";
  return ["index.docker.io", "registry-1.docker.io"].includes(host) ? "docker.io" : host;
}

type ConfigDoc = Record<string, unknown> & {
  auths?: Record<string, { auth?: string; identitytoken?: string } & Record<string, unknown>>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
};

async function readDoc(path: string): Promise<ConfigDoc> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw invalidArgumentStatus(`read ${path}: ${(err as Error).message}`);
  }
  try {
    const doc = JSON.parse(text) as unknown;
    if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw new Error("not a JSON object");
    return doc as ConfigDoc;
  } catch (err) {
    throw invalidArgumentStatus(`${path}: ${(err as Error).message}`);
  }
}

/** Credentials found for one registry. */
export interface DockerCredentials {
  username: string;
  password: string;
}

/**
 * The credentials stored for `registry`, or undefined when none are. Throws InvalidArgument when
 * they are kept by a credential helper (berth does not run helpers) or the entry is malformed.
 */
export async function credentialsFor(
  registry: string,
  path: string = dockerConfigPath(),
): Promise<DockerCredentials | undefined> {
  const doc = await readDoc(path);
  const helper = Object.entries(doc.credHelpers ?? {}).find(([k]) => hostOfKey(k) === hostOfKey(authKey(registry)));
  const entry = Object.entries(doc.auths ?? {}).find(([k]) => hostOfKey(k) === hostOfKey(authKey(registry)))?.[1];
  const unsupported = (name: string) =>
    invalidArgumentStatus(
      `${path}: the credentials of ${registry} are kept by the credential helper docker-credential-${name}, which berth does not run: run \`berth login ${registry}\` to store them in the file instead`,
    );
  if (helper) throw unsupported(helper[1]);
  if (entry?.auth) {
    const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon <= 0)
      throw invalidArgumentStatus(`${path}: auths.${authKey(registry)}.auth is not base64 of user:password`);
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (doc.credsStore) throw unsupported(doc.credsStore);
  return undefined;
}

/** Stores credentials for `registry` (every other key of the file is kept), as a 0600 file. */
export async function storeCredentials(
  registry: string,
  creds: DockerCredentials,
  path: string = dockerConfigPath(),
): Promise<void> {
  const doc = await readDoc(path);
  const auths = { ...(doc.auths ?? {}) };
  for (const k of Object.keys(auths)) if (hostOfKey(k) === hostOfKey(authKey(registry))) delete auths[k];
  auths[authKey(registry)] = { auth: Buffer.from(`${creds.username}:${creds.password}`).toString("base64") };
  await writeDoc(path, { ...doc, auths });
}

/** Removes the credentials of `registry`; false when there were none. */
export async function removeCredentials(registry: string, path: string = dockerConfigPath()): Promise<boolean> {
  const doc = await readDoc(path);
  const auths = { ...(doc.auths ?? {}) };
  const keys = Object.keys(auths).filter((k) => hostOfKey(k) === hostOfKey(authKey(registry)));
  if (keys.length === 0) return false;
  for (const k of keys) delete auths[k];
  await writeDoc(path, { ...doc, auths });
  return true;
}

/** Writes the file atomically (temp file, rename) with mode 0600: it holds passwords. */
async function writeDoc(path: string, doc: ConfigDoc): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(doc, null, "\t")}\n`, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}
