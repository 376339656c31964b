/**
 * The logger interface the agent and the image service write to, and its implementation: pino,
 * one JSON object per line on stderr by default
 * (`{"level":"info","time":"…","msg":"…",…}`). Anything under a `token` or
 * `authorization` key is redacted, so a bearer token never reaches the log.
 */
import { pino, stdTimeFunctions, type DestinationStream } from 'pino'

export interface Logger {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

/** Paths pino blanks out wherever they appear at the top level or one level down. */
export const REDACT_PATHS = [
  'token', '*.token', 'authorization', '*.authorization', 'Authorization', '*.Authorization',
  'headers.authorization', '*.headers.authorization', 'config.token',
]

/**
 * stderr, the lines of one event-loop turn joined into one write (a write per
 * line was the largest single cost of a small RPC). Nothing is ever in flight,
 * so the 'exit' flush loses nothing, whatever ends the process.
 */
export function batchedStderr(out: { write(s: string): unknown } = process.stderr): DestinationStream {
  let pending: string[] = []
  let scheduled = false
  const flush = () => {
    scheduled = false
    if (pending.length === 0) return
    const text = pending.join('')
    pending = []
    out.write(text)
  }
  process.once('exit', flush)
  return {
    write(line: string) {
      pending.push(line)
      if (!scheduled) { scheduled = true; setImmediate(flush) }
    },
  }
}

export function jsonLogger(stream: NodeJS.WritableStream | DestinationStream = batchedStderr(), level: LogLevel = 'info'): Logger {
  const p = pino({
    level,
    base: { pid: process.pid },
    timestamp: stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  }, stream as DestinationStream)
  return {
    info: (obj, msg) => p.info(obj, msg),
    warn: (obj, msg) => p.warn(obj, msg),
    error: (obj, msg) => p.error(obj, msg),
  }
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} }
