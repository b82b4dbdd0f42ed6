/**
 * Pod events (Pulled, Created, Started, Unhealthy, BackOff, Killing, ...), kept by the process
 * that runs the pod's worker — the only one that sees them — and persisted as a JSON file per
 * pod (`Layout.eventsFile`) so `berth describe` in another process can show them.
 *
 * Like the API server's event aggregation, an event repeating the previous one with the same
 * type, reason, object and message bumps its count and last timestamp instead of adding a line.
 * Writes are atomic (temp file + rename) and coalesced: at most one write is in flight, and a
 * burst of events becomes one more write after it.
 */
import { mkdir, readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { writeFileAtomic } from "../util/index.js";
import type { Clock } from "./clock.js";

export interface PodEvent {
  type: "Normal" | "Warning";
  reason: string;
  message: string;
  /** The field the event is about, e.g. `spec.containers{web}` ("" for the pod). */
  object: string;
  count: number;
  /** Milliseconds since the epoch. */
  firstTimestamp: number;
  lastTimestamp: number;
}

/** Events file format (versioned for later changes). */
interface EventsFile {
  version: 1;
  events: PodEvent[];
}

export class EventRecorder {
  private events: PodEvent[] = [];
  private writing: Promise<void> | undefined;
  private dirty = false;
  private closed = false;

  constructor(
    private readonly file: string,
    private readonly clock: Clock,
    private readonly options: { max?: number; onEvent?: (e: PodEvent) => void; onError?: (err: unknown) => void } = {},
  ) {}

  /** Continues the list an earlier process left (a runner adopting its pod). */
  async load(): Promise<void> {
    this.events = (await readEvents(this.file)) ?? [];
  }

  record(type: PodEvent["type"], reason: string, message: string, object = ""): void {
    const now = this.clock.now();
    const last = this.events[this.events.length - 1];
    let event: PodEvent;
    if (last && last.type === type && last.reason === reason && last.message === message && last.object === object) {
      last.count++;
      last.lastTimestamp = now;
      event = last;
    } else {
      event = { type, reason, message, object, count: 1, firstTimestamp: now, lastTimestamp: now };
      this.events.push(event);
      const max = this.options.max ?? 200;
      if (this.events.length > max) this.events.splice(0, this.events.length - max);
    }
    this.options.onEvent?.(event);
    this.save();
  }

  list(): PodEvent[] {
    return this.events.map((e) => ({ ...e }));
  }

  /** Waits for pending writes. */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  /** Flushes and stops writing (the pod's directory is about to go). */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
  }

  private save(): void {
    if (this.closed) return;
    if (this.writing) {
      this.dirty = true;
      return;
    }
    this.writing = (async () => {
      do {
        this.dirty = false;
        const data: EventsFile = { version: 1, events: this.events };
        try {
          await mkdir(dirname(this.file), { recursive: true });
          await writeFileAtomic(this.file, `${JSON.stringify(data)}\n`);
        } catch (err) {
          this.options.onError?.(err);
        }
      } while (this.dirty && !this.closed);
      this.writing = undefined;
    })();
  }
}

/** The events a runner persisted for a pod, or undefined when there is no file. */
export async function readEvents(file: string): Promise<PodEvent[] | undefined> {
  try {
    const data = JSON.parse(await readFile(file, "utf8")) as EventsFile;
    return Array.isArray(data.events) ? data.events : [];
  } catch {
    return undefined;
  }
}
