/** Unit tests of the pure parts: conmon argv, runc message parsing, the layout. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isKind } from "../errdefs/index.js";
import { conmonCreateArgv, conmonExecArgv, layout, runcMessage, validateId } from "./index.js";

describe("conmon argv", () => {
  const base = {
    id: "c1",
    bundleDir: "/s/containers/c1",
    persistDir: "/s/containers/c1",
    exitDir: "/s/exits",
    logPath: "/var/log/pods/p/c/0.log",
    conmonPidFile: "/s/containers/c1/conmon.pid",
    containerPidFile: "/s/containers/c1/pidfile",
    runtimePath: "/usr/sbin/runc",
    runtimeArgs: ["--root=/run/berth/runc"],
    socketDir: "/s/attach",
    terminal: false,
    stdin: false,
    leaveStdinOpen: false,
  };
  const pair = (argv: string[], flag: string) => argv[argv.indexOf(flag) + 1];

  test("create passes bundle, ids, pidfiles, k8s-file log, runtime and its root", () => {
    const argv = conmonCreateArgv(base);
    assert.equal(pair(argv, "--bundle"), base.bundleDir);
    assert.equal(pair(argv, "--cid"), "c1");
    assert.equal(pair(argv, "--cuuid"), "c1");
    assert.equal(pair(argv, "--exit-dir"), "/s/exits");
    assert.equal(pair(argv, "--persist-dir"), base.persistDir);
    assert.equal(pair(argv, "--log-path"), "k8s-file:/var/log/pods/p/c/0.log");
    assert.equal(pair(argv, "--conmon-pidfile"), base.conmonPidFile);
    assert.equal(pair(argv, "--container-pidfile"), base.containerPidFile);
    assert.equal(pair(argv, "--runtime"), "/usr/sbin/runc");
    assert.equal(pair(argv, "--runtime-arg"), "--root=/run/berth/runc");
    assert.equal(pair(argv, "--socket-dir-path"), "/s/attach");
    for (const absent of ["--syslog", "--terminal", "--stdin", "--leave-stdin-open", "--exec"])
      assert.ok(!argv.includes(absent), absent);
  });

  test("stdio flags: tty wins; stdin leaves stdin open unless stdin_once", () => {
    assert.ok(conmonCreateArgv({ ...base, terminal: true, stdin: true }).includes("--terminal"));
    assert.ok(!conmonCreateArgv({ ...base, terminal: true, stdin: true }).includes("--stdin"));
    const once = conmonCreateArgv({ ...base, stdin: true, leaveStdinOpen: false });
    assert.ok(once.includes("--stdin") && !once.includes("--leave-stdin-open"));
    assert.ok(conmonCreateArgv({ ...base, stdin: true, leaveStdinOpen: true }).includes("--leave-stdin-open"));
  });

  test("exec-sync runs attached with a timeout and the process spec", () => {
    const argv = conmonExecArgv({
      id: "c1",
      runtimePath: "/usr/sbin/runc",
      runtimeArgs: ["--root=/r"],
      processSpec: "/t/process.json",
      pidFile: "/t/pid",
      logPath: "/t/log",
      socketDir: "/s/attach",
      timeoutSec: 5,
    });
    assert.ok(argv.includes("--exec") && argv.includes("--sync"));
    assert.equal(pair(argv, "--exec-process-spec"), "/t/process.json");
    assert.equal(pair(argv, "--timeout"), "5");
    assert.equal(pair(argv, "--log-path"), "k8s-file:/t/log");
    assert.equal(pair(argv, "--log-global-size-max"), String(16 * 1024 * 1024));
    assert.ok(!argv.includes("--bundle"), "no attach socket for exec-sync");
  });
});

describe("runc messages and layout", () => {
  test("logrus lines become their messages", () => {
    const stderr = 'time="2026-01-01T00:00:00Z" level=error msg="container does not exist"\n';
    assert.equal(runcMessage(stderr), "container does not exist");
    assert.equal(
      runcMessage('time="x" level=error msg="exec failed: \\"/x\\": not found"'),
      'exec failed: "/x": not found',
    );
    assert.equal(runcMessage("plain failure\n"), "plain failure");
  });

  test("every container path is under the state dir and ids cannot escape it", () => {
    const p = layout("/run/berth").container("abc");
    assert.equal(p.config, "/run/berth/containers/abc/config.json");
    assert.equal(p.exitFile, "/run/berth/exits/abc");
    assert.equal(p.attachSocket, "/run/berth/attach/abc/attach");
    for (const bad of ["../x", "a/b", "", ".hidden", "x".repeat(200)]) {
      assert.throws(
        () => validateId(bad),
        (e) => isKind(e, "InvalidArgument"),
        bad,
      );
    }
  });
});
