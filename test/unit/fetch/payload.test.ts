import t from 'tap'
import { assertPlainStream, decideFormat, isGzip, parseDeclaredFormat, sniffFormat, zfsStreamHeader } from '../../../src/agent/import/payload.js'
import { InvalidParamsError, UpstreamError } from '../../../src/agent/errors.js'

/** The first bytes of a real `zfs send` (DRR_BEGIN, little-endian), as zfs 2.1 writes them. */
const zfsHead = () => {
  const b = Buffer.alloc(512)
  b.writeUInt32LE(0, 0) // DRR_BEGIN
  b.writeUInt32LE(0, 4)
  b.writeBigUInt64LE(0x2f5bacbacn, 8)
  return b
}
const mbr = () => { const b = Buffer.alloc(512, 7); b[510] = 0x55; b[511] = 0xaa; return b }
const qcow2 = () => Buffer.concat([Buffer.from('QFI\xfb', 'latin1'), Buffer.alloc(508)])

t.test('sniffing', async (t) => {
  t.equal(sniffFormat(zfsHead()), 'zfs')
  const be = Buffer.alloc(32); be.writeBigUInt64BE(0x2f5bacbacn, 8)
  t.equal(sniffFormat(be), 'zfs', 'a stream from a big-endian sender')
  t.equal(sniffFormat(qcow2()), 'qcow2')
  t.equal(sniffFormat(mbr()), 'raw', 'MBR (and GPT protective MBR) signature')
  t.equal(sniffFormat(Buffer.alloc(512)), undefined, 'zeros are nothing')
  t.equal(sniffFormat(mbr().subarray(0, 511)), undefined, 'too short to show the signature')
  const notBegin = zfsHead(); notBegin.writeUInt32LE(5, 0)
  t.equal(sniffFormat(notBegin), undefined, 'magic without a BEGIN record is not a stream')
  t.ok(isGzip(Buffer.from([0x1f, 0x8b, 8])))
  t.notOk(isGzip(Buffer.from([0x1f])))
})

t.test('declared formats', async (t) => {
  t.equal(parseDeclaredFormat(''), undefined)
  t.equal(parseDeclaredFormat(undefined), undefined)
  t.equal(parseDeclaredFormat('qcow2'), 'qcow2')
  t.throws(() => parseDeclaredFormat('vmdk'), InvalidParamsError)
  t.throws(() => parseDeclaredFormat('RAW'), InvalidParamsError, 'exact names only')
})

t.test('deciding', async (t) => {
  t.equal(decideFormat('x', zfsHead(), undefined), 'zfs')
  t.equal(decideFormat('x', Buffer.alloc(600, 1), 'raw'), 'raw', 'raw may be declared for bytes with no signature')
  t.equal(decideFormat('x', mbr(), 'raw'), 'raw')
  t.throws(() => decideFormat('x', Buffer.alloc(600, 1), undefined), { message: /not a zfs send stream, qcow2 or raw disk image.*declare format "raw"/ })
  t.throws(() => decideFormat('x', zfsHead(), 'raw'), { message: /declared raw, but the bytes are zfs/ }, 'a stream is never written out as a disk')
  t.throws(() => decideFormat('x', qcow2(), 'raw'), { message: /declared raw, but the bytes are qcow2/ })
  t.throws(() => decideFormat('x', mbr(), 'qcow2'), { message: /declared qcow2, but the bytes are raw/ })
  t.throws(() => decideFormat('x', Buffer.alloc(600, 1), 'zfs'), UpstreamError)
})

t.test('issue 12 item 2: the BEGIN record decides which streams may become images', async (t) => {
  const head = (o: { hdrtype?: bigint; flags?: number; fromguid?: bigint; be?: boolean } = {}) => {
    const b = zfsHead()
    const w64 = (v: bigint, at: number) => (o.be ? b.writeBigUInt64BE(v, at) : b.writeBigUInt64LE(v, at))
    if (o.be) b.writeBigUInt64BE(0x2f5bacbacn, 8)
    w64((0x11n << 2n) | (o.hdrtype ?? 1n), 16) // feature flags above the header type
    if (o.be) b.writeUInt32BE(o.flags ?? 0, 36); else b.writeUInt32LE(o.flags ?? 0, 36)
    w64(0xc6e9c113b057c99bn, 40)
    w64(o.fromguid ?? 0n, 48)
    return b
  }
  t.same(zfsStreamHeader(head()), { compound: false, clone: false, toguid: 0xc6e9c113b057c99bn, fromguid: 0n })
  t.doesNotThrow(() => assertPlainStream('x', zfsStreamHeader(head())), 'a plain full stream')
  t.doesNotThrow(() => assertPlainStream('x', zfsStreamHeader(head({ be: true }))), 'from a big-endian sender too')
  t.throws(() => assertPlainStream('x', zfsStreamHeader(head({ flags: 1, fromguid: 5n }))), { message: /^image x: a clone stream is not accepted/ })
  t.throws(() => assertPlainStream('x', zfsStreamHeader(head({ flags: 1, be: true, fromguid: 5n }))), { message: /a clone stream/ }, 'big-endian flags')
  t.throws(() => assertPlainStream('x', zfsStreamHeader(head({ fromguid: 42n }))), { message: /an incremental stream is not accepted \(from guid 42\)/ })
  t.throws(() => assertPlainStream('x', zfsStreamHeader(head({ hdrtype: 2n }))), { message: /a replication or properties stream/ })
  t.throws(() => zfsStreamHeader(head().subarray(0, 100)), { message: /truncated in its first record/ })
})
