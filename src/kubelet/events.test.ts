import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ManualClock } from "./clock.js";
import { EventRecorder, readEvents } from "./events.js";

describe("pod events", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "berth-events-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("a repeated event is counted, not duplicated; the file is written atomically and read back", async () => {
    const clock = new ManualClock();
    const file = join(dir, "pods", "uid-1", "events.json");
    const seen: string[] = [];
    const r = new EventRecorder(file, clock, { onEvent: (e) => seen.push(`${e.reason}x${e.count}`) });
    r.record("Normal", "Pulled", 'Container image "busybox" already present on machine', "spec.containers{a}");
    r.record("Normal", "Created", "Created container a", "spec.containers{a}");
    await clock.advance(5000);
    r.record(
      "Warning",
      "Unhealthy",
      "Readiness probe failed: HTTP probe failed with statuscode: 500",
      "spec.containers{a}",
    );
    await clock.advance(5000);
    r.record(
      "Warning",
      "Unhealthy",
      "Readiness probe failed: HTTP probe failed with statuscode: 500",
      "spec.containers{a}",
    );
    await r.flush();
    const events = await readEvents(file);
    assert.deepEqual(
      events?.map((e) => [e.type, e.reason, e.count, e.lastTimestamp - e.firstTimestamp]),
      [
        ["Normal", "Pulled", 1, 0],
        ["Normal", "Created", 1, 0],
        ["Warning", "Unhealthy", 2, 5000],
      ],
    );
    assert.deepEqual(seen, ["Pulledx1", "Createdx1", "Unhealthyx1", "Unhealthyx2"]);
    assert.equal(JSON.parse(await readFile(file, "utf8")).version, 1);
    // A new recorder on the same file continues the list (a restarted runner).
    const again = new EventRecorder(file, clock);
    await again.load();
    again.record("Normal", "Started", "Started container a");
    await again.close();
    assert.equal((await readEvents(file))?.length, 4);
  });

  test("the list is capped, dropping the oldest", async () => {
    const file = join(dir, "capped.json");
    const r = new EventRecorder(file, new ManualClock(), { max: 3 });
    for (let i = 0; i < 5; i++) r.record("Normal", "N", `event ${i}`);
    await r.flush();
    assert.deepEqual(
      (await readEvents(file))?.map((e) => e.message),
      ["event 2", "event 3", "event 4"],
    );
    assert.equal(await readEvents(join(dir, "missing.json")), undefined);
  });
});
