// POST /images fetches from a loopback source server: errors are recorded,
// a failed source can be retried, bytes are stored exactly as served.
// Also the original FetcherTestSuite's fetch cases, against the Fetcher itself.
import t from 'tap'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { TESTDATA, delay, getJson, startSourceServer, startTestService, waitForNative } from '../../helpers/image-service.js'

async function post(native: string, body: unknown): Promise<{ status: number; body: any }> {
  const r = await getJson(`${native}/images`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: r.status, body: r.body }
}

t.test('fetch completes with size, digests and times', async (t) => {
  const { native, dataDir } = await startTestService(t)
  const src = await startSourceServer(t)
  const r = await post(native, { source: `${src.url}/data`, type: 'kvm' })
  const done = await waitForNative(native, r.body.id, ['complete', 'error'])
  t.equal(done.status, 'complete')
  t.equal(done.size, 24)
  t.equal(done.expected_size, 24)
  t.equal(done.sha256, createHash('sha256').update(TESTDATA).digest('hex'))
  t.ok(Date.parse(done.download_end) >= Date.parse(done.download_start), 'times set in order')
  t.equal(readFileSync(join(dataDir, 'images', done.id), 'utf8'), TESTDATA)
  t.notOk('error' in done, 'no error key when fine')

  const again = await post(native, { source: `${src.url}/data`, type: 'kvm' })
  t.equal(again.status, 202)
  t.equal(again.body.id, done.id, 'same source → the existing record')
  t.equal(again.body.status, 'complete', 'already complete')
  await delay(50)
  t.equal(src.hits.get('/data'), 1, 'no second fetch')
})

t.test('404 source → error with reason; POST again retries and succeeds', async (t) => {
  const { native } = await startTestService(t)
  const src = await startSourceServer(t)
  src.failing.add('/flaky')
  const r = await post(native, { source: `${src.url}/flaky`, type: 'container' })
  const failed = await waitForNative(native, r.body.id, ['complete', 'error'])
  t.equal(failed.status, 'error')
  t.equal(failed.error, 'source answered HTTP 404')

  const plain404 = await post(native, { source: `${src.url}/404`, type: 'kvm' })
  t.equal((await waitForNative(native, plain404.body.id, ['error'])).error, 'source answered HTTP 404')

  src.failing.delete('/flaky')
  const retry = await post(native, { source: `${src.url}/flaky`, type: 'container' })
  t.equal(retry.status, 202)
  t.equal(retry.body.id, r.body.id, 'the same record is fetched again')
  t.equal(retry.body.status, 'pending')
  t.notOk('error' in retry.body, 'old error cleared')
  const ok = await waitForNative(native, r.body.id, ['complete', 'error'])
  t.equal(ok.status, 'complete')
  t.equal(ok.size, 24)
  t.equal(src.hits.get('/flaky'), 2)
})

t.test('bytes stored exactly as served; redirects followed', async (t) => {
  const { native } = await startTestService(t)
  const src = await startSourceServer(t)
  const gz = await post(native, { source: `${src.url}/gzip`, type: 'kvm' })
  const gzDone = await waitForNative(native, gz.body.id, ['complete', 'error'])
  t.equal(gzDone.status, 'complete')
  const got = Buffer.from(await (await fetch(`${native}/images/${gz.body.id}/download`)).arrayBuffer())
  t.ok(got.equals(gzipSync(Buffer.from(TESTDATA))), 'Content-Encoding: gzip is not decoded: a gzipped stream stays gzipped')

  const redir = await post(native, { source: `${src.url}/redirect`, type: 'kvm' })
  const rd = await waitForNative(native, redir.body.id, ['complete', 'error'])
  t.equal(rd.status, 'complete')
  t.equal(rd.size, 24)
})

