// ImageStore's compare-and-swap logic over the level backend: two ImageStore
// instances over one backend stand in for two replicas (each has its own
// in-process lock, so only the backend's CAS keeps their writes apart).
import t from 'tap'
import { join } from 'node:path'
import { openDb } from '../../../src/common/db.js'
import { ImageStore, ZERO_TIME, type ImageRecord } from '../../../src/image-service/store/store.js'
import { LevelRecords, MetadataUnavailableError, normalizeRecord, type RecordBackend, type Rev } from '../../../src/image-service/store/records.js'
import { parseMetadataUrl } from '../../../src/image-service/store/open-records.js'
import { parseConfig } from '../../../src/image-service/config.js'
import { tempDir, type TestContext } from '../../helpers/image-service.js'

async function level(t: TestContext): Promise<LevelRecords> {
  const b = new LevelRecords(await openDb(join(tempDir(t), 'db')))
  t.teardown(() => b.close())
  return b
}

/** A backend whose calls can be made to fail, before or after they take effect. */
class Flaky implements RecordBackend {
  readonly kind = 'flaky'
  readonly shared = false
  /** Fail this many puts before writing. */
  failBefore = 0
  /** Write, then fail this many puts (a commit that timed out after it happened). */
  failAfter = 0
  puts = 0
  constructor(private readonly inner: RecordBackend) {}
  get(id: string) { return this.inner.get(id) }
  list() { return this.inner.list() }
  async put(id: string, rec: ImageRecord, rev: Rev | undefined): Promise<boolean> {
    this.puts++
    if (this.failBefore > 0) { this.failBefore--; throw new MetadataUnavailableError('injected: before') }
    const ok = await this.inner.put(id, rec, rev)
    if (this.failAfter > 0) { this.failAfter--; throw new MetadataUnavailableError('injected: after') }
    return ok
  }
  del(id: string, rev: Rev) { return this.inner.del(id, rev) }
  nextVersion(name: string) { return this.inner.nextVersion(name) }
  claimVersion(name: string, n: number, claim: string) { return this.inner.claimVersion(name, n, claim) }
  claimTransfer(id: string) { return this.inner.claimTransfer(id) }
  putIfUnowned(id: string, rec: ImageRecord, rev: Rev) { return this.inner.putIfUnowned(id, rec, rev) }
  health() { return this.inner.health() }
  close() { return this.inner.close() }
}

t.test('level backend: compare-and-swap by revision', async (t) => {
  const b = await level(t)
  const id = '11111111-2222-4333-8444-555555555555'
  const rec = normalizeRecord({ id, type: 'kvm', status: 'pending' }, id)
  t.equal(await b.put(id, rec, undefined), true, 'create')
  t.equal(await b.put(id, rec, undefined), false, 'a second create conflicts')
  const v1 = await b.get(id)
  t.ok(v1)
  t.equal(await b.put(id, { ...rec, size: 1 }, v1!.rev), true, 'write at the current revision')
  t.equal(await b.put(id, { ...rec, size: 2 }, v1!.rev), false, 'a stale revision conflicts')
  t.equal((await b.get(id))?.value.size, 1)
  t.equal(await b.del(id, v1!.rev), false, 'a stale delete conflicts')
  t.equal(await b.del(id, (await b.get(id))!.rev), true)
  t.equal(await b.get(id), undefined)
  t.same([await b.nextVersion('n'), await b.nextVersion('n'), await b.nextVersion('m')], [1, 2, 1], 'per-name counters')
  t.equal(await b.claimVersion('n', 2, 'c1'), false, 'a version handed out cannot be claimed')
  t.equal(await b.claimVersion('n', 5, 'c2'), true, 'one above the counter can')
  t.equal(await b.claimVersion('n', 5, 'c2'), true, 'the same claim again (a retried call whose first attempt landed)')
  t.equal(await b.claimVersion('n', 5, 'c3'), false, 'another claim of it cannot')
  t.equal(await b.nextVersion('n'), 6, 'the counter moved past the claimed version')
  const claim = await b.claimTransfer(id)
  t.equal(claim.signal.aborted, false)
  await claim.release()
  t.equal(await b.putIfUnowned(id, rec, 'x'), false, 'level: every transfer is this live process\'s own')
})

t.test('records missing newer fields (original Go service, older versions) load with defaults', async (t) => {
  const id = '0b5a8e63-6bb8-4c51-9b3c-9d5e0b3d1f11'
  const go = { id, source: 'http://example.com/a.img', type: 'container', comment: 'old', status: 'complete', size: 24, expected_size: 24,
    download_start: '2015-10-01T12:00:00.123456789Z', download_end: '2015-10-01T12:00:01.5Z' }
  const r = normalizeRecord(go, id)
  t.match(r, { ...go, sha256: '', md5: '', sha512: '', name: '', version: 0, created_at: go.download_start, updated_at: go.download_start })
  t.equal(r.generation, undefined, 'no generation invented')
  t.same([r.snapshot_guid, r.origin, r.increment], ['', '', null], 'no lineage')
  t.same(r.glance, { visibility: 'shared', protected: false, disk_format: 'raw', container_format: 'docker', min_disk: 0, min_ram: 0, tags: [], owner: null, os_hidden: false, properties: {} })
  t.same(Object.keys(r).slice(0, 9), Object.keys(go), 'present keys keep their order')
  t.equal(normalizeRecord({ id, type: 'kvm', download_start: ZERO_TIME }, id).created_at, ZERO_TIME)
})

