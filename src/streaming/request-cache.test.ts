import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isKind } from "../errdefs/index.js";
import { RequestCache } from "./index.js";

describe("request cache", () => {
  test("a token is random base64url and consumes exactly once", () => {
    const cache = new RequestCache<string>();
    const a = cache.insert("a");
    const b = cache.insert("b");
    assert.match(a, /^[A-Za-z0-9_-]{22}$/);
    assert.notEqual(a, b);
    assert.equal(cache.consume(a), "a");
    assert.equal(cache.consume(a), undefined);
    assert.equal(cache.consume("nope"), undefined);
    assert.equal(cache.size, 1);
  });

  test("a token expires after the TTL (injectable clock)", () => {
    let now = 1000;
    const cache = new RequestCache<string>({ now: () => now });
    const early = cache.insert("early");
    const late = cache.insert("late");
    now += 60_000;
    assert.equal(cache.consume(early), "early", "valid up to the TTL");
    now += 1;
    assert.equal(cache.consume(late), undefined, "expired one millisecond later");
  });

  test("beyond maxInFlight pending tokens, insert is ResourceExhausted until some expire", () => {
    let now = 0;
    const cache = new RequestCache<number>({ maxInFlight: 3, ttlMs: 100, now: () => now });
    for (let i = 0; i < 3; i++) cache.insert(i);
    assert.throws(
      () => cache.insert(3),
      (err) => isKind(err, "ResourceExhausted"),
    );
    now = 101;
    // The sweep on insert drops the expired ones.
    cache.insert(4);
    assert.equal(cache.size, 1);
  });

  test("the default limit is 1000 in flight", () => {
    const cache = new RequestCache<number>();
    for (let i = 0; i < 1000; i++) cache.insert(i);
    assert.throws(
      () => cache.insert(1000),
      (err) => isKind(err, "ResourceExhausted"),
    );
  });
});
