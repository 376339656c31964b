import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, existsSync, openSync, writeSync, closeSync, fsyncSync } from 'node:fs'
import { PassThrough, Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import {
  createZfs, DatasetExistsError, DatasetNotFoundError, HasDependentClonesError, HasChildrenError,
  InvalidDatasetNameError, InvalidStreamError, MoreRecentSnapshotsError, DatasetBusyError,
} from '../../src/zfs/index.js'
import { createFilePool, haveZfs, settle, sh } from '../helpers/zpool.js'

if (!haveZfs) {
  t.comment('real ZFS only: run inside the VM (npm test does)')
  process.exit(0)
}

const zfs = createZfs()
const MiB = 1024 * 1024

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256')
  await pipeline(createReadStream(path), h)
  return h.digest('hex')
}

function writeRandom(dev: string, bytes: number, offset = 0): void {
  const fd = openSync(dev, 'r+')
  try {
    writeSync(fd, randomBytes(bytes), 0, bytes, offset)
    fsyncSync(fd)
  } finally { closeSync(fd) }
}

/** Drain a send child into a buffer-free hash and a receive. */
async function sendInto(child: ReturnType<typeof zfs.send>, dest: string, o: { resumable?: boolean } = {}): Promise<number> {
  let bytes = 0
  const counter = new PassThrough()
  counter.on('data', (c: Buffer) => { bytes += c.length })
  await Promise.all([zfs.receive(dest, child.stdout!.pipe(counter), o), child.done])
  return bytes
}

/** The first `limit` bytes of a send, then the send is killed: an interrupted transfer. */
function cutAfter(child: ReturnType<typeof zfs.send>, limit: number): PassThrough {
  const out = new PassThrough()
  let seen = 0
  child.stdout!.on('data', (c: Buffer) => {
    if (seen >= limit) return
    const part = c.subarray(0, limit - seen)
    seen += part.length
    out.write(part)
    if (seen >= limit) { out.end(); child.kill() }
  })
  return out
}

