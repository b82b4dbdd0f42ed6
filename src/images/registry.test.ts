import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import net, { type AddressInfo, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { RuntimeError } from "../errdefs/index.js";
import { defaultHosts, type RegistryHost } from "./hosts.js";
import { parseReference } from "./reference.js";
import { isOwnOrigin, RegistryClient, speaksPlainHttp } from "./registry.js";

// Real HTTP servers on loopback addresses: 127.0.0.1 plays the registry, 127.0.0.2 a foreign host
// (an object store, a CDN) on another origin.

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

const servers: Server[] = [];
const sockets = new Set<Socket>();
after(() => {
  for (const s of sockets) s.destroy();
  for (const s of servers) s.close();
});

function track<T extends Server>(server: T): T {
  servers.push(server);
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  return server;
}

async function listen(server: Server, address: string): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, address, resolve));
  return (server.address() as AddressInfo).port;
}

async function httpServer(address: string, handler: Handler): Promise<string> {
  const port = await listen(track(http.createServer(handler)), address);
  return `${address}:${port}`;
}

/** A server that accepts connections and never says a word. */
async function silentServer(): Promise<string> {
  const port = await listen(track(net.createServer(() => {})), "127.0.0.1");
  return `127.0.0.1:${port}`;
}

function plainHost(hostPort: string): RegistryHost {
  return {
    scheme: "http",
    host: hostPort,
    path: "/v2",
    capabilities: ["pull", "resolve"],
    skipVerify: false,
    caFiles: [],
    clientPairs: [],
    header: {},
    httpFallback: false,
  };
}

function client(hosts: RegistryHost[], timeouts: { requestTimeoutMs?: number; idleTimeoutMs?: number } = {}) {
  const c = new RegistryClient({ hosts: async () => hosts, ...timeouts });
  after(() => c.close());
  return c;
}

const digestOf = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const BLOB = Buffer.from("layer bytes ".repeat(100));
const BLOB_DIGEST = digestOf(BLOB);

