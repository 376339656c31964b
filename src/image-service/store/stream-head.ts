/**
 * The first bytes of a body, read as it streams (never the whole body): what kind of zfs
 * send stream an upload carries decides what the service may do with it.
 */
import { DRR_BEGIN_BYTES, readStreamHeader } from '../../zfs/stream-header.js'

/** Pass the body through unchanged, keeping a copy of its first `n` bytes for `head()`. */
export function captureHead(body: AsyncIterable<Uint8Array>, n: number): { body: AsyncIterable<Uint8Array>; head(): Buffer } {
  const parts: Buffer[] = []
  let have = 0
  async function* pass(): AsyncGenerator<Uint8Array> {
    for await (const chunk of body) {
      if (have < n) {
        const part = Buffer.from(chunk.subarray(0, n - have))
        parts.push(part)
        have += part.length
      }
      yield chunk
    }
  }
  return { body: pass(), head: () => Buffer.concat(parts) }
}

/**
 * Read the first `n` bytes (fewer when the body is shorter) before anything else is done with
 * the body; `body` then yields every byte, those first ones included.
 */
export async function peekHead(body: AsyncIterable<Uint8Array>, n: number): Promise<{ head: Buffer; body: AsyncIterable<Uint8Array> }> {
  const it = body[Symbol.asyncIterator]()
  const read: Uint8Array[] = []
  let have = 0
  let ended = false
  while (have < n) {
    const r = await it.next()
    if (r.done === true) { ended = true; break }
    read.push(r.value)
    have += r.value.length
  }
  async function* all(): AsyncGenerator<Uint8Array> {
    let handedOn = false
    try {
      yield* read
      if (ended) return
      // yield* hands an early stop (return) on to the body, as for-await would.
      handedOn = true
      yield* { [Symbol.asyncIterator]: () => it }
    } finally {
      if (!handedOn && !ended) await it.return?.()
    }
  }
  return { head: Buffer.concat(read).subarray(0, n), body: all() }
}

/**
 * The snapshot guid a plain full zfs send stream carries, in decimal; '' for anything else
 * (not a stream, too short, a replication package, a clone or an incremental stream): only a
 * plain full stream can be the base an increment applies to.
 */
export function snapshotGuidOf(head: Buffer): string {
  const h = readStreamHeader(head.subarray(0, DRR_BEGIN_BYTES))
  if (!h || h.compound || h.clone || h.fromguid !== 0n || h.toguid === 0n) return ''
  return h.toguid.toString()
}
