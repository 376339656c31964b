// The first bytes of an upload, read as they pass: what decides snapshot_guid and whether an increment fits.
import t from 'tap'
import { captureHead, peekHead, snapshotGuidOf } from '../../../src/image-service/store/stream-head.js'

async function* chunks(parts: Buffer[], onReturn?: () => void): AsyncGenerator<Uint8Array> {
  try {
    for (const p of parts) yield p
  } finally {
    onReturn?.()
  }
}

async function collect(src: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = []
  for await (const c of src) out.push(Buffer.from(c))
  return Buffer.concat(out)
}

const parts = [Buffer.from('abc'), Buffer.from('defgh'), Buffer.from('ijklmnop')]

t.test('captureHead passes every byte and keeps the first n', async (t) => {
  const c = captureHead(chunks(parts), 6)
  t.equal((await collect(c.body)).toString(), 'abcdefghijklmnop')
  t.equal(c.head().toString(), 'abcdef')
  const short = captureHead(chunks([Buffer.from('ab')]), 6)
  await collect(short.body)
  t.equal(short.head().toString(), 'ab', 'a shorter body: all of it')
})

t.test('peekHead reads n bytes first, then yields them all', async (t) => {
  const p = await peekHead(chunks(parts), 4)
  t.equal(p.head.toString(), 'abcd', 'exactly n bytes, across chunks')
  t.equal((await collect(p.body)).toString(), 'abcdefghijklmnop', 'nothing lost or repeated')
  const whole = await peekHead(chunks(parts), 100)
  t.equal(whole.head.toString(), 'abcdefghijklmnop', 'a shorter body: all of it')
  t.equal((await collect(whole.body)).toString(), 'abcdefghijklmnop')
  let released = 0
  const stopped = await peekHead(chunks(parts, () => released++), 2)
  for await (const _ of stopped.body) break
  t.equal(released, 1, 'a consumer that stops early releases the body')
})

t.test('snapshotGuidOf: only a plain full stream has one', async (t) => {
  const head = (o: { fromguid?: bigint; flags?: number; hdrtype?: bigint; toguid?: bigint } = {}) => {
    const b = Buffer.alloc(312)
    b.writeBigUInt64LE(0x2f5bacbacn, 8)
    b.writeBigUInt64LE((0x11n << 2n) | (o.hdrtype ?? 1n), 16)
    b.writeUInt32LE(o.flags ?? 0, 36)
    b.writeBigUInt64LE(o.toguid ?? 18446744073709551615n, 40)
    b.writeBigUInt64LE(o.fromguid ?? 0n, 48)
    return b
  }
  t.equal(snapshotGuidOf(head()), '18446744073709551615', 'decimal, all 64 bits')
  t.equal(snapshotGuidOf(head({ fromguid: 7n })), '', 'incremental')
  t.equal(snapshotGuidOf(head({ flags: 1, fromguid: 7n })), '', 'clone')
  t.equal(snapshotGuidOf(head({ hdrtype: 2n })), '', 'compound')
  t.equal(snapshotGuidOf(head({ toguid: 0n })), '', 'no snapshot')
  t.equal(snapshotGuidOf(head().subarray(0, 311)), '', 'cut short')
  t.equal(snapshotGuidOf(Buffer.alloc(312, 1)), '', 'not a stream')
})