async function readAll(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

async function rejectsWith(p: Promise<unknown>, kind: string, ...parts: (string | RegExp)[]): Promise<string> {
  const err = await p.then(
    () => assert.fail("expected a failure"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof RuntimeError, `not a RuntimeError: ${String(err)}`);
  assert.equal(err.kind, kind, err.message);
  for (const part of parts) {
    if (typeof part === "string")
      assert.ok(err.message.includes(part), `${JSON.stringify(part)} not in: ${err.message}`);
    else assert.match(err.message, part);
  }
  return err.message;
}

test("blob redirects: credentials reach the registry's own origin at every hop and never a foreign one", async () => {
  const seen: { where: string; authorization: string | undefined }[] = [];
  const basic = `Basic ${Buffer.from("alice:secret").toString("base64")}`;
  const foreign = await httpServer("127.0.0.2", (req, res) => {
    seen.push({ where: `foreign ${req.url}`, authorization: req.headers.authorization });
    if (req.url === "/bucket/first") {
      // A second hop within the foreign origin: the old check compared it with the previous hop.
      res.writeHead(307, { location: "/bucket/second" }).end();
    } else {
      res.writeHead(200, { "content-length": BLOB.length }).end(BLOB);
    }
  });
  const registry = await httpServer("127.0.0.1", (req, res) => {
    seen.push({ where: `registry ${req.url}`, authorization: req.headers.authorization });
    if (req.headers.authorization !== basic) {
      res.writeHead(401, { "www-authenticate": 'Basic realm="test"' }).end();
    } else if (req.url?.startsWith("/v2/")) {
      res.writeHead(307, { location: "/redirected/blob" }).end();
    } else {
      res.writeHead(302, { location: `http://${foreign}/bucket/first` }).end();
    }
  });
  const repo = await client([plainHost(registry)]).repository(parseReference(`${registry}/team/app:1`), {
    credentials: { username: "alice", password: "secret" },
  });
  const body = await readAll(await repo.fetchBlob({ mediaType: "", digest: BLOB_DIGEST, size: BLOB.length }));
  assert.deepEqual(body, BLOB);
  assert.deepEqual(
    seen.map((s) => s.where),
    [
      `registry /v2/team/app/blobs/${BLOB_DIGEST}`,
      `registry /v2/team/app/blobs/${BLOB_DIGEST}`,
      "registry /redirected/blob",
      "foreign /bucket/first",
      "foreign /bucket/second",
    ],
  );
  for (const s of seen.filter((x) => x.where.startsWith("foreign"))) assert.equal(s.authorization, undefined, s.where);
  assert.equal(seen.find((s) => s.where === "registry /redirected/blob")?.authorization, basic);
});

test("a plain-HTTP token realm is refused for a TLS registry, and allowed for a plain-HTTP one", async (t) => {
  let tokenRequests = 0;
  const tokens = await httpServer("127.0.0.1", (_req, res) => {
    tokenRequests++;
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token: "t0k" }));
  });
  const manifest = Buffer.from('{"schemaVersion":2}');
  const handler: Handler = (req, res) => {
    if (req.headers.authorization !== "Bearer t0k") {
      res.writeHead(401, { "www-authenticate": `Bearer realm="http://${tokens}/token",service="reg"` }).end();
      return;
    }
    res
      .writeHead(200, {
        "content-type": "application/vnd.oci.image.manifest.v1+json",
        "docker-content-digest": digestOf(manifest),
        "content-length": manifest.length,
      })
      .end(req.method === "HEAD" ? undefined : manifest);
  };

  await t.test("TLS registry", async () => {
    const dir = mkdtempSync(join(tmpdir(), "berth-registry-tls-"));
    try {
      execFileSync(
        "openssl",
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"].concat([
          "-keyout",
          join(dir, "key.pem"),
          "-out",
          join(dir, "cert.pem"),
        ]),
        { stdio: "ignore" },
      );
      const server = track(
        https.createServer(
          { key: readFileSync(join(dir, "key.pem")), cert: readFileSync(join(dir, "cert.pem")) },
          handler,
        ),
      );
      const port = await listen(server, "127.0.0.1");
      const host: RegistryHost = { ...plainHost(`127.0.0.1:${port}`), scheme: "https", skipVerify: true };
      const repo = await client([host]).repository(parseReference(`127.0.0.1:${port}/app:1`), {
        credentials: { username: "alice", password: "secret" },
      });
      await rejectsWith(repo.resolve(), "PermissionDenied", `http://${tokens}/token`, "plain HTTP");
      assert.equal(tokenRequests, 0, "the credentials never went to the plain-HTTP realm");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  await t.test("plain-HTTP registry", async () => {
    const registry = await httpServer("127.0.0.1", handler);
    const repo = await client([plainHost(registry)]).repository(parseReference(`${registry}/app:1`));
    const { descriptor } = await repo.resolve();
    assert.equal(descriptor.digest, digestOf(manifest));
    assert.equal(tokenRequests, 1);
  });
});

test("a registry that accepts the connection and never answers fails resolve at the request deadline", async () => {
  const silent = await silentServer();
  const repo = await client([plainHost(silent)], { requestTimeoutMs: 300, idleTimeoutMs: 30_000 }).repository(
    parseReference(`${silent}/app:1`),
  );
  const started = Date.now();
  await rejectsWith(
    repo.resolve(),
    "DeadlineExceeded",
    `resolve ${silent}/app:1`,
    `http://${silent}/v2/app/manifests/1`,
    "no answer after 0.3 s",
  );
  assert.ok(Date.now() - started < 5_000, "bounded by the deadline");
});

test("silence fails any request at the idle timeout, blobs included", async () => {
  const silent = await silentServer();
  const repo = await client([plainHost(silent)], { requestTimeoutMs: 30_000, idleTimeoutMs: 300 }).repository(
    parseReference(`${silent}/app:1`),
  );
  await rejectsWith(
    repo.resolve(),
    "DeadlineExceeded",
    `resolve ${silent}/app:1`,
    "no answer: nothing received for 0.3 s",
  );
  await rejectsWith(
    repo.fetchBlob({ mediaType: "", digest: BLOB_DIGEST, size: BLOB.length }),
    "DeadlineExceeded",
    `fetch blob ${BLOB_DIGEST}`,
    silent,
  );
});

