import assert from "node:assert/strict";
import { test } from "node:test";
import { masqueradeChain, masqueradesInNetns } from "./masquerade.js";

test("masqueradeChain names the chain exactly as the bridge plugin does", () => {
  // Seen in iptables-save after the Debian bridge plugin 1.1.1 set up a pod with ipMasq on network bte2e-net.
  assert.equal(
    masqueradeChain("bte2e-net", "2891bcab7557aa2033f8a8069ee7ddac65136341e7f96a7973fcc51e14cbcb8c"),
    "CNI-4b9f84bc6758a6676875f917",
  );
});

test("only bridge and ptp with ipMasq need their masquerade removed after a netns-less DEL", () => {
  assert.equal(masqueradesInNetns({ type: "bridge", ipMasq: true }), true);
  assert.equal(masqueradesInNetns({ type: "ptp", ipMasq: true }), true);
  assert.equal(masqueradesInNetns({ type: "bridge" }), false);
  assert.equal(masqueradesInNetns({ type: "portmap", ipMasq: true }), false);
});
