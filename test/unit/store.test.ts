import t from 'tap'
import { join } from 'node:path'
import { openDb } from '../../src/store/db.js'

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
