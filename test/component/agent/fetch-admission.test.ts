/**
 * Admission to the fetch queue as an async RequestImage meets it (issue 12
 * item 11): an image the queue cannot take is refused synchronously, before
 * the caller answers, with increments on (the fetch first reads the image
 * service's records) as with them off. The VM tier checks the same through
 * the RPC in test/integration/security-imports.test.ts.
 */
import t from 'tap'
import { createServer } from 'node:http'
import { once } from 'node:events'
import { createHash } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { agentFetch, zfsLike, type T } from '../../helpers/agent-fetch.js'
import { BusyError } from '../../../src/agent/errors.js'

/** An image service whose records answer slowly (a fetch by id spends that long planning) and whose downloads are plain. */
async function service(t: T, imgs: Map<string, Buffer>, recordDelayMs: number) {
  const server = createServer((req, res) => {
    const m = /^\/images\/([^/]+)(\/download)?$/.exec(req.url ?? '')
    const img = m ? imgs.get(m[1]!) : undefined
    if (!m || !img) { res.writeHead(404).end('not found'); return }
    if (!m[2]) { setTimeout(() => res.writeHead(404).end('no record'), recordDelayMs); return }
    res.writeHead(200, { 'Content-Length': img.length, 'X-Image-Sha256': createHash('sha256').update(img).digest('hex') }).end(img)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return `127.0.0.1:${(server.address() as AddressInfo).port}`
}

for (const incrementDepth of [8, 0]) {
  t.test(`a full queue refuses an async fetch at once (increments ${incrementDepth ? 'on' : 'off'})`, async (t) => {
    const imgs = new Map([['slow', zfsLike(1000)], ['second', zfsLike(1000)]])
    const agent = agentFetch(t, await service(t, imgs, 300), { incrementDepth, queue: { concurrency: 1, maxPending: 0 } })
    const first = agent.fetchAsync('slow')
    t.throws(() => agent.fetchAsync('second'), BusyError, 'refused synchronously: the caller can answer busy')
    t.throws(() => agent.fetchAsync('second'), { message: /^busy: \d fetches running and \d waiting, try again later$/ })
    t.equal(agent.records.get('second'), undefined, 'no record says pending')
    t.equal(agent.fetchAsync('slow'), agent.fetchAsync('slow'), 'a caller for the same image joins it')
    t.match(await first, { id: 'slow', status: 'complete' })
    t.match(await agent.fetchAsync('second'), { id: 'second', status: 'complete' }, 'admitted once the slot is free')
    t.equal(agent.received.length, 2)
  })
}

t.test('a chain that fails before its fetch gives its place back', async (t) => {
  // No image at all: planning finds no record, the full fetch fails; the place must not stay taken.
  const agent = agentFetch(t, await service(t, new Map(), 10), { incrementDepth: 8, queue: { concurrency: 1, maxPending: 0 } })
  await t.rejects(agent.fetchAsync('gone'))
  await t.rejects(agent.fetchAsync('gone-too'), { message: /404|not found/i }, 'the next fetch is admitted and fails on its own')
})
