/**
 * Which digest the agent's fetch checks (src/agent/import/digest.ts), on the host: the real
 * fetch job over a zfs whose `receive` hashes what it is fed, against a plain HTTP server that
 * publishes the digests each test chooses. The same choice runs against real ZFS and the real
 * image service in test/integration/security-imports.test.ts.
 */
import t from 'tap'
import { createServer } from 'node:http'
import { once } from 'node:events'
import { createHash } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { agentFetch, zfsLike, type T } from '../../helpers/agent-fetch.js'

const hex = (alg: string, b: Buffer) => createHash(alg).update(b).digest('hex')
const failure = (p: Promise<unknown>) => p.then(() => { throw new Error('expected a failure') }, (e: Error) => e)

/** Serves `body` at every /images/<id>/download (and /src/<id>) with the headers `headers[id]` gives. */
async function server(t: T, body: Buffer, headers: Record<string, Record<string, string>>) {
  const s = createServer((req, res) => {
    const id = /^\/(?:images|src)\/([^/]+)/.exec(req.url ?? '')?.[1] ?? ''
    res.writeHead(200, { 'Content-Length': body.length, ...(headers[id] ?? {}) })
    res.end(body)
  })
  s.listen(0, '127.0.0.1')
  await once(s, 'listening')
  t.teardown(() => { s.close(); s.closeAllConnections() })
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`
}

const body = zfsLike(256 * 1024)
const other = zfsLike(16)
const sha = hex('sha256', body), b2 = hex('blake2b512', body)

t.test('the image service publishes both: BLAKE2b is what is checked, sha256 is what the record shows', async (t) => {
  const url = await server(t, body, {
    good: { 'X-Image-Sha256': sha, 'X-Image-Blake2b512': b2.toUpperCase() },
    badb2: { 'X-Image-Sha256': sha, 'X-Image-Blake2b512': hex('blake2b512', other) },
    shapeless: { 'X-Image-Sha256': sha, 'X-Image-Blake2b512': 'ab'.repeat(32) },
  })
  const a = agentFetch(t, url)
  const rec = await a.fetch('good')
  t.match(rec, { status: 'complete', sha256: sha })
  t.same(a.received.map((r) => [r.name, r.sha256]), [['tank/images/_incoming-good', sha]], 'the exact bytes, once')

  // A right sha256 does not save a wrong BLAKE2b: the bytes are refused, nothing is committed.
  const e = await failure(a.fetch('badb2'))
  t.match(e.message, new RegExp(`^image badb2: checksum mismatch \\(expected blake2b512 ${hex('blake2b512', other)}, got ${b2}\\)`))
  t.not(a.records.get('badb2')?.status, 'complete')
  t.equal(a.received.length, 2, 'the stream was fed (and its dataset removed, as for any failed import)')

  // 64 hex digits where 128 belong: refused before a byte goes to zfs.
  const s = await failure(a.fetch('shapeless'))
  t.match(s.message, /^image shapeless: the source's X-Image-Blake2b512 is not a blake2b512 digest/)
  t.equal(a.received.length, 2, 'nothing fed')
})

t.test('sha256 only (an older image service): sha256 is checked', async (t) => {
  const url = await server(t, body, { good: { 'X-Image-Sha256': sha }, bad: { 'X-Image-Sha256': hex('sha256', other) } })
  const a = agentFetch(t, url)
  t.match(await a.fetch('good'), { status: 'complete', sha256: sha })
  t.match((await failure(a.fetch('bad'))).message, /^image bad: checksum mismatch \(expected sha256 [0-9a-f]{64}, got /)
})

t.test('the caller\'s own sha256: only it is checked, whatever the server publishes beside it', async (t) => {
  const url = await server(t, body, {
    // A wrong BLAKE2b beside it is not read: the caller trusts its sha256, not the server.
    pin: { 'X-Image-Blake2b512': hex('blake2b512', other) },
    // A right BLAKE2b does not stand in for the caller's sha256.
    b2only: { 'X-Image-Blake2b512': b2 },
    // A published sha256 must agree with the caller's.
    disagree: { 'X-Image-Sha256': hex('sha256', other), 'X-Image-Blake2b512': b2 },
  })
  const a = agentFetch(t, url)
  t.match(await a.fetchFrom('pin', `${url}/src/pin`, sha), { status: 'complete', sha256: sha })
  const wrong = hex('sha256', other)
  t.match((await failure(a.fetchFrom('b2only', `${url}/src/b2only`, wrong))).message, new RegExp(`^image b2only: checksum mismatch \\(expected sha256 ${wrong}, got ${sha}\\)`))
  t.match((await failure(a.fetchFrom('disagree', `${url}/src/disagree`, sha))).message, /^image disagree: the source publishes sha256 [0-9a-f]{64}, the request says /)
  t.equal(a.received.length, 2, 'the disagreement is found before a byte is fed')
})
