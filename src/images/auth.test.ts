import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import { Readable } from "node:stream";
import { test } from "node:test";
import { Authorizer, parseWwwAuthenticate, secretFor, type TokenSender } from "./auth.js";
import type { HttpResponse } from "./transport.js";

test("WWW-Authenticate: a bearer challenge with quoted parameters", () => {
  assert.deepEqual(
    parseWwwAuthenticate([
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
    ]),
    [
      {
        scheme: "bearer",
        params: {
          realm: "https://auth.docker.io/token",
          service: "registry.docker.io",
          scope: "repository:library/busybox:pull",
        },
      },
    ],
  );
});

test("WWW-Authenticate: several challenges, escapes, spaces, unquoted values and token68", () => {
  assert.deepEqual(
    parseWwwAuthenticate(['Basic realm="Registry Realm", Bearer realm="https://a/t", error="invalid_token"']),
    [
      { scheme: "basic", params: { realm: "Registry Realm" } },
      { scheme: "bearer", params: { realm: "https://a/t", error: "invalid_token" } },
    ],
  );
  assert.deepEqual(parseWwwAuthenticate(['Bearer realm = "a\\"b" , scope=x:y', "Negotiate abc==", "basic"]), [
    { scheme: "bearer", params: { realm: 'a"b', scope: "x:y" } },
    { scheme: "negotiate", params: {} },
    { scheme: "basic", params: {} },
  ]);
  assert.deepEqual(parseWwwAuthenticate([""]), []);
});

test("credentials: serverAddress must name the registry; auth is decoded; registry token wins", () => {
  assert.equal(secretFor(undefined, "r.io", "r.io"), undefined);
  assert.deepEqual(secretFor({ username: "u", password: "p" }, "r.io", "mirror"), { username: "u", password: "p" });
  assert.equal(secretFor({ username: "u", password: "p", serverAddress: "other.io" }, "r.io", "r.io"), undefined);
  assert.deepEqual(
    secretFor({ username: "u", serverAddress: "https://index.docker.io/v1/" }, "docker.io", "registry-1.docker.io"),
    {
      username: "u",
      password: "",
    },
  );
  assert.deepEqual(secretFor({ auth: Buffer.from("u:p:w").toString("base64") }, "r.io", "r.io"), {
    username: "u",
    password: "p:w",
  });
  assert.deepEqual(secretFor({ identityToken: "rt" }, "r.io", "r.io"), { identityToken: "rt" });
  assert.deepEqual(secretFor({ registryToken: "tok", username: "u" }, "r.io", "r.io"), { registryToken: "tok" });
  assert.throws(
    () => secretFor({ auth: Buffer.from("nocolon").toString("base64") }, "r.io", "r.io"),
    /not base64 of username:password/,
  );
  assert.equal(secretFor({}, "r.io", "r.io"), undefined);
});

function response(status: number, body: unknown): HttpResponse {
  const text = JSON.stringify(body);
  return {
    status,
    headers: { "content-length": String(Buffer.byteLength(text)) },
    headersDistinct: {},
    body: Readable.from([Buffer.from(text)]) as unknown as IncomingMessage,
    url: new URL("https://auth.example/token"),
  };
}

test("bearer tokens are fetched once per scope and credentials, and renewed after expiry", async () => {
  const calls: { url: URL; method: string; headers: Record<string, string>; body?: string }[] = [];
  let n = 0;
  const send: TokenSender = async (url, init) => {
    calls.push({ url, ...init });
    n++;
    return response(200, { token: `t${n}`, expires_in: 300 });
  };
  let now = 1_000_000;
  const a = new Authorizer(send, () => now);
  const challenge = [{ scheme: "bearer", params: { realm: "https://auth.example/token", service: "reg" } }];
  const scope = ["repository:a:pull"];

  assert.equal(await a.prepare("https://r", scope, undefined), undefined, "nothing known before the first challenge");
  assert.equal(await a.authorize("https://r", challenge, scope, undefined, {}), "Bearer t1");
  assert.equal(calls[0]?.url.searchParams.get("service"), "reg");
  assert.deepEqual(calls[0]?.url.searchParams.getAll("scope"), ["repository:a:pull"]);
  assert.equal(calls[0]?.headers.authorization, undefined);
  assert.equal(await a.prepare("https://r", scope, undefined), "Bearer t1", "cached and used up front");
  assert.equal(calls.length, 1);

  // Other credentials never reuse an anonymous token, and send basic auth to the realm.
  assert.equal(await a.prepare("https://r", scope, { username: "u", password: "p" }), "Bearer t2");
  assert.equal(calls[1]?.headers.authorization, `Basic ${Buffer.from("u:p").toString("base64")}`);
  assert.equal(calls[1]?.url.searchParams.get("account"), "u");

  // Another scope is another token; concurrent requests share one fetch.
  const [x, y] = await Promise.all([
    a.prepare("https://r", ["repository:b:pull"], undefined),
    a.prepare("https://r", ["repository:b:pull"], undefined),
  ]);
  assert.equal(x, "Bearer t3");
  assert.equal(y, "Bearer t3");

  now += 301_000;
  assert.equal(await a.prepare("https://r", scope, undefined), "Bearer t4", "expired tokens are renewed");

  // A token the registry just rejected is not offered again.
  assert.equal(await a.authorize("https://r", challenge, scope, undefined, { rejected: "Bearer t4" }), "Bearer t5");
});

test("an identity token is exchanged with the OAuth2 refresh_token grant", async () => {
  let seen: { method: string; headers: Record<string, string>; body?: string } | undefined;
  const a = new Authorizer(async (_url, init) => {
    seen = init;
    return response(200, { access_token: "acc", expires_in: 60 });
  });
  const header = await a.authorize(
    "https://r",
    [
      {
        scheme: "bearer",
        params: { realm: "https://auth.example/token", service: "reg", scope: "repository:a:pull,push" },
      },
    ],
    ["repository:a:pull"],
    { identityToken: "refresh-me" },
    {},
  );
  assert.equal(header, "Bearer acc");
  assert.equal(seen?.method, "POST");
  const form = new URLSearchParams(seen?.body ?? "");
  assert.equal(form.get("grant_type"), "refresh_token");
  assert.equal(form.get("refresh_token"), "refresh-me");
  assert.equal(form.get("service"), "reg");
  assert.equal(form.get("scope"), "repository:a:pull repository:a:pull,push");
});

test("basic challenges use the credentials; without them, or when refused, Unauthenticated", async () => {
  const a = new Authorizer(async () => response(401, {}));
  const basic = [{ scheme: "basic", params: { realm: "r" } }];
  assert.equal(
    await a.authorize("https://r", basic, [], { username: "u", password: "p" }, {}),
    `Basic ${Buffer.from("u:p").toString("base64")}`,
  );
  await assert.rejects(a.authorize("https://r", basic, [], undefined, {}), {
    name: "RuntimeError",
    message: "https://r: unauthorized: credentials required",
  });
  await assert.rejects(
    a.authorize(
      "https://r",
      [{ scheme: "bearer", params: { realm: "https://auth.example/token" } }],
      [],
      { username: "u", password: "bad" },
      {},
    ),
    (err: Error & { kind?: string }) => {
      assert.equal(err.kind, "Unauthenticated");
      assert.match(err.message, /fetch token from https:\/\/auth.example\/token: 401: the credentials were rejected/);
      assert.doesNotMatch(err.message, /bad/);
      return true;
    },
  );
  await assert.rejects(
    a.authorize("https://r", [{ scheme: "negotiate", params: {} }], [], undefined, {}),
    /no supported authentication scheme/,
  );
});