test("a token endpoint that never answers fails the pull naming the token phase", async () => {
  const silent = await silentServer();
  const registry = await httpServer("127.0.0.1", (_req, res) => {
    res.writeHead(401, { "www-authenticate": `Bearer realm="http://${silent}/token",service="reg"` }).end();
  });
  const repo = await client([plainHost(registry)], { requestTimeoutMs: 300 }).repository(
    parseReference(`${registry}/app:1`),
  );
  await rejectsWith(repo.resolve(), "DeadlineExceeded", "fetch token", `http://${silent}/token`, "no answer");
});

/** Sends `body` in `parts` chunks `everyMs` apart; with `stallAfter`, stops for good after that many. */
function trickle(
  body: Buffer,
  o: { parts: number; everyMs: number; stallAfter?: number; headers?: Record<string, string> },
): Handler {
  return (_req, res) => {
    res.writeHead(200, { "content-length": String(body.length), ...o.headers });
    const size = Math.ceil(body.length / o.parts);
    let i = 0;
    const timer = setInterval(() => {
      if (o.stallAfter !== undefined && i >= o.stallAfter) return;
      res.write(body.subarray(i * size, (i + 1) * size));
      if (++i >= o.parts) {
        clearInterval(timer);
        res.end();
      }
    }, o.everyMs);
    res.on("close", () => clearInterval(timer));
  };
}

test("a blob body that stalls midway fails at the idle timeout with what was received so far", async () => {
  const registry = await httpServer("127.0.0.1", trickle(BLOB, { parts: 10, everyMs: 10, stallAfter: 3 }));
  const repo = await client([plainHost(registry)], { idleTimeoutMs: 300 }).repository(
    parseReference(`${registry}/app:1`),
  );
  const body = await repo.fetchBlob({ mediaType: "", digest: BLOB_DIGEST, size: BLOB.length });
  const started = Date.now();
  await rejectsWith(readAll(body), "DeadlineExceeded", registry, "body stalled");
  assert.ok(Date.now() - started < 5_000);
});

test("a blob that keeps moving outlives the request deadline; a manifest that slow does not", async () => {
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, pad: "x".repeat(400) }));
  const registry = await httpServer("127.0.0.1", (req, res) =>
    req.url?.includes("/blobs/")
      ? trickle(BLOB, { parts: 8, everyMs: 100 })(req, res)
      : trickle(manifest, {
          parts: 8,
          everyMs: 100,
          headers: { "content-type": "application/vnd.oci.image.manifest.v1+json" },
        })(req, res),
  );
  const repo = await client([plainHost(registry)], { requestTimeoutMs: 300, idleTimeoutMs: 2_000 }).repository(
    parseReference(`${registry}/app:1`),
  );
  const body = await readAll(await repo.fetchBlob({ mediaType: "", digest: BLOB_DIGEST, size: BLOB.length }));
  assert.deepEqual(body, BLOB, "800 ms of steady progress is not cut by a 300 ms request deadline");
  await rejectsWith(
    repo.fetchManifest({ mediaType: "", digest: digestOf(manifest), size: manifest.length }),
    "DeadlineExceeded",
    `fetch manifest ${digestOf(manifest)}`,
    "answer incomplete after 0.3 s",
  );
});

test("own origin and plain-HTTP registries, as the default host rules make them", () => {
  const local = defaultHosts("127.0.0.1:5000")[0] as RegistryHost;
  const remote = defaultHosts("registry.example")[0] as RegistryHost;
  const localTls = defaultHosts("localhost")[0] as RegistryHost;
  assert.equal(speaksPlainHttp(local), true, "localhost on a port falls back to plain HTTP");
  assert.equal(speaksPlainHttp(remote), false);
  assert.equal(speaksPlainHttp(localTls), false, "localhost on 443 is TLS only");
  assert.equal(speaksPlainHttp(plainHost("registry.example:80")), true, "configured http://");
  assert.equal(
    isOwnOrigin(local, new URL("http://127.0.0.1:5000/x")),
    true,
    "the fallback's plain HTTP is the same server",
  );
  assert.equal(isOwnOrigin(local, new URL("https://127.0.0.1:5000/x")), true);
  assert.equal(isOwnOrigin(local, new URL("https://127.0.0.1:5001/x")), false, "another port is another origin");
  assert.equal(isOwnOrigin(remote, new URL("http://registry.example/x")), false, "a downgrade is another origin");
  assert.equal(isOwnOrigin(remote, new URL("https://cdn.registry.example/x")), false);
});
