import { execFile } from "node:child_process";

/**
 * Puts the terminal at `ttyPath` in raw input mode without echo, keeping output processing (`stty raw
 * -echo opost`). Never throws: a terminal that is already gone (the command exited) needs no mode, and the
 * session goes on either way. Asynchronous on purpose: under load a synchronous stty holds the event loop
 * for as long as it waits for a CPU.
 */
export function setRawInput(ttyPath: string, sttyPath = "stty"): Promise<void> {
  return new Promise<void>((resolve) => {
    execFile(sttyPath, ["-F", ttyPath, "raw", "-echo", "opost"], () => resolve());
  });
}