t.test('two stores over one backend: no lost update, one create wins, unique versions', async (t) => {
  const b = await level(t)
  const r1 = new ImageStore(b)
  const r2 = new ImageStore(b)
  const a = await r1.create({ type: 'kvm' })
  let calls = 0
  await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? r1 : r2).update(a.id, async (r) => {
    calls++
    await new Promise((res) => setImmediate(res)) // let the other replica interleave
    return { ...r, size: r.size + 1, glance: { ...r.glance, tags: [...r.glance.tags, `t${i}`] } }
  })))
  const after = await r2.get(a.id)
  t.equal(after?.size, 30, 'every increment landed')
  t.equal(after?.glance.tags.length, 30)
  t.ok(calls > 30, `conflicts made fn run again (${calls} runs for 30 updates)`)

  const id = '22222222-3333-4444-8555-666666666666'
  const res = await Promise.allSettled([r1.create({ id, type: 'kvm', comment: 'one' }), r2.create({ id, type: 'kvm', comment: 'two' })])
  t.equal(res.filter((x) => x.status === 'fulfilled').length, 1, 'exactly one create wins')
  t.match(res.find((x) => x.status === 'rejected'), { reason: { name: 'ImageExistsError' } })

  const made = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? r1 : r2).create({ type: 'kvm', name: 'os' })))
  t.same(made.map((r) => r.version).sort((x, y) => x - y), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'versions unique')
  // Renames under conflict: each rename gets one new number.
  const renamed = await Promise.all(made.slice(0, 4).map((r, i) => (i % 2 ? r1 : r2).update(r.id, (x) => ({ ...x, name: 'other' }))))
  t.same(renamed.map((r) => r?.version).sort(), [1, 2, 3, 4])

  // Delete racing an update: the update sees the record gone, or the delete removes the updated one.
  const d = await r1.create({ type: 'kvm' })
  const [gone] = await Promise.all([r2.remove(d.id), r1.update(d.id, (x) => ({ ...x, comment: 'late' }))])
  t.ok(gone)
  t.equal(await r1.get(d.id), undefined, 'deleted stays deleted')
  t.same(await r1.sweepOrphans((x) => x), [], 'no sweep with an unshared backend')
})

t.test('unavailable backend: retried within the budget, then a retryable error; a timed-out write that landed counts once', async (t) => {
  const flaky = new Flaky(await level(t))
  const store = new ImageStore(flaky, { retryBudgetMs: 300 })
  const a = await store.create({ type: 'kvm' })

  flaky.failBefore = 2
  t.equal((await store.update(a.id, (r) => ({ ...r, size: r.size + 1 })))?.size, 1, 'transient failures are retried')

  // The write happened but its answer was lost: recognised as ours, fn not applied twice.
  flaky.failAfter = 1
  let runs = 0
  const u = await store.update(a.id, (r) => { runs++; return { ...r, size: r.size + 1 } })
  t.equal(u?.size, 2)
  t.equal((await store.get(a.id))?.size, 2, 'one increment, not two')
  t.equal(runs, 1)

  flaky.failAfter = 1
  const c = await store.create({ id: '33333333-4444-4555-8666-777777777777', type: 'kvm' })
  t.equal((await store.get(c.id))?.generation, c.generation, 'a create whose answer was lost is not "already exists"')

  flaky.failBefore = 1_000
  const started = Date.now()
  await t.rejects(store.update(a.id, (r) => ({ ...r, size: 99 })), { name: 'MetadataUnavailableError' })
  t.ok(Date.now() - started < 2_000, 'gives up after the budget')
  flaky.failBefore = 0
  t.equal((await store.get(a.id))?.size, 2, 'nothing half-written')
})

t.test('--metadata values', async (t) => {
  t.same(parseMetadataUrl('level'), { kind: 'level' })
  t.same(parseMetadataUrl('etcd://127.0.0.1:2379'), { kind: 'etcd', endpoints: ['127.0.0.1:2379'] })
  t.same(parseMetadataUrl('etcd://a:1,b:2/x/y/'), { kind: 'etcd', endpoints: ['a:1', 'b:2'], prefix: '/x/y' })
  for (const bad of ['', 'etcd://', 'etcd://host', 'http://a:1', 'etcd://a:1,,b', 'leveldb']) t.equal(parseMetadataUrl(bad), undefined, bad)
  t.match(parseConfig([], {}), { metadata: 'level', metadataLeaseTtlS: 5 }, 'level by default')
  t.match(parseConfig(['--metadata', 'etcd://127.0.0.1:23790/x', '--metadata-lease-ttl', '3'], {}), { metadata: 'etcd://127.0.0.1:23790/x', metadataLeaseTtlS: 3 })
  t.match(parseConfig([], { MISTIFY_IMAGE_SERVICE_METADATA: 'etcd://h:1', MISTIFY_IMAGE_SERVICE_METADATA_LEASE_TTL: '7' }), { metadata: 'etcd://h:1', metadataLeaseTtlS: 7 })
  t.throws(() => parseConfig(['--metadata', 'etcd:/h:1'], {}), { name: 'UsageError', message: /--metadata/ })
  t.throws(() => parseConfig(['--metadata-lease-ttl', '0'], {}), { name: 'UsageError' })
})
