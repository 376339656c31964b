import t from 'tap'
import { join } from 'node:path'
import { openDb } from '../../src/common/db.js'

t.test('tables are separate, records survive reopening', async (t) => {
  const dir = join(t.testdir(), 'db')
  const db = await openDb(dir)
  const a = db.table<{ n: number }>('a')
  const b = db.table<{ n: number }>('b')
  await a.put('x', { n: 1 })
  await a.put('y', { n: 2 })
  await b.put('x', { n: 3 })
  t.same(await a.get('x'), { n: 1 })
  t.equal(await a.get('missing'), undefined)
  t.same(await a.values(), [{ n: 1 }, { n: 2 }])
  t.same(await b.entries(), [['x', { n: 3 }]])
  await a.batch([{ type: 'del', key: 'x' }, { type: 'put', key: 'z', value: { n: 4 } }])
  await db.close()
  const db2 = await openDb(dir)
  t.same(await db2.table('a').entries(), [['y', { n: 2 }], ['z', { n: 4 }]])
  await db2.table('a').del('y')
  t.same(await db2.table('a').values(), [{ n: 4 }])
  await db2.close()
})

t.test('image records: kept in memory, written through, same answers as the store', async (t) => {
  const { imageRecords, cachedTable } = await import('../../src/agent/catalog.js')
  const dir = join(t.testdir(), 'db')
  const db = await openDb(dir)
  const raw = db.table<any>('images')
  await raw.put('b', { id: 'b' }) // written before the cache exists: loaded on first use
  const recs = imageRecords(db)
  await recs.put('c', { id: 'c' } as any)
  await recs.put('a', { id: 'a' } as any)
  t.same((await recs.values()).map((r) => r.id), ['a', 'b', 'c'], 'key order, like the store')
  t.same(await raw.values(), await recs.values(), 'the store has what memory has')
  await recs.del('b')
  await recs.batch([{ type: 'put', key: 'd', value: { id: 'd' } as any }, { type: 'del', key: 'a' }])
  t.same((await recs.entries()).map(([k]) => k), ['c', 'd'])
  t.same(await raw.entries(), await recs.entries())
  t.equal(await recs.get('a'), undefined)
  await db.close()

  // A failed write leaves memory to be read again from the store, not ahead of it.
  let fail = false
  const store = {
    data: new Map<string, number>([['k', 1]]),
    get: async (k: string) => store.data.get(k),
    put: async (k: string, v: number) => { if (fail) throw new Error('disk full'); store.data.set(k, v) },
    del: async (k: string) => { store.data.delete(k) },
    values: async () => [...store.data.values()],
    entries: async () => [...store.data.entries()],
    batch: async () => {},
  }
  const c = cachedTable<number>(store)
  t.equal(await c.get('k'), 1)
  fail = true
  await t.rejects(c.put('k', 2), { message: 'disk full' })
  t.equal(await c.get('k'), 1, 'the failed value is not served')
})

t.test('memo: derived once per table state, again after any write or a failed write; a failed read is read again', async (t) => {
  const { cachedTable } = await import('../../src/agent/catalog.js')
  let failPut = false
  let failRead = false
  const data = new Map<string, number>([['b', 2], ['a', 1]])
  const c = cachedTable<number>({
    get: async (k) => data.get(k),
    put: async (k, v) => { if (failPut) throw new Error('disk full'); data.set(k, v) },
    del: async (k) => { data.delete(k) },
    values: async () => [...data.values()],
    entries: async () => { if (failRead) throw new Error('read failed'); return [...data.entries()] },
    batch: async () => {},
  })
  let runs = 0
  const sum = c.memo((vs) => { runs++; return { order: [...vs] } })
  failRead = true
  await t.rejects(sum(), { message: 'read failed' })
  failRead = false
  await c.put('z', 0)
  const first = await sum()
  t.same(first.order, [1, 2, 0], 'values in key order')
  t.equal(await sum(), first, 'the same object while nothing changed')
  t.equal(runs, 1)
  await c.put('c', 3)
  const second = await sum()
  t.not(second, first)
  t.same(second.order, [1, 2, 3, 0])
  failPut = true
  await t.rejects(c.put('d', 4))
  t.same((await sum()).order, [1, 2, 3, 0], 'a failed write is not in the derived value')
  t.equal(runs, 3)
})

t.test('reconcile: adopts only volumes the scan shows marked as that image, with no zfs command per other volume', async (t) => {
  const { imageRecords, reconcile, SCAN_PROPS } = await import('../../src/agent/catalog.js')
  const { createScope } = await import('../../src/agent/services/scope.js')
  const { parseScan } = await import('../../src/zfs/parse.js')
  const { scan } = await import('../../src/zfs/commands.js')
  t.same(scan(['tank/images'], SCAN_PROPS).at(-2), 'type,userrefs,mistify:image,mistify:sha256,mistify:format', 'the scan reads the marks')
  const db = await openDb(join(t.testdir(), 'db'))
  t.teardown(() => db.close())
  const records = imageRecords(db)
  // zfs get output as the scan prints it: 200 volumes not ours, one marked import, one marked with another id.
  const row = (name: string, prop: string, value: string, source = '-') => `${name}\t${prop}\t${value}\t${source}\n`
  let out = row('tank/images', 'type', 'filesystem') + row('tank/images', 'userrefs', '-') + row('tank/images', 'mistify:image', '-')
  const vol = (name: string, mark?: string) => {
    out += row(name, 'type', 'volume') + row(name, 'userrefs', '-') + row(name, 'mistify:image', mark ?? '-', mark ? 'local' : '-')
    out += row(name, 'mistify:sha256', mark ? 'ab'.repeat(32) : '-', mark ? 'local' : '-') + row(name, 'mistify:format', mark ? 'zfs' : '-', mark ? 'local' : '-')
    out += row(`${name}@base`, 'type', 'snapshot') + row(`${name}@base`, 'userrefs', '0')
  }
  for (let i = 0; i < 200; i++) vol(`tank/images/other-${i}`)
  vol('tank/images/mine', 'mine')
  vol('tank/images/elsewhere', 'not-this-name')
  const calls: string[] = []
  const zfs = {
    async getDataset(name: string) { calls.push(`get ${name}`); return { name, volsize: 4 * 1024 * 1024 } },
    async destroy(name: string) { calls.push(`destroy ${name}`) },
  }
  const log = { info() {}, warn() {}, error() {} }
  await reconcile(zfs as any, createScope('tank'), records, log, parseScan(out))
  t.same(calls, ['get tank/images/mine'], 'one zfs command, for the one adoption')
  t.match(await records.get('mine'), { volume: 'tank/images/mine', snapshot: 'tank/images/mine@base', status: 'complete', size: 4, sha256: 'ab'.repeat(32), format: 'zfs' })
  t.equal(await records.get('not-this-name'), undefined)
  t.equal(await records.get('elsewhere'), undefined, 'a mark naming another image is not adopted')
  t.equal((await records.values()).length, 1)
})
