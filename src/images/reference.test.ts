import assert from "node:assert/strict";
import { test } from "node:test";
import { RuntimeError } from "../errdefs/index.js";
import { digestReference, formatReference, parseReference, tagReference } from "./reference.js";

const D = `sha256:${"a".repeat(64)}`;

test("references normalise as containerd and Kubernetes do", () => {
  const cases: [string, string][] = [
    ["busybox", "docker.io/library/busybox:latest"],
    ["busybox:1.36", "docker.io/library/busybox:1.36"],
    ["library/busybox", "docker.io/library/busybox:latest"],
    ["docker.io/busybox", "docker.io/library/busybox:latest"],
    ["index.docker.io/library/busybox", "docker.io/library/busybox:latest"],
    ["index.docker.io/busybox:1", "docker.io/library/busybox:1"],
    ["user/repo", "docker.io/user/repo:latest"],
    ["a/b/c", "docker.io/a/b/c:latest"],
    ["localhost/foo", "localhost/foo:latest"],
    ["localhost:5000/foo:bar", "localhost:5000/foo:bar"],
    ["127.0.0.1:5000/a/b/c:tag", "127.0.0.1:5000/a/b/c:tag"],
    ["[::1]:5000/foo", "[::1]:5000/foo:latest"],
    ["[fe80::1]/foo", "[fe80::1]/foo:latest"],
    ["registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"],
    ["example.com:443/foo", "example.com:443/foo:latest"],
    [`gcr.io/project/image@${D}`, `gcr.io/project/image@${D}`],
    [`busybox@${D}`, `docker.io/library/busybox@${D}`],
    [`busybox:1.36@${D}`, `docker.io/library/busybox:1.36@${D}`],
    ["foo_bar", "docker.io/library/foo_bar:latest"],
    ["foo__bar", "docker.io/library/foo__bar:latest"],
    ["foo-bar", "docker.io/library/foo-bar:latest"],
    ["foo---bar", "docker.io/library/foo---bar:latest"],
    ["foo.bar/baz", "foo.bar/baz:latest"],
    ["Foo/bar", "Foo/bar:latest"], // an uppercase first component can only be a host
    ["busybox:Tag_1.2-x", "docker.io/library/busybox:Tag_1.2-x"],
    [`busybox:${"t".repeat(128)}`, `docker.io/library/busybox:${"t".repeat(128)}`],
    [`x@sha512:${"b".repeat(128)}`, `docker.io/library/x@sha512:${"b".repeat(128)}`],
  ];
  for (const [input, want] of cases) {
    assert.equal(formatReference(parseReference(input)), want, input);
  }
});

test("parts: domain, path, tag and digest", () => {
  assert.deepEqual(parseReference("busybox"), { domain: "docker.io", path: "library/busybox", tag: "latest" });
  assert.deepEqual(parseReference(`localhost:5000/a/b:t@${D}`), {
    domain: "localhost:5000",
    path: "a/b",
    tag: "t",
    digest: D,
  });
  assert.deepEqual(parseReference(`r.io/x@${D}`), { domain: "r.io", path: "x", digest: D });
});

test("a digest wins over a tag: no repoTag is recorded, the digest is", () => {
  const ref = parseReference(`busybox:1.36@${D}`);
  assert.equal(tagReference(ref), undefined);
  assert.equal(digestReference(ref, D), `docker.io/library/busybox@${D}`);
  assert.equal(tagReference(parseReference("busybox")), "docker.io/library/busybox:latest");
});

test("invalid references are InvalidArgument naming the reference and the reason", () => {
  const cases: [string, string][] = [
    ["", "repository name must have at least one component"],
    ["Busybox", "repository name must be lowercase"],
    ["example.com/Foo", "repository name must be lowercase"],
    ["localhost:5000/Foo:tag", "repository name must be lowercase"],
    ["a".repeat(64), "cannot specify 64-byte hexadecimal strings"],
    [":tag", "invalid reference format"],
    ["busybox:", "invalid reference format"],
    ["busybox@", "invalid reference format"],
    ["busybox@sha256:abc", "invalid reference format"],
    ["-foo", "invalid reference format"],
    ["foo/", "invalid reference format"],
    ["a//b", "invalid reference format"],
    ["foo___bar", "invalid reference format"],
    ["foo bar", "invalid reference format"],
    ["busybox:-tag", "invalid reference format"],
    [`busybox:${"t".repeat(129)}`, "invalid reference format"],
    ["example.com:port/foo", "invalid reference format"],
    [`busybox@sha256:${"a".repeat(40)}`, "invalid checksum digest length"],
    [`busybox@sha256:${"A".repeat(64)}`, "invalid checksum digest format"],
    [`busybox@md5:${"a".repeat(32)}`, "unsupported digest algorithm"],
    [`r.io/${"a".repeat(251)}`, "repository name must not be more than 255 characters"],
  ];
  for (const [input, reason] of cases) {
    assert.throws(
      () => parseReference(input),
      (err: unknown) => {
        assert.ok(err instanceof RuntimeError, input);
        assert.equal(err.kind, "InvalidArgument", input);
        assert.equal(err.message, `invalid reference ${JSON.stringify(input)}: ${reason}`);
        return true;
      },
      input,
    );
  }
});
