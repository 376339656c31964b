// The building blocks on their own: files (the original's FS-store tests),
// the metadata store (its KVite tests), and the HTTP helpers.
import t from 'tap'
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { openDb } from '../../../src/common/db.js'
import { ImageFiles } from '../../../src/image-service/store/files.js'
import { etagMatches, parseRange } from '../../../src/image-service/http/conditional.js'
import { ImageStore, ZERO_TIME, isImageId } from '../../../src/image-service/store/store.js'
import { tempDir } from '../../helpers/image-service.js'

const ID = '3f2c1d7e-8a9b-4c0d-9e1f-2a3b4c5d6e7f'

t.test('files: ids, atomic writes, digests, limits, delete', async (t) => {
  const dir = tempDir(t)
  const files = new ImageFiles(dir)
  await files.init()
  for (const bad of ['', '..', '../x', 'a/b', 'asdf', `${ID}/..`, `../${ID}`]) {
    t.throws(() => files.pathOf(bad), { name: 'InvalidIdError' }, `id ${JSON.stringify(bad)} rejected`)
  }
  t.equal(files.pathOf(ID.toUpperCase()), join(dir, 'images', ID), 'ids are canonicalised')

  const data = Buffer.from('hello world')
  const stored = await files.write(ID, Readable.from([data.subarray(0, 5), data.subarray(5)]), { expectedSize: data.length })
  t.same(stored, {
    size: 11,
    sha256: createHash('sha256').update(data).digest('hex'),
    md5: createHash('md5').update(data).digest('hex'),
    sha512: createHash('sha512').update(data).digest('hex'),
    blake2b512: createHash('blake2b512').update(data).digest('hex'),
  })
  t.equal(readFileSync(join(dir, 'images', ID), 'utf8'), 'hello world')
  t.same(readdirSync(join(dir, 'tmp')), [], 'temp file renamed away')

  const other = '11111111-2222-4333-8444-555555555555'
  await t.rejects(files.write(other, Readable.from([Buffer.alloc(10)]), { maxSize: 5 }), { name: 'TooLargeError' })
  await t.rejects(files.write(other, Readable.from([Buffer.alloc(10)]), { expectedSize: 11 }), { name: 'IncompleteError' })
  await t.rejects(files.write(other, Readable.from([Buffer.alloc(10)]), { isComplete: () => false }), { name: 'IncompleteError' })
  const failing = new Readable({ read() { this.destroy(new Error('boom')) } })
  await t.rejects(files.write(other, failing), /boom/)
  t.notOk(existsSync(join(dir, 'images', other)), 'failed writes leave no image file')
  t.same(readdirSync(join(dir, 'tmp')), [], 'and no temp file')

  const opened = await files.open(ID)
  t.equal(opened?.size, 11)
  await opened?.close()
  t.equal(await files.open(other), undefined, 'missing → undefined')

  await files.remove(ID)
  await files.remove(ID)
  t.notOk(existsSync(join(dir, 'images', ID)), 'removed; removing twice is fine')
  t.ok(existsSync(join(dir, 'images')), 'base dir survives')
  await t.rejects(files.remove(''), { name: 'InvalidIdError' }, 'the empty id can never reach the base dir')

  writeFileSync(join(dir, 'tmp', 'x.part'), 'junk')
  await files.init()
  t.same(readdirSync(join(dir, 'tmp')), [], 'init clears leftovers')
})

t.test('store: records, lookups, versions, serialised updates', async (t) => {
  const db = await openDb(join(tempDir(t), 'db'))
  t.teardown(() => db.close())
  const store = ImageStore.fromDb(db)
  t.equal(await store.get(ID), undefined, 'missing → undefined')
  t.equal(await store.get('asdf'), undefined, 'invalid id → undefined')
  t.equal(await store.remove(ID), undefined, 'deleting a missing record is fine')

  const a = await store.create({ type: 'kvm', source: 'http://x/a', comment: 'c' })
  t.ok(isImageId(a.id))
  t.match(a, { status: 'pending', size: 0, expected_size: -1, download_start: ZERO_TIME, download_end: ZERO_TIME, name: '', version: 0 })
  t.match(a.glance, { disk_format: 'raw', container_format: 'bare', visibility: 'shared' })
  t.equal((await store.create({ type: 'container' })).glance.container_format, 'docker')
  t.equal((await store.findBySource('http://x/a'))?.id, a.id)
  t.equal(await store.findBySource(''), undefined, 'empty source never matches')
  await t.rejects(store.create({ id: a.id, type: 'kvm' }), { name: 'ImageExistsError' })

  // Concurrent read-modify-writes on one record lose nothing.
  await Promise.all(Array.from({ length: 20 }, () => store.update(a.id, (r) => ({ ...r, size: r.size + 1 }))))
  t.equal((await store.get(a.id))?.size, 20)

  const named = await Promise.all(Array.from({ length: 5 }, () => store.create({ type: 'kvm', name: 'n' })))
  t.same(named.map((r) => r.version).sort(), [1, 2, 3, 4, 5], 'concurrent creates get distinct versions')
  const renamed = await store.update(a.id, (r) => ({ ...r, name: 'n' }))
  t.equal(renamed?.version, 6, 'renaming into a name takes its next version')
  t.equal(await store.latest('n'), undefined, 'no complete version yet')
  await store.update(named[0]?.id ?? '', (r) => ({ ...r, status: 'complete' }))
  t.equal((await store.latest('n'))?.id, named[0]?.id)

  t.equal((await store.remove(a.id))?.id, a.id)
  t.equal(await store.remove(a.id), undefined, 'deleting twice is fine')
  t.equal(await store.update(a.id, (r) => r), undefined, 'updating a deleted record → undefined')
})

t.test('http: single ranges and ETag matching', async (t) => {
  const cases: Array<[string | undefined, number, ReturnType<typeof parseRange>]> = [
    [undefined, 10, { kind: 'full' }],
    ['bytes=0-4', 10, { kind: 'partial', start: 0, end: 4 }],
    ['bytes=5-', 10, { kind: 'partial', start: 5, end: 9 }],
    ['bytes=-3', 10, { kind: 'partial', start: 7, end: 9 }],
    ['bytes=-30', 10, { kind: 'partial', start: 0, end: 9 }],
    ['bytes=8-100', 10, { kind: 'partial', start: 8, end: 9 }],
    ['bytes=10-', 10, { kind: 'unsatisfiable' }],
    ['bytes=-0', 10, { kind: 'unsatisfiable' }],
    ['bytes=0-', 0, { kind: 'unsatisfiable' }],
    ['bytes=5-1', 10, { kind: 'full' }],
    ['bytes=0-1,3-4', 10, { kind: 'full' }],
    ['lines=0-1', 10, { kind: 'full' }],
    ['bytes=-', 10, { kind: 'full' }],
  ]
  for (const [h, size, want] of cases) t.same(parseRange(h, size), want, `${String(h)} of ${size}`)
  t.ok(etagMatches('"a"', '"a"'))
  t.ok(etagMatches('W/"a"', '"a"'))
  t.ok(etagMatches('"b", "a"', '"a"'))
  t.ok(etagMatches('*', '"a"'))
  t.notOk(etagMatches('"b"', '"a"'))
  t.notOk(etagMatches(undefined, '"a"'))
})
