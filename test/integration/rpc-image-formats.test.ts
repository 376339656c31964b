/**
 * RequestImage with disk-image payloads on real ZFS: raw (plain, gzipped,
 * declared), qcow2 through qemu-img, and what is refused. Each imported
 * image must read back bit for bit through a clone, stay thin where the
 * image is empty, and leave no temporary behind when refused.
 */
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import { join } from 'node:path'
import { closeSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs'
import { haveZfs, settle, sh, sha256Of } from '../helpers/zpool.js'
import { startAgent, makeZvolStream } from '../helpers/agent.js'

if (!haveZfs) { t.comment('real ZFS only: run inside the VM (npm test does)'); process.exit(0) }

const MiB = 1 << 20
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

/** A 16 MiB disk: an MBR signature, 1 MiB of data at the start and at 12 MiB, zeros elsewhere. */
function rawDisk(): Buffer {
  const disk = Buffer.alloc(16 * MiB)
  randomBytes(MiB).copy(disk, 0)
  randomBytes(MiB).copy(disk, 12 * MiB)
  disk[510] = 0x55
  disk[511] = 0xaa
  return disk
}

t.test('disk-image payloads', async (t) => {
  const a = await startAgent(t)
  const call = (m: string, p: unknown) => a.call('v1', m, p)
  const temporaries = () => sh('zfs', ['list', '-H', '-o', 'name', '-r', `${a.pool}/images`]).split('\n').filter((n) => /_incoming-|_spool-/.test(n))
  /** The image's bytes, read through a clone of it. */
  async function readBack(id: string, bytes: number): Promise<string> {
    const dest = `guests/readback-${id}`
    const c = await call('CloneImage', { id, dest })
    t.notOk(c.error, `clone ${id}: ${c.error ?? 'ok'}`)
    settle()
    const dev = `/dev/zvol/${a.pool}/${dest}`
    const got = Buffer.alloc(bytes)
    const fd = openSync(dev, 'r')
    try { readSync(fd, got, 0, bytes, 0) } finally { closeSync(fd) }
    return sha(got)
  }

  await t.test('raw, recognised by its MBR signature: thin and bit-identical', async (t) => {
    const disk = rawDisk()
    a.images.routes.set('/images/raw1/download', disk)
    const r = await call('RequestImage', { id: 'raw1' })
    t.match(r.result?.images?.[0], { id: 'raw1', status: 'complete', format: 'raw', size: 16, snapshot: `${a.pool}/images/raw1@image` }, r.error ?? 'imported')
    t.equal(sh('zfs', ['get', '-H', '-p', '-o', 'value', 'volsize', `${a.pool}/images/raw1`]).trim(), String(16 * MiB), 'volsize is the image size')
    t.equal(sh('zfs', ['get', '-H', '-o', 'value', 'mistify:format', `${a.pool}/images/raw1`]).trim(), 'raw')
    const used = Number(sh('zfs', ['get', '-H', '-p', '-o', 'value', 'referenced', `${a.pool}/images/raw1@image`]).trim())
    t.ok(used < 6 * MiB, `the 14 MiB of zeros were not written: ${used} bytes referenced`)
    t.equal(await readBack('raw1', disk.length), sha(disk), 'reads back bit for bit')
    t.same(temporaries(), [])
  })

  await t.test('raw, gzipped (size unknown until the end) and an odd length', async (t) => {
    const disk = rawDisk().subarray(0, 5 * MiB + 1000)
    a.images.routes.set('/images/rawgz/download', gzipSync(disk))
    const r = await call('RequestImage', { id: 'rawgz' })
    t.match(r.result?.images?.[0], { status: 'complete', format: 'raw' }, r.error ?? 'imported')
    const volsize = Number(sh('zfs', ['get', '-H', '-p', '-o', 'value', 'volsize', `${a.pool}/images/rawgz`]).trim())
    t.equal(volsize, Math.ceil(disk.length / (128 * 1024)) * 128 * 1024, 'shrunk to the image, rounded up to a whole 128 KiB')
    t.equal(await readBack('rawgz', disk.length), sha(disk))
  })

  await t.test('raw without a signature: refused unless declared', async (t) => {
    const blob = randomBytes(2 * MiB)
    blob[510] = 0; blob[511] = 0
    a.images.routes.set('/images/nosig/download', blob)
    t.match((await call('RequestImage', { id: 'nosig' })).error, /not a zfs send stream, qcow2 or raw disk image .*declare format "raw"/)
    t.same(temporaries(), [], 'refused before anything was created')
    t.equal((await call('GetImage', { id: 'nosig' })).error, 'not found')
    const r = await call('RequestImage', { id: 'nosig', format: 'raw' })
    t.match(r.result?.images?.[0], { status: 'complete', format: 'raw', size: 2 }, r.error ?? 'imported when declared')
    t.equal(await readBack('nosig', blob.length), sha(blob))
  })

  await t.test('declarations that contradict the bytes are refused', async (t) => {
    a.images.routes.set('/images/stream/download', makeZvolStream(a.pool))
    t.match((await call('RequestImage', { id: 'stream', format: 'raw' })).error, /declared raw, but the bytes are zfs/)
    t.match((await call('RequestImage', { id: 'stream', format: 'qcow2' })).error, /declared qcow2, but the bytes are zfs/)
    t.match((await call('RequestImage', { id: 'stream', format: 'vmdk' })).error, /^format: one of zfs, raw, qcow2/)
    t.same(temporaries(), [])
    t.match((await call('RequestImage', { id: 'stream', format: 'zfs' })).result?.images?.[0], { status: 'complete', format: 'zfs', snapshot: `${a.pool}/images/stream@test` })
  })

  await t.test('a raw image with a wrong checksum leaves nothing', async (t) => {
    const disk = rawDisk()
    a.images.routes.set('/images/rawbad/download', (res) => {
      res.writeHead(200, { 'Content-Length': disk.length, 'X-Image-Sha256': 'cd'.repeat(32) })
      res.end(disk)
    })
    t.match((await call('RequestImage', { id: 'rawbad' })).error, /checksum mismatch/)
    t.same(temporaries(), [])
    t.equal((await call('GetImage', { id: 'rawbad' })).error, 'not found')
  })

  await t.test('qcow2 through qemu-img', async (t) => {
    const dir = t.testdir()
    const disk = rawDisk()
    writeFileSync(join(dir, 'disk.raw'), disk)
    sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', join(dir, 'disk.raw'), join(dir, 'disk.qcow2')])
    const q = readFileSync(join(dir, 'disk.qcow2'))
    t.ok(q.length < disk.length, `the qcow2 is smaller than the disk (${q.length} bytes)`)
    a.images.routes.set('/images/q1/download', q)
    const r = await call('RequestImage', { id: 'q1' })
    t.match(r.result?.images?.[0], { id: 'q1', status: 'complete', format: 'qcow2', size: 16, snapshot: `${a.pool}/images/q1@image` }, r.error ?? 'imported')
    t.equal(sh('zfs', ['get', '-H', '-o', 'value', 'mistify:sha256', `${a.pool}/images/q1`]).trim(), sha(q), 'the checksum is of the bytes as served')
    t.equal(await readBack('q1', disk.length), sha(disk), 'the converted disk reads back bit for bit')
    t.same(temporaries(), [], 'spool and temporary gone')

    a.images.routes.set('/images/q2/download', gzipSync(q))
    t.match((await call('RequestImage', { id: 'q2' })).result?.images?.[0], { status: 'complete', format: 'qcow2' }, 'gzipped qcow2')
    t.equal(await readBack('q2', disk.length), sha(disk))
  })

  await t.test('a qcow2 with a backing file is refused (it would read a host path)', async (t) => {
    const dir = t.testdir()
    writeFileSync(join(dir, 'secret'), 'host file contents\n'.repeat(1000))
    sh('qemu-img', ['create', '-f', 'qcow2', '-F', 'raw', '-b', join(dir, 'secret'), join(dir, 'over.qcow2')])
    a.images.routes.set('/images/qback/download', readFileSync(join(dir, 'over.qcow2')))
    t.match((await call('RequestImage', { id: 'qback' })).error, /backing file; only self-contained images/)
    t.same(temporaries(), [], 'spool removed')
    t.equal((await call('GetImage', { id: 'qback' })).error, 'not found')
  })

  await t.test('a truncated qcow2 fails in qemu-img and leaves nothing', async (t) => {
    const dir = t.testdir()
    writeFileSync(join(dir, 'disk.raw'), rawDisk())
    sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', join(dir, 'disk.raw'), join(dir, 'disk.qcow2')])
    const q = readFileSync(join(dir, 'disk.qcow2'))
    a.images.routes.set('/images/qcut/download', q.subarray(0, 4096))
    t.match((await call('RequestImage', { id: 'qcut' })).error, /^qcow2 image is corrupt or truncated|^qemu-img check: /)
    t.same(temporaries(), [])
    t.ok(await sha256Of(join(dir, 'disk.qcow2')), 'fixture intact')
  })
})
