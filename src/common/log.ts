/**
 * The logger interface the agent and the image service write to, and its implementation: pino,
 * one JSON object per line on stderr by default
 * (`{"level":"info","time":"…","msg":"…",…}`). Anything under a `token` or
 * `authorization` key is redacted, so a bearer token never reaches the log.
 */
import { pino, type DestinationStream } from 'pino'
import { isPlainObject } from './plain-object.js'

export interface Logger {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

const SECRET_KEYS = new Set(['token', 'authorization', 'Authorization'])
export const CENSOR = '[redacted]'

/** A copy of `o` (an Error stays an Error, its message and stack kept) with `censored` keys blanked. */
function censoredCopy(o: Record<string, unknown>, censored: Record<string, unknown>): Record<string, unknown> {
  const copy = Object.assign(Object.create(Object.getPrototypeOf(o) as object) as Record<string, unknown>, o)
  if (o instanceof Error) Object.assign(copy, { message: o.message, stack: o.stack })
  return Object.assign(copy, censored)
}

/**
 * `obj` with every secret blanked: a `token` or `authorization` key at the top
 * level or one level down, and `headers.authorization` one level down. The
 * caller's objects are never changed: what holds a secret is copied. Checked
 * here rather than with pino's `redact` paths, which made every line cost
 * several times more.
 */
export function redactSecrets(obj: Record<string, unknown>, depth = 0): Record<string, unknown> {
  let censored: Record<string, unknown> | undefined
  for (const k in obj) {
    const v = obj[k]
    let nv = v
    if (SECRET_KEYS.has(k)) nv = CENSOR
    else if (isPlainObject(v)) {
      if (depth === 0) nv = redactSecrets(v, 1)
      else if (depth === 1 && k === 'headers') nv = redactSecrets(v, 2)
    }
    if (nv !== v) (censored ??= {})[k] = nv
  }
  return censored ? censoredCopy(obj, censored) : obj
}

/** pino's ISO time, made once per millisecond: with many lines a second, most share one. */
function isoTime(): () => string {
  let ms = -1
  let field = ''
  return () => {
    const now = Date.now()
    if (now !== ms) { ms = now; field = `,"time":"${new Date(now).toISOString()}"` }
    return field
  }
}

/**
 * stderr, written in batches: lines wait up to `delayMs` (or until 64 KiB)
 * and go out in one write (a write per line was the largest single cost of a
 * small RPC). Nothing is ever in flight, so the 'exit' flush loses nothing,
 * whatever ends the process short of SIGKILL.
 */
const flushOnExit = new Set<() => void>()
process.once('exit', () => { for (const flush of flushOnExit) flush() })

export function batchedStderr(out: { write(s: string): unknown } = process.stderr, delayMs = 20): DestinationStream {
  let pending: string[] = []
  let size = 0
  let timer: NodeJS.Timeout | undefined
  const flush = () => {
    if (timer) { clearTimeout(timer); timer = undefined }
    if (pending.length === 0) return
    const text = pending.join('')
    pending = []
    size = 0
    out.write(text)
  }
  flushOnExit.add(flush) // one process listener for all of them, however many loggers are made
  return {
    write(line: string) {
      pending.push(line)
      size += line.length
      if (size >= 64 * 1024) flush()
      else if (!timer) { timer = setTimeout(flush, delayMs); timer.unref() }
    },
  }
}

export function jsonLogger(stream: NodeJS.WritableStream | DestinationStream = batchedStderr(), level: LogLevel = 'info'): Logger {
  const p = pino({
    level,
    base: { pid: process.pid },
    timestamp: isoTime(),
    formatters: { level: (label) => ({ level: label }), log: (obj) => redactSecrets(obj) },
  }, stream as DestinationStream)
  return {
    info: (obj, msg) => p.info(obj, msg),
    warn: (obj, msg) => p.warn(obj, msg),
    error: (obj, msg) => p.error(obj, msg),
  }
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} }
