/**
 * Write a byte stream into a fresh zvol through its block device: the path
 * for raw disk images (and for the qcow2 spool). The zvol is new and reads
 * as zeros, so all-zero blocks are skipped rather than written: a mostly
 * empty cloud image stays thin. Writes go out in aligned 1 MiB pieces (a
 * partial page written to a block device costs a read first), double
 * buffered so the next piece fills while the last one is written.
 */
import { open, stat } from 'node:fs/promises'
import { UpstreamError } from '../errors.js'

const PIECE = 1 << 20
/** Granularity of the zero test: a run of zero blocks this size is left a hole. */
const BLOCK = 64 * 1024
const ZERO = Buffer.alloc(BLOCK)

/** Wait for udev to create the device node of a new zvol. */
export async function waitForDevice(path: string, o: { signal?: AbortSignal | undefined; timeoutMs?: number } = {}): Promise<void> {
  const until = Date.now() + (o.timeoutMs ?? 60_000)
  for (;;) {
    o.signal?.throwIfAborted()
    const st = await stat(path).catch(() => undefined)
    if (st?.isBlockDevice()) return
    if (Date.now() > until) throw new Error(`device ${path} did not appear within ${o.timeoutMs ?? 60_000} ms (is udev running?)`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Offsets of the non-zero runs of `buf`, in BLOCK steps: [start, end) pairs. */
export function dataRuns(buf: Buffer): Array<[number, number]> {
  const runs: Array<[number, number]> = []
  let start = -1
  for (let i = 0; i < buf.length; i += BLOCK) {
    const end = Math.min(i + BLOCK, buf.length)
    const zero = buf.subarray(i, end).equals(end - i === BLOCK ? ZERO : ZERO.subarray(0, end - i))
    if (!zero && start < 0) start = i
    if (zero && start >= 0) { runs.push([start, i]); start = -1 }
  }
  if (start >= 0) runs.push([start, buf.length])
  return runs
}

/**
 * Copy `chunks` to the start of the device at `path` (which must read as
 * zeros), fsync, and return the number of bytes the stream held. More than
 * `limit` bytes is an error (the device is that big).
 */
export async function writeToDevice(path: string, chunks: AsyncIterable<Buffer>, o: { limit: number; what: string; signal?: AbortSignal | undefined }): Promise<number> {
  const fh = await open(path, 'r+')
  let writing: Promise<unknown> = Promise.resolve()
  try {
    const bufs = [Buffer.allocUnsafe(PIECE), Buffer.allocUnsafe(PIECE)]
    let cur = 0
    let fill = 0
    let pos = 0 // device offset of the current piece
    const flush = async () => {
      const buf = bufs[cur]!.subarray(0, fill)
      const at = pos
      await writing // at most one piece in flight: that is the backpressure
      writing = Promise.all(dataRuns(buf).map(([s, e]) => fh.write(buf, s, e - s, at + s)))
      writing.catch(() => {}) // seen by the next await; must not count as unhandled meanwhile
      pos += fill
      fill = 0
      cur ^= 1
    }
    for await (const chunk of chunks) {
      if (pos + fill + chunk.length > o.limit) throw new UpstreamError(`${o.what}: larger than ${o.limit} bytes`)
      let off = 0
      while (off < chunk.length) {
        const n = chunk.copy(bufs[cur]!, fill, off)
        off += n
        fill += n
        if (fill === PIECE) await flush()
      }
      o.signal?.throwIfAborted()
    }
    if (fill > 0) await flush()
    await writing
    await fh.sync()
    return pos
  } finally {
    await writing.catch(() => {}) // never close under a write in flight
    await fh.close()
  }
}
