import t from 'tap'
import { createFetchQueue } from '../../../src/agent/jobs/queue.js'
import { BusyError } from '../../../src/agent/errors.js'

function deferred<T = void>() {
  let resolve!: (v: T) => void
  const promise = new Promise<T>((r) => { resolve = r })
  return { promise, resolve }
}

t.test('concurrency bound and sharing one fetch per key', async (t) => {
  const q = createFetchQueue({ concurrency: 1, maxPending: 10 })
  const gate = deferred()
  let calls = 0
  const task = async () => { calls++; await gate.promise; return 'done' }
  const a = q.run('img1', task)
  const b = q.run('img1', task)
  const c = q.run('img2', async () => 'two')
  await new Promise((r) => setImmediate(r))
  t.same(q.size, { running: 1, waiting: 1 })
  gate.resolve()
  t.same(await Promise.all([a, b, c]), ['done', 'done', 'two'])
  t.equal(calls, 1, 'the shared key ran once')
  const again = await q.run('img1', async () => 'fresh')
  t.equal(again, 'fresh', 'after completion the key runs anew')
})

t.test('busy past maxPending, at once', async (t) => {
  const q = createFetchQueue({ concurrency: 1, maxPending: 1 })
  const gate = deferred()
  const running = q.run('a', () => gate.promise)
  const waiting = q.run('b', async () => 'b')
  await new Promise((r) => setImmediate(r))
  // Synchronously: an async RequestImage must know before it answers that it was not admitted (issue 12 item 11).
  t.throws(() => q.run('c', async () => 'c'), BusyError)
  t.throws(() => q.run('c', async () => 'c'), { message: /busy: 1 fetches running and 1 waiting, try again later/ })
  const joined = q.run('b', async () => 'other')
  gate.resolve()
  await running
  t.equal(await waiting, 'b')
  t.equal(await joined, 'b', 'joining a waiting key is not refused, and shares its result')
})

t.test('close answers waiting callers and aborts running ones', async (t) => {
  const q = createFetchQueue({ concurrency: 1, maxPending: 5 })
  const running = q.run('a', (signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))))
  const waiting = q.run('b', async () => 'never')
  await new Promise((r) => setImmediate(r))
  await q.close()
  await t.rejects(running, { message: 'fetcher quit' })
  await t.rejects(waiting, { message: 'fetcher quit' })
  t.throws(() => q.run('c', async () => 'c'), { message: 'fetcher quit' })
})

t.test('a failing task rejects every sharer and frees the key', async (t) => {
  const q = createFetchQueue({ concurrency: 2, maxPending: 5 })
  const boom = async () => { throw new Error('boom') }
  await Promise.all([t.rejects(q.run('x', boom), /boom/), t.rejects(q.run('x', boom), /boom/)])
  t.equal(await q.run('x', async () => 'ok'), 'ok')
})

t.test('maxPending 0: a free slot still takes a fetch; only waiting is refused', async (t) => {
  const q = createFetchQueue({ concurrency: 2, maxPending: 0 })
  const gate = deferred()
  const a = q.run('a', async () => { await gate.promise; return 'a' })
  const b = q.run('b', async () => { await gate.promise; return 'b' })
  await new Promise((r) => setImmediate(r))
  t.throws(() => q.run('c', async () => 'c'), BusyError, 'both slots busy and no waiting allowed')
  gate.resolve()
  t.same(await Promise.all([a, b]), ['a', 'b'])
  t.equal(await q.run('d', async () => 'd'), 'd', 'free again')
})

t.test('a held place counts as waiting until a run uses it or it is given back', async (t) => {
  const q = createFetchQueue({ concurrency: 1, maxPending: 0 })
  const place = q.hold()
  t.same(q.size, { running: 0, waiting: 1 })
  // The place is the only room there is: another caller is refused at once, as a run would be.
  t.throws(() => q.hold(), { message: /busy: 0 fetches running and 1 waiting/ })
  t.throws(() => q.run('other', async () => 'x'), BusyError)
  const gate = deferred()
  const used = q.run('origin', () => gate.promise.then(() => 'v1'), undefined, place)
  await new Promise((r) => setImmediate(r))
  t.same(q.size, { running: 1, waiting: 0 }, 'used: now a running fetch, not a place')
  gate.resolve()
  t.equal(await used, 'v1')
  // A used place admits nothing more: the next step of its chain is checked as any run.
  const gate2 = deferred()
  const next = q.run('target', () => gate2.promise.then(() => 'v2'), undefined, place)
  await new Promise((r) => setImmediate(r))
  t.throws(() => q.run('third', async () => 'x', undefined, place), BusyError)
  gate2.resolve()
  t.equal(await next, 'v2')
  place.give()
  const given = q.hold()
  given.give()
  given.give()
  t.same(q.size, { running: 0, waiting: 0 }, 'given back (twice is harmless)')
  await q.close()
  t.throws(() => q.hold(), { message: 'fetcher quit' })
})
