/** RequestImage's async mode, the statuses it leaves in the records, and other sources. */
import t from 'tap'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { gzipSync } from 'node:zlib'
import { haveZfs, sh } from '../helpers/zpool.js'
import { startAgent, makeZvolStream, dribble, restartAgent, sha256hex } from '../helpers/agent.js'

if (!haveZfs) { t.comment('real ZFS only: run inside the VM (npm test does)'); process.exit(0) }

t.test('async RequestImage, statuses, sources', async (t) => {
  // Not t.testdir(): startAgent's own call would wipe it.
  const sources = mkdtempSync(join(tmpdir(), 'sources-'))
  t.teardown(() => rmSync(sources, { recursive: true, force: true }))
  const a = await startAgent(t, { config: { fileSources: sources } })
  const call = (m: string, p: unknown) => a.call('v2', m, p)
  const stream = makeZvolStream(a.pool, { sizeMiB: 8 })
  // About 3 s to send, so the statuses can be watched.
  a.images.routes.set('/images/slow/download', dribble(stream))

  await t.test('async: pending at once, then downloading with progress, then complete', async (t) => {
    const r = await call('RequestImage', { id: 'slow', async: true })
    t.match(r.result.images[0], { id: 'slow', status: 'pending' })
    const seen = new Set<string>()
    let progressed = false
    let img: { status: string; progress?: { bytes: number; total: number } } | undefined
    for (let i = 0; i < 300; i++) {
      img = (await call('GetImage', { id: 'slow' })).result.images[0]
      seen.add(img!.status)
      if (img!.status === 'downloading' && img!.progress!.bytes > 0) {
        progressed = true
        t.equal(img!.progress!.total, stream.length, 'total from Content-Length')
      }
      if (img!.status === 'complete' || img!.status === 'error') break
      await new Promise((r) => setTimeout(r, 100))
    }
    t.equal(img?.status, 'complete')
    t.ok(seen.has('downloading') && progressed, `downloading with bytes seen (${[...seen].join(', ')})`)
    t.notOk('progress' in img!, 'no progress once complete')
  })

  await t.test('while it downloads: clone says not ready, delete is refused, a second request joins', async (t) => {
    await call('DeleteImage', { id: 'slow' })
    const first = call('RequestImage', { id: 'slow' })
    await new Promise((r) => setTimeout(r, 600))
    t.match((await call('CloneImage', { id: 'slow', dest: 'guests/x/disk-0' })).error, /image slow is not ready \((pending|downloading)\)/)
    t.match((await call('DeleteImage', { id: 'slow' })).error, /is being fetched/)
    const joined = await call('RequestImage', { id: 'slow', async: true })
    t.equal(joined.result.images[0].status, 'downloading', 'async join shows the running fetch')
    t.equal((await first).result.images[0].status, 'complete')
    t.equal(a.images.hits.get('/images/slow/download'), 2, 'the joined request made no second download (two in all, with the first test)')
  })

  await t.test('a failed async fetch leaves status error with its reason; a retry works', async (t) => {
    t.equal((await call('RequestImage', { id: 'later', async: true })).result.images[0].status, 'pending')
    let img: { status: string; error?: string } | undefined
    for (let i = 0; i < 100; i++) {
      img = (await call('GetImage', { id: 'later' })).result.images[0]
      if (img!.status === 'error') break
      await new Promise((r) => setTimeout(r, 100))
    }
    t.match(img, { status: 'error', error: /received 404/ })
    t.match((await call('ListImages', {})).result.images.find((i: { id: string }) => i.id === 'later'), { status: 'error' })
    a.images.routes.set('/images/later/download', stream)
    t.equal((await call('RequestImage', { id: 'later' })).result.images[0].status, 'complete', 'retried once the fault is gone')
  })

  await t.test('sources: an http URL and a file:// path; others refused', async (t) => {
    a.images.routes.set('/elsewhere/img.zfs.gz', gzipSync(stream))
    const gz = gzipSync(stream)
    a.images.routes.set('/elsewhere/img.zfs.gz', gz)
    // A source the caller names comes with the caller's sha256 of the bytes as served.
    t.match((await call('RequestImage', { id: 'from-url', source: `${a.images.url}/elsewhere/img.zfs.gz` })).error, /^sha256: required with source/)
    const viaUrl = await call('RequestImage', { id: 'from-url', source: `${a.images.url}/elsewhere/img.zfs.gz`, sha256: sha256hex(gz) })
    t.match(viaUrl.result?.images?.[0], { id: 'from-url', status: 'complete' }, viaUrl.error ?? '')
    const file = join(sources, 'image.zfs')
    writeFileSync(file, stream)
    const viaFile = await call('RequestImage', { id: 'from-file', source: `file://${file}`, sha256: sha256hex(stream) })
    t.match(viaFile.result?.images?.[0], { id: 'from-file', status: 'complete' }, viaFile.error ?? '')
    t.match((await call('RequestImage', { id: 'x1', source: 'ftp://h/x' })).error, /only http\(s\):\/\/ and file:\/\//)
    t.match((await call('RequestImage', { id: 'x2', source: `file://${sources}/nonexistent`, sha256: sha256hex(stream) })).error, /ENOENT/)
    mkdirSync(join(sources, 'sub'))
    t.match((await call('RequestImage', { id: 'x3', source: `file://${sources}/sub`, sha256: sha256hex(stream) })).error, /not a regular file/)
    // The agent runs as root: a file it imports becomes a disk a guest can read. Only the directory it was given.
    writeFileSync(join(tmpdir(), 'outside.zfs'), stream)
    t.match((await call('RequestImage', { id: 'x5', source: `file://${tmpdir()}/outside.zfs` })).error, /is outside .*the file-sources directory/)
    t.match((await call('RequestImage', { id: 'x6', source: `file://${sources}/../outside.zfs` })).error, /is outside/, 'no way out with ..')
    symlinkSync(join(tmpdir(), 'outside.zfs'), join(sources, 'link.zfs'))
    t.match((await call('RequestImage', { id: 'x7', source: `file://${sources}/link.zfs`, sha256: sha256hex(stream) })).error, /leads outside the file-sources directory/, 'nor through a symlink')
    t.same(sh('zfs', ['list', '-H', '-o', 'name', '-r', `${a.pool}/images`]).split('\n').filter((n) => /x[5-7]/.test(n)), [], 'nothing imported')
    t.match((await call('RequestImage', { id: 'x4', source: 'not a url' })).error, /not a URL/)
  })

  await t.test('a shutdown mid-fetch leaves status error (fetcher quit); a record left pending is marked at start-up', async (t) => {
    await call('RequestImage', { id: 'slow2', async: true, source: `${a.images.url}/images/slow/download`, sha256: sha256hex(stream) })
    await new Promise((r) => setTimeout(r, 800))
    await a.agent.close()
    const again = await restartAgent(t, a)
    const img = (await again.services.images.getImage({ id: 'slow2', type: '', dest: '', source: '' })).images[0]
    t.match(img, { status: 'error', error: 'fetcher quit' }, 'graceful stop: the reason is the shutdown')
    t.same(sh('zfs', ['list', '-H', '-o', 'name', '-r', `${a.pool}/images`]).split('\n').filter((n) => n.includes('_incoming')), [], 'its temporary is gone')
  })
})

t.test('a record a crash left pending is marked interrupted at start-up', async (t) => {
  const a = await startAgent(t)
  await a.agent.close()
  const { openDb } = await import('../../src/common/db.js')
  const db = await openDb(a.metadataDir)
  await db.table('images').put('ghost', { id: 'ghost', type: '', volume: '', snapshot: '', size: 0, status: 'downloading', progress: { bytes: 5, total: 10 } })
  await db.close()
  const again = await restartAgent(t, a)
  t.match((await again.services.images.getImage({ id: 'ghost', type: '', dest: '', source: '' })).images[0], { status: 'error', error: /interrupted/ })
})