t.test('truncated, stalled and oversized sources end in error', async (t) => {
  const { native, dataDir } = await startTestService(t, { fetchTimeoutMs: 300, maxUploadSize: 1000 })
  const src = await startSourceServer(t)
  const short = await post(native, { source: `${src.url}/short`, type: 'kvm' })
  const s = await waitForNative(native, short.body.id, ['complete', 'error'])
  t.equal(s.status, 'error', 'connection dropped before Content-Length → error')
  t.notOk(existsSync(join(dataDir, 'images', s.id)))

  src.stalling.add('/stall')
  const stall = await post(native, { source: `${src.url}/stall`, type: 'kvm' })
  const st = await waitForNative(native, stall.body.id, ['complete', 'error'])
  t.equal(st.status, 'error')
  t.match(st.error, /sent nothing for 300 ms/)

  const big = await post(native, { source: `${src.url}/big/5000`, type: 'kvm' })
  const b = await waitForNative(native, big.body.id, ['complete', 'error'])
  t.equal(b.status, 'error')
  t.match(b.error, /maximum/)

  const unreachable = await post(native, { source: 'http://127.0.0.1:1/x', type: 'kvm' })
  t.equal((await waitForNative(native, unreachable.body.id, ['complete', 'error'])).status, 'error', 'connection refused → error')
})

t.test('progress: size is updated while downloading; delete cancels a fetch', async (t) => {
  const { native, svc, dataDir } = await startTestService(t, { fetchTimeoutMs: 10_000 })
  const src = await startSourceServer(t)
  src.stalling.add('/slow')
  const r = await post(native, { source: `${src.url}/slow`, type: 'kvm' })
  const dl = await waitForNative(native, r.body.id, ['downloading'])
  t.equal(dl.expected_size, 1000, 'expected_size from the response Content-Length')
  t.not(dl.download_start, '0001-01-01T00:00:00Z')
  await waitForNative(native, r.body.id, ['downloading']).then(async () => {
    // The stalled source sent 1 byte; the periodic update records it.
    for (let i = 0; i < 100; i++) {
      if ((await getJson(`${native}/images/${r.body.id}`)).body.size === 1) break
      await delay(20)
    }
  })
  t.equal((await getJson(`${native}/images/${r.body.id}`)).body.size, 1, 'running size persisted')
  t.ok(svc.deps.fetcher.isRunning(r.body.id))
  const del = await getJson(`${native}/images/${r.body.id}`, { method: 'DELETE' })
  t.equal(del.status, 200)
  await svc.deps.fetcher.idle()
  t.notOk(svc.deps.fetcher.isRunning(r.body.id), 'fetch cancelled')
  t.equal((await getJson(`${native}/images/${r.body.id}`)).status, 404, 'record stays deleted')
  t.notOk(existsSync(join(dataDir, 'images', r.body.id)))
})

t.test('FetcherTestSuite: bad sources end in error at the fetcher level', async (t) => {
  const { svc } = await startTestService(t)
  const src = await startSourceServer(t)
  const { store, fetcher } = svc.deps
  for (const source of ['asdf', `${src.url}/404`, 'file:///etc/passwd']) {
    const rec = await store.create({ source, type: 'kvm' })
    fetcher.start(rec.id)
    await fetcher.idle()
    const after = await store.get(rec.id)
    t.equal(after?.status, 'error', `${source} → error`)
    t.type(after?.error, 'string')
  }
  const good = await store.create({ source: `${src.url}/data`, type: 'container', comment: 'c' })
  fetcher.start(good.id)
  fetcher.start(good.id)
  await fetcher.idle()
  const g = await store.get(good.id)
  t.equal(g?.status, 'complete')
  t.equal(g?.size, 24)
  t.equal(g?.type, 'container')
  t.equal(g?.comment, 'c')
  t.equal(src.hits.get('/data'), 1, 'starting a running fetch again is a no-op')
  t.equal((await store.findBySource(`${src.url}/data`))?.id, good.id, 'same source → the existing record')
})
