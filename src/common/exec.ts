/**
 * The one module that starts processes. Never a shell; the C locale so
 * messages are the ones our classifiers know; a timeout and an abort signal
 * on every call; streaming children keep stderr buffered for their error.
 */
import { execa } from 'execa'
import type { Readable, Writable } from 'node:stream'

/** Everything known about a command that failed. */
export interface CommandFailure {
  readonly bin: string
  readonly args: readonly string[]
  readonly exitCode: number | undefined
  readonly signal: string | undefined
  readonly timedOut: boolean
  readonly stderr: string
}

export interface ExecOptions {
  readonly signal?: AbortSignal | undefined
  /** Kill the process after this long (0 = never). */
  readonly timeoutMs?: number | undefined
}

export interface SpawnOptions extends ExecOptions {
  readonly stdin?: 'pipe' | 'ignore'
  /** A number: a descriptor the child writes into itself (e.g. a socket), so no byte passes through us. */
  readonly stdout?: 'pipe' | 'ignore' | number
}

/** A running process whose stdout/stdin the caller streams. */
export interface Child {
  readonly pid: number | undefined
  readonly stdin: Writable | null
  readonly stdout: Readable | null
  /** Buffered for `done`'s error; its end means the child is exiting. */
  readonly stderr?: Readable | null
  /** Resolves on exit 0; rejects with what `toError` made of the failure. */
  readonly done: Promise<void>
  /** SIGTERM now, SIGKILL 5 s later if it is still there. */
  kill(): void
}

export type ToError = (failure: CommandFailure) => Error

const ENV = { LC_ALL: 'C', LANG: 'C' }
const MAX_BUFFER = 256 * 1024 * 1024

function failureOf(bin: string, args: readonly string[], r: {
  exitCode?: number | undefined; signal?: string | undefined; timedOut?: boolean | undefined; stderr?: unknown; shortMessage?: string | undefined; isCanceled?: boolean | undefined
}): CommandFailure {
  const stderr = typeof r.stderr === 'string' && r.stderr !== '' ? r.stderr : (r.exitCode === undefined ? r.shortMessage ?? '' : '')
  return {
    bin, args, exitCode: r.exitCode, signal: r.isCanceled ? 'aborted' : r.signal, timedOut: r.timedOut === true, stderr,
  }
}

/** Run to completion; resolve with stdout. */
export async function runCommand(bin: string, args: readonly string[], toError: ToError, o: ExecOptions = {}): Promise<string> {
  const r = await execa(bin, args, {
    env: ENV, stdin: 'ignore', reject: false, stripFinalNewline: false, maxBuffer: MAX_BUFFER,
    timeout: o.timeoutMs ?? 0, forceKillAfterDelay: 5000, ...(o.signal ? { cancelSignal: o.signal } : {}),
  })
  if (r.failed) throw toError(failureOf(bin, args, r))
  return r.stdout
}

/** Start a process whose stdin and/or stdout are streams for the caller. */
export function spawnCommand(bin: string, args: readonly string[], toError: ToError, o: SpawnOptions = {}): Child {
  // execa's types list only fds 3-9, but hands any descriptor number to spawn() as it is.
  const stdout = (o.stdout ?? 'pipe') as 'pipe' | 'ignore' | 3
  const sub = execa(bin, args, {
    env: ENV, stdin: o.stdin ?? 'ignore', stdout, stderr: 'pipe',
    buffer: { stdout: false, stderr: true }, reject: false, maxBuffer: MAX_BUFFER,
    timeout: o.timeoutMs ?? 0, forceKillAfterDelay: 5000, ...(o.signal ? { cancelSignal: o.signal } : {}),
  })
  const done = sub.then((r) => {
    if (r.failed) throw toError(failureOf(bin, args, r))
  })
  // Callers may only look at `done` after their stream ends; never let it go unhandled.
  done.catch(() => {})
  return {
    pid: sub.pid,
    stdin: sub.stdin,
    stdout: sub.stdout,
    stderr: sub.stderr,
    done,
    kill: () => { sub.kill('SIGTERM') },
  }
}
