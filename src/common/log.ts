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

export function jsonLogger(stream: NodeJS.WritableStream = process.stderr, level: LogLevel = 'info'): Logger {
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