t.test('adapter against a real pool', async (t) => {
  const { name: pool } = createFilePool(t)

  t.test('version and pool', async (t) => {
    t.match(sh('zfs', ['version']), /^zfs-2\./) // the adapter has no use for it: the CLI
    const [p] = await zfs.pools(pool)
    t.equal(p?.name, pool)
    t.equal(p?.health, 'ONLINE')
    t.ok(p!.size > 400 * MiB)
    t.equal(p?.readonly, false)
  })

  await t.test('filesystems, get, list, props', async (t) => {
    await zfs.createFilesystem(`${pool}/images`)
    await zfs.createFilesystem(`${pool}/guests/g1`, { parents: true, props: { compression: 'lz4' } })
    const ds = await zfs.getDataset(`${pool}/guests/g1`)
    t.equal(ds.type, 'filesystem')
    t.equal(ds.origin, undefined)
    t.ok(ds.available! > 0)
    const props = await zfs.getProps([`${pool}/guests/g1`], ['compression', 'quota'])
    t.equal(props.get(`${pool}/guests/g1`)?.get('compression'), 'lz4')
    const all = await zfs.listDatasets({ types: ['filesystem'], roots: [pool] })
    t.same(all.map((d) => d.name), [pool, `${pool}/guests`, `${pool}/guests/g1`, `${pool}/images`])
    const shallow = await zfs.listDatasets({ types: ['filesystem'], roots: [pool], depth: 1 })
    t.same(shallow.map((d) => d.name).sort(), [pool, `${pool}/guests`, `${pool}/images`])
    await zfs.setProps(`${pool}/guests`, { quota: String(300 * MiB) })
    t.equal((await zfs.getDataset(`${pool}/guests`)).quota, 300 * MiB)
    await t.rejects(zfs.createFilesystem(`${pool}/images`), DatasetExistsError)
    await t.rejects(zfs.getDataset(`${pool}/nope`), DatasetNotFoundError)
    t.equal(await zfs.findDataset(`${pool}/nope`), undefined)
    await t.rejects(zfs.destroy(`${pool}/nope`), DatasetNotFoundError)
    await t.rejects(zfs.destroy(`${pool}/guests`), HasChildrenError)
  })

  await t.test('names are refused before zfs runs', async (t) => {
    for (const bad of [`${pool}/../x`, `${pool}/-o`, `${pool}//x`, `/${pool}/x`, `${pool}/a b`, `${pool}/x@y@z`]) {
      await t.rejects(zfs.getDataset(bad), InvalidDatasetNameError, bad)
    }
  })

  const vol = `${pool}/images/vol`
  const dev = `/dev/zvol/${vol}`
  await t.test('volume, device node, snapshot, clone', async (t) => {
    await zfs.createVolume(vol, 16 * MiB, { props: { compression: 'lz4' } })
    settle()
    t.ok(existsSync(dev), 'zvol device node appears')
    writeRandom(dev, 4 * MiB)
    await zfs.snapshot(`${vol}@s1`)
    const snap = await zfs.getDataset(`${vol}@s1`)
    t.equal(snap.type, 'snapshot')
    t.equal(snap.volsize, 16 * MiB)
    t.ok(snap.written >= 4 * MiB, 'written counts the data')
    t.equal(snap.available, undefined)
    await zfs.clone(`${vol}@s1`, `${pool}/guests/g1/disk-0`, { props: { compression: 'lz4' } })
    settle()
    const clone = await zfs.getDataset(`${pool}/guests/g1/disk-0`)
    t.equal(clone.origin, `${vol}@s1`)
    t.equal(await sha256(`/dev/zvol/${pool}/guests/g1/disk-0`), await sha256(dev), 'clone has the same bytes')
    await t.rejects(zfs.destroy(`${vol}@s1`), HasDependentClonesError)
    const snaps = await zfs.listDatasets({ types: ['snapshot'], roots: [pool] })
    t.same(snaps.map((s) => s.name), [`${vol}@s1`])
    await t.rejects(zfs.snapshot(`${vol}@s1`), DatasetExistsError)
    await t.rejects(zfs.clone(`${vol}@nope`, `${pool}/guests/g1/disk-9`), DatasetNotFoundError)
  })

  await t.test('send | receive round trip, full and incremental, estimate', async (t) => {
    const est = await zfs.sendEstimate(`${vol}@s1`)
    const bytes = await sendInto(zfs.send(`${vol}@s1`), `${pool}/images/copy`)
    t.ok(Math.abs(bytes - est) / bytes < 0.2, `estimate ${est} near actual ${bytes}`)
    settle()
    t.equal(await sha256(`/dev/zvol/${pool}/images/copy`), await sha256(`${dev}`), 'received zvol is byte-identical')
    t.ok(await zfs.findDataset(`${pool}/images/copy@s1`), 'snapshot came along')

    writeRandom(dev, MiB, 8 * MiB)
    await zfs.snapshot(`${vol}@s2`)
    const incBytes = await sendInto(zfs.send(`${vol}@s2`, { from: `${vol}@s1` }), `${pool}/images/copy`)
    t.ok(incBytes < bytes, 'incremental stream is smaller than the full one')
    settle()
    t.equal(await sha256(`/dev/zvol/${pool}/images/copy`), await sha256(dev), 'incremental applied')
    const incEst = await zfs.sendEstimate(`${vol}@s2`, { from: '@s1' })
    t.ok(incEst > 0 && incEst < est * 2)
  })

  await t.test('replication stream (-R) carries descendants', async (t) => {
    await zfs.createFilesystem(`${pool}/guests/g2/sub`, { parents: true })
    await zfs.snapshot(`${pool}/guests/g2@r1`, { recursive: true })
    await sendInto(zfs.send(`${pool}/guests/g2@r1`, { replicate: true }), `${pool}/guests/g2copy`)
    t.ok(await zfs.findDataset(`${pool}/guests/g2copy/sub@r1`))
  })

  await t.test('resumable receive: cut, token, resume', async (t) => {
    const full = zfs.send(`${vol}@s2`)
    await t.rejects(zfs.receive(`${pool}/images/partial`, cutAfter(full, 2 * MiB), { resumable: true }), InvalidStreamError)
    await full.done.catch(() => {})
    const partial = await zfs.getDataset(`${pool}/images/partial`)
    t.ok(partial.receiveResumeToken, 'a resume token is kept')
    const rest = /^size\t(\d+)$/m.exec(sh('zfs', ['send', '-n', '-P', '-t', partial.receiveResumeToken!]))
    t.ok(Number(rest?.[1]) > 0)
    await sendInto(zfs.sendResume(partial.receiveResumeToken!), `${pool}/images/partial`, { resumable: true })
    settle()
    t.equal(await sha256(`/dev/zvol/${pool}/images/partial`), await sha256(dev), 'resumed stream is complete')
    t.equal((await zfs.getDataset(`${pool}/images/partial`)).receiveResumeToken, undefined)

    const cut2 = zfs.send(`${vol}@s2`)
    await t.rejects(zfs.receive(`${pool}/images/aborted`, cutAfter(cut2, 2 * MiB), { resumable: true }), InvalidStreamError)
    await cut2.done.catch(() => {})
    t.ok((await zfs.getDataset(`${pool}/images/aborted`)).receiveResumeToken, 'partial state kept')
    sh('zfs', ['receive', '-A', `${pool}/images/aborted`])
    t.equal(await zfs.findDataset(`${pool}/images/aborted`), undefined, 'receive -A drops the partial state')
  })

  await t.test('garbage is not a stream', async (t) => {
    await t.rejects(zfs.receive(`${pool}/images/junk`, Readable.from([randomBytes(64 * 1024)])), InvalidStreamError)
    t.equal(await zfs.findDataset(`${pool}/images/junk`), undefined)
  })

  await t.test('rollback', async (t) => {
    await t.rejects(zfs.rollback(`${vol}@s1`), MoreRecentSnapshotsError)
    await zfs.destroy(`${pool}/images/copy`, { recursive: true })
    const before = await sha256(dev)
    writeRandom(dev, MiB)
    await zfs.rollback(`${vol}@s2`)
    settle()
    t.equal(await sha256(dev), before, 'rollback restores the bytes')
  })

  await t.test('holds', async (t) => {
    await zfs.hold('mistify-test', `${vol}@s2`)
    const h = await zfs.holds([`${vol}@s2`])
    t.same(h.map((x) => [x.snapshot, x.tag]), [[`${vol}@s2`, 'mistify-test']])
    await t.rejects(zfs.destroy(`${vol}@s2`), DatasetBusyError)
    await zfs.release('mistify-test', `${vol}@s2`)
    t.same(await zfs.holds([`${vol}@s2`]), [])
  })

  await t.test('rename and destroy', async (t) => {
    await zfs.rename(`${pool}/guests/g2copy`, `${pool}/guests/moved/g2`, { parents: true })
    t.ok(await zfs.findDataset(`${pool}/guests/moved/g2/sub`))
    await zfs.rename(`${vol}@s2`, `${vol}@s2b`)
    t.ok(await zfs.findDataset(`${vol}@s2b`))
    await zfs.destroy(`${pool}/guests/moved`, { recursive: true })
    t.equal(await zfs.findDataset(`${pool}/guests/moved`), undefined)
    await zfs.destroy(vol, { recursive: true, dependents: true })
    t.equal(await zfs.findDataset(`${pool}/guests/g1/disk-0`), undefined, '-R took the clone too')
  })
})
