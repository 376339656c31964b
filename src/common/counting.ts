import { readFileSync } from 'node:fs'
import { Transform } from 'node:stream'

/** A pass-through that reports each chunk's size: how bytes are counted on their way, without touching the streams on either side. */
export function countingStream(add: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      add(chunk.byteLength)
      cb(null, chunk)
    },
  })
}

/** Whether processes' write counters can be read here (Linux /proc with task I/O accounting). */
export const canCountWrites: boolean = bytesWrittenBy(process.pid) !== undefined

/**
 * Bytes a live process has written so far (all its threads, and the kernel
 * writing on its behalf: `wchar` of /proc/PID/io); undefined once it is gone.
 * How a child that writes into a socket itself is counted.
 */
export function bytesWrittenBy(pid: number): number | undefined {
  try {
    const m = /^wchar: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'latin1'))
    return m ? Number(m[1]) : undefined
  } catch {
    return undefined
  }
}
