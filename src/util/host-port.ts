import { isIP } from "node:net";

/** A listen address split into an IP literal and a port. */
export interface HostPort {
  host: string;
  port: number;
}

/**
 * Parses `ip:port` or `[ipv6]:port` (port 0-65535, 0 = any free port). Returns undefined for
 * anything else: a host name would depend on the resolver at start-up, and a listener bound
 * to the wrong interface is a security problem, so only literals are accepted.
 */
export function parseHostPort(text: string): HostPort | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const host = m[1] ?? m[2] ?? "";
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  const family = isIP(host);
  if (family === 0 || (m[1] !== undefined && family !== 6) || (m[2] !== undefined && family !== 4)) return undefined;
  return { host, port };
}

/** The inverse of {@link parseHostPort}: brackets around IPv6 hosts. */
export function formatHostPort({ host, port }: HostPort): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}
