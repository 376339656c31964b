import t from 'tap'
import { decideFormat, isGzip, parseDeclaredFormat, sniffFormat } from '../../../src/fetch/payload.js'
import { InvalidParamsError, UpstreamError } from '../../../src/errors.js'

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
