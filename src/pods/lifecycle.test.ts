import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isKind } from "../errdefs/index.js";
import { CONTAINER_TRANSITIONS, SANDBOX_TRANSITIONS, transitionContainer, transitionSandbox } from "./lifecycle.js";
import type { ContainerState, SandboxState } from "./types.js";

// Every state pair, not a sample: the table is the whole contract of the managers' update(). The lists are
// checked against the union types by the compiler (`satisfies`), so a new state cannot be left out here.
const containerStates = Object.keys({
  creating: 1,
  created: 1,
  running: 1,
  exited: 1,
  unknown: 1,
} satisfies Record<ContainerState, 1>) as ContainerState[];
const sandboxStates = Object.keys({ creating: 1, ready: 1, notready: 1 } satisfies Record<
  SandboxState,
  1
>) as SandboxState[];

/** The pairs the machine accepts, as "from->to", found by trying every pair on the transition function. */
function accepted<S extends string>(states: S[], transition: (id: string, from: S, to: S) => void): string[] {
  const ok: string[] = [];
  for (const from of states) {
    for (const to of states) {
      if (from === to) continue;
      try {
        transition("3f2a", from, to);
        ok.push(`${from}->${to}`);
      } catch (err) {
        assert.ok(isKind(err, "FailedPrecondition"), `${from}->${to} is refused as FailedPrecondition`);
        assert.match(String(err), new RegExp(`3f2a is ${from}: it cannot become ${to}`));
      }
    }
  }
  return ok.sort();
}

const machines = [
  {
    name: "container",
    states: containerStates as string[],
    table: CONTAINER_TRANSITIONS as Readonly<Record<string, readonly string[]>>,
    transition: transitionContainer as (id: string, from: string, to: string) => void,
    diagram: ["created->exited", "created->running", "creating->created", "running->exited", "unknown->exited"],
  },
  {
    name: "sandbox",
    states: sandboxStates as string[],
    table: SANDBOX_TRANSITIONS as Readonly<Record<string, readonly string[]>>,
    transition: transitionSandbox as (id: string, from: string, to: string) => void,
    diagram: ["creating->notready", "creating->ready", "ready->notready"],
  },
];

for (const m of machines) {
  describe(`${m.name} state machine`, () => {
    test("the table has a row for every state and names only states", () => {
      assert.deepEqual(Object.keys(m.table).sort(), [...m.states].sort());
      for (const to of Object.values(m.table).flat()) assert.ok(m.states.includes(to));
    });

    test("exactly the diagram's transitions are accepted; every other pair is FailedPrecondition", () => {
      assert.deepEqual(accepted(m.states, m.transition), m.diagram);
    });

    test("staying in a state is no transition and is always accepted", () => {
      for (const s of m.states) m.transition("3f2a", s, s);
    });

    test("nothing returns to creating", () => {
      assert.ok(!Object.values(m.table).flat().includes("creating"));
    });
  });
}

test("an exited container and a stopped sandbox are final, and nothing enters unknown", () => {
  assert.deepEqual(CONTAINER_TRANSITIONS.exited, []);
  assert.deepEqual(SANDBOX_TRANSITIONS.notready, []);
  assert.ok(!Object.values(CONTAINER_TRANSITIONS).flat().includes("unknown"));
  assert.throws(
    () => transitionSandbox("3f2a", "notready", "ready"),
    (e) => isKind(e, "FailedPrecondition"),
  );
});
