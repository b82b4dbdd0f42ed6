/**
 * Error kinds shared by every domain module.
 *
 * Domain code throws `RuntimeError` with a kind and a lowercase message chain
 * (`start container 3f2a: runc create: exit status 1: ...`). Callers add context with
 * `wrap()`, which keeps the kind of the innermost error. Only the CRI edge (`src/cri/`)
 * turns kinds into gRPC status codes, so no domain module knows about gRPC.
 */

/** The kinds of failure a caller can act on; each maps to one gRPC code at the edge. */
export type ErrorKind =
  | "NotFound"
  | "AlreadyExists"
  | "InvalidArgument"
  | "FailedPrecondition"
  | "Unavailable"
  | "Unauthenticated"
  | "PermissionDenied"
  | "ResourceExhausted"
  | "DeadlineExceeded"
  | "Canceled"
  | "Unimplemented"
  | "Internal";

/** An error with a kind. `message` is the full context chain. */
export class RuntimeError extends Error {
  readonly kind: ErrorKind;

  constructor(kind: ErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "RuntimeError";
    this.kind = kind;
  }
}

/** The kind of any thrown value: a RuntimeError's own kind, aborts as Canceled/DeadlineExceeded, else Internal. */
export function kindOf(err: unknown): ErrorKind {
  if (err instanceof RuntimeError) return err.kind;
  if (err instanceof Error) {
    if (err.name === "TimeoutError") return "DeadlineExceeded";
    if (err.name === "AbortError") return "Canceled";
  }
  return "Internal";
}

/** The message of any thrown value. */
export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Prefixes `context` to an error's message, keeping its kind (`context: inner message`). */
export function wrap(err: unknown, context: string): RuntimeError {
  return new RuntimeError(kindOf(err), `${context}: ${messageOf(err)}`, { cause: err });
}

/** True when `err` has the given kind. */
export function isKind(err: unknown, kind: ErrorKind): boolean {
  return kindOf(err) === kind;
}

/** Shorthands: `notFound("container 3f2a")`. */
export const notFound = (msg: string): RuntimeError => new RuntimeError("NotFound", msg);
export const alreadyExists = (msg: string): RuntimeError => new RuntimeError("AlreadyExists", msg);
export const invalidArgument = (msg: string): RuntimeError => new RuntimeError("InvalidArgument", msg);
export const failedPrecondition = (msg: string): RuntimeError => new RuntimeError("FailedPrecondition", msg);
export const unavailable = (msg: string): RuntimeError => new RuntimeError("Unavailable", msg);
export const unimplemented = (msg: string): RuntimeError => new RuntimeError("Unimplemented", msg);
export const internal = (msg: string): RuntimeError => new RuntimeError("Internal", msg);
