import t from 'tap'
import { createKeyedLock } from '../../../src/common/keyed-lock.js'

const tick = (ms = 1) => new Promise((r) => setTimeout(r, ms))

t.test('one key: one at a time, in arrival order; failures do not block the next', async (t) => {
  const lock = createKeyedLock()
  const log: string[] = []
  let running = 0
  let most = 0
  const job = (name: string, fail = false) => lock.run('g', async () => {
    running++
    most = Math.max(most, running)
    log.push(`start ${name}`)
    await tick(5)
    log.push(`end ${name}`)
    running--
    if (fail) throw new Error(`${name} failed`)
    return name
  })
  const results = await Promise.allSettled([job('a'), job('b', true), job('c')])
  t.equal(most, 1, 'never two at once')
  t.same(log, ['start a', 'end a', 'start b', 'end b', 'start c', 'end c'])
  t.same(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled'])
  t.equal(lock.size, 0, 'the entry is removed when idle')
})

t.test('different keys run in parallel', async (t) => {
  const lock = createKeyedLock()
  let running = 0
  let most = 0
  const job = (key: string) => lock.run(key, async () => { running++; most = Math.max(most, running); await tick(5); running-- })
  await Promise.all([job('x'), job('y'), job('z')])
  t.equal(most, 3)
  t.equal(lock.size, 0)
})

t.test('a synchronous throw releases the key too', async (t) => {
  const lock = createKeyedLock()
  await t.rejects(lock.run('k', () => { throw new Error('sync') }), { message: 'sync' })
  t.equal(await lock.run('k', async () => 'next'), 'next')
  t.equal(lock.size, 0)
})

t.test('a waiter added while the holder runs keeps the entry until it is done', async (t) => {
  const lock = createKeyedLock()
  let release!: () => void
  const first = lock.run('k', () => new Promise<void>((r) => { release = r }))
  await tick()
  const second = lock.run('k', async () => 'second')
  t.equal(lock.size, 1)
  release()
  await first
  t.equal(lock.size, 1, 'still held by the waiter')
  t.equal(await second, 'second')
  t.equal(lock.size, 0)
})
