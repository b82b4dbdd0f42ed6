/**
 * What `pull` shows while an image is pulled. berthd streams per-layer progress through its own
 * berth.v1.Images/Pull RPC; other runtimes only offer the CRI PullImage, which says nothing until
 * it returns. On a terminal: a line per image (spinner, status, elapsed time) and, when the
 * runtime reports layers, a bar per layer under it. Elsewhere: plain lines, one per layer state
 * change. No numbers are ever invented: without layer reports there are no layer bars.
 *
 * Lifecycle: `createPullDisplay()` → `start(image)` per image, one at a time → the task's
 * `layers(...)` any number of times, then `done` or `failed` → `stop()` once.
 */
import { MultiBar, type MultiBar as MultiBarT, type SingleBar } from "cli-progress";
import { humanSize, shortId } from "./format.js";

/** One layer as the display needs it. */
export interface LayerState {
  digest: string;
  /** Compressed size in bytes (0 while unknown). */
  total: number;
  done: number;
  /** "waiting", "downloading", "verifying", "extracting" or "done". */
  state: string;
}

/** One image being pulled. */
export interface PullTask {
  /** A snapshot of every layer seen so far. */
  layers(layers: readonly LayerState[]): void;
  done(imageId: string): void;
  failed(message: string): void;
}

/** The display of every pull of one command. */
export interface PullDisplay {
  start(image: string): PullTask;
  /** Stops redrawing; call once every task has ended. */
  stop(): void;
}

const SPINNER = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/** "3.2s" under a minute, "1m05s" above. */
export function formatElapsed(ms: number): string {
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}

/** "1.2MB/3.4MB" for a layer, "1.2MB" while its size is unknown. */
export function formatLayerSize(l: LayerState): string {
  return l.total > 0 ? `${humanSize(l.done)}/${humanSize(l.total)}` : humanSize(l.done);
}

/** The digest as layer lines show it: the first 12 hex digits, like docker pull. */
export function layerLabel(digest: string): string {
  return digest.replace(/^sha256:/, "").slice(0, 12);
}

/** The words of a display: pull's, or push's ("Pushing", "pushing", "Pushed", "push"). */
export interface DisplayWords {
  /** "Pulling" */
  starting: string;
  /** "pulling" (the status while it runs) */
  running: string;
  /** "Pulled" */
  finished: string;
  /** "pull" */
  verb: string;
}

const PULL_WORDS: DisplayWords = { starting: "Pulling", running: "pulling", finished: "Pulled", verb: "pull" };

/** Spinners and bars on a terminal (`stream` is a TTY), plain lines otherwise. */
export function createPullDisplay(
  stream: NodeJS.WriteStream = process.stderr,
  words: DisplayWords = PULL_WORDS,
): PullDisplay {
  return stream.isTTY ? createBarDisplay(stream, words) : createPlainDisplay(stream, words);
}

function createPlainDisplay(stream: NodeJS.WritableStream, words: DisplayWords): PullDisplay {
  return {
    start(image) {
      const started = Date.now();
      const seen = new Map<string, string>();
      stream.write(`${words.starting} ${image} ...\n`);
      return {
        layers(layers) {
          for (const l of layers) {
            if (seen.get(l.digest) === l.state) continue;
            seen.set(l.digest, l.state);
            const size = l.state === "waiting" ? "" : ` ${formatLayerSize(l)}`;
            stream.write(`  ${layerLabel(l.digest)}: ${l.state}${size}\n`);
          }
        },
        done: (id) => stream.write(`${words.finished} ${image} (${id}) in ${formatElapsed(Date.now() - started)}\n`),
        // The error itself follows as the command's `berth: ...` line.
        failed: () => stream.write(`Failed to ${words.verb} ${image}\n`),
      };
    },
    stop() {},
  };
}

function createBarDisplay(stream: NodeJS.WriteStream, words: DisplayWords): PullDisplay {
  const multi: MultiBarT = new MultiBar({
    stream,
    // Each bar chooses its own format through the `line` payload: image lines and layer lines differ.
    format: (options, params, payload: { line: "image" | "layer"; [k: string]: string }) => {
      if (payload.line === "image") return `${payload.spinner} ${payload.image}  ${payload.status}  ${payload.elapsed}`;
      const width = 30;
      const filled = Math.round(Math.min(1, params.progress) * width);
      const bar =
        (options.barCompleteChar ?? "=").repeat(filled) + (options.barIncompleteChar ?? "-").repeat(width - filled);
      return `  ${payload.digest}  ${bar}  ${(payload.size ?? "").padEnd(17)}  ${payload.state}`;
    },
    barCompleteChar: "█",
    barIncompleteChar: "░",
    hideCursor: true,
    clearOnComplete: false,
    stopOnComplete: false,
    fps: 10,
    autopadding: false,
  });
  const live = new Set<() => void>();
  const timer = setInterval(() => {
    for (const tick of live) tick();
  }, 100);
  return {
    start(image) {
      const started = Date.now();
      let frame = 0;
      const header = multi.create(1, 0, {
        line: "image",
        spinner: SPINNER[0],
        image,
        status: words.running,
        elapsed: formatElapsed(0),
      });
      const tick = () =>
        header.update(0, { spinner: SPINNER[++frame % SPINNER.length], elapsed: formatElapsed(Date.now() - started) });
      live.add(tick);
      const bars = new Map<string, SingleBar>();
      const end = (mark: string, status: string) => {
        live.delete(tick);
        header.update(1, { spinner: mark, status, elapsed: formatElapsed(Date.now() - started) });
      };
      return {
        layers(layers) {
          for (const l of layers) {
            const payload = { line: "layer", digest: layerLabel(l.digest), size: formatLayerSize(l), state: l.state };
            // Until its size is known a layer shows an empty bar; a finished one a full bar.
            const total = Math.max(1, l.total);
            const value = l.state === "done" ? total : Math.min(l.done, total);
            const bar = bars.get(l.digest);
            if (bar) {
              bar.setTotal(total);
              bar.update(value, payload);
            } else {
              bars.set(l.digest, multi.create(total, value, payload));
            }
          }
        },
        done: (id) => end("✔", `done  ${shortId(id)}`),
        failed: (message) => end("✘", `failed: ${message}`),
      };
    },
    stop() {
      clearInterval(timer);
      multi.stop();
    },
  };
}
