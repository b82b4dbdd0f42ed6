/**
 * Container log files in the CRI format (`<time> <stdout|stderr> <P|F> <content>`): parsing records,
 * joining partial records into lines, and reading a file once or following it across rotation. The one
 * implementation for every reader: berthd (ExecSync output, attach), the CLI (`berth logs`) and the pod
 * runner. No domain words: a path in, records or lines out.
 *
 *   CriLogReader.open(path) ─▶ read() / follow() ─▶ CriLogRecord (bytes) ─▶ LineJoiner / joinLines ─▶ LogLine
 *
 * Log files are written by conmon with what the container prints, so every read is bounded: see
 * CriLogReader for how the file is opened and read, and the caps on a record and on a joined line.
 */
export { type CriLogRecord, type LogStream, parseCriLogRecord, parseRfc3339 } from "./format.js";
export { joinLines, LineJoiner, type LineJoinerOptions, type LogLine, MAX_LINE_BYTES, parseCriLog } from "./join.js";
export {
  CriLogReader,
  type CriLogReaderOptions,
  type FollowOptions,
  followCriLog,
  MAX_RECORD_BYTES,
  type ReadStreamsOptions,
  readCriLogStreams,
} from "./reader.js";
