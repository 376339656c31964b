/**
 * Reliability: a generated corpus of malformed requests (both wire dialects,
 * every method, plus the download route) against an agent on a real pool.
 * Each must get a clear error in its own dialect, none may succeed, the agent
 * must still answer afterwards, and not one dataset, property or hold may have
 * moved: outside <pool>/images and <pool>/guests (sentinels in <pool>/other
 * and in a second pool) nor inside them.
 *
 * Size: the deterministic corpus (about 5,200 requests) sampled down to
 * MISTIFY_CORPUS_SIZE (fast 560; long 0 = all of it), plus
 * MISTIFY_CORPUS_MUTANTS random mutants (fast 40, long 3000);
 * MISTIFY_CORPUS_SEED fixes the mutants.
 */
import t from 'tap'
import { execFileSync, spawnSync } from 'node:child_process'
import { gzipSync } from 'node:zlib'
import { haveZfs, sh, createFilePool, volumeWithSnapshot } from '../helpers/zpool.js'
import { startAgent, digestHeader, IMAGE_ID } from '../helpers/agent.js'
import { buildCorpus, mutants, sample, METHODS, type CorpusEntry } from '../helpers/corpus.js'
import { knob, pool as limited, prng, rawRequest, summary, Tally, under, zfsState, type RawAnswer } from '../helpers/reliability.js'

if (!haveZfs) { t.comment('real ZFS only: run inside the VM (npm test does)'); process.exit(0) }

const SIZE = knob('MISTIFY_CORPUS_SIZE', 560, 0)
const MUTANTS = knob('MISTIFY_CORPUS_MUTANTS', 40, 3000)
const SEED = knob('MISTIFY_CORPUS_SEED', Math.floor(Math.random() * 1e9), Math.floor(Math.random() * 1e9))
const CONCURRENCY = knob('MISTIFY_CORPUS_CONCURRENCY', 8, 8)

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)
const nonEmpty = (v: unknown) => typeof v === 'string' && v.length > 0

/** What kind of answer this is, or why it is not a clear error (`bad: …`). */
function judge(e: CorpusEntry, r: RawAnswer): string {
  if (r.transport) return e.mayReset ? `reset ${r.transport}` : `bad: transport ${r.transport}`
  // Node's HTTP parser refuses an over-long request line itself, with an empty 431.
  if (r.status === 431) return 'http 431'
  if (e.dialect === 'http') {
    if (r.status >= 400 && r.status < 500 && r.text.trim()) return `http ${r.status}`
    return `bad: download answered ${r.status}`
  }
  // Refusals by the transport (gorilla's plain-text 4xx): fine for both dialects, if they say something.
  if (r.status >= 400 && r.status < 500) return r.text.trim() ? `http ${r.status}` : `bad: empty ${r.status}`
  if (r.status === 204 || (r.status === 200 && r.text === '')) return e.mayBeNotification ? 'notification' : `bad: no answer (${r.status})`
  if (r.status !== 200) return `bad: status ${r.status}`
  if (!/^application\/json/.test(r.contentType)) return `bad: content-type ${r.contentType}`
  let body: unknown
  try { body = JSON.parse(r.text) } catch { return 'bad: not JSON' }
  // Mutants may have rewritten their id (11e9, a string): any id will do for them.
  const idOk = (id: unknown) => e.ids === undefined || e.ids.some((x) => x === id)
  const v1 = (b: unknown): string | undefined => {
    if (!isObj(b) || 'jsonrpc' in b) return undefined
    if (Object.keys(b).join() !== 'result,error,id') return 'bad: 1.0 keys'
    if (b['result'] !== null) return 'bad: 1.0 result not null (success?)'
    if (!nonEmpty(b['error'])) return 'bad: 1.0 error not a non-empty string'
    if (!idOk(b['id'])) return `bad: 1.0 id ${JSON.stringify(b['id'])}`
    return b['error'] === 'internal error' ? 'bad: internal error' : '1.0 error'
  }
  const v2 = (b: unknown): string | undefined => {
    if (!isObj(b) || b['jsonrpc'] !== '2.0') return undefined
    if ('result' in b) return 'bad: 2.0 result (success?)'
    const err = b['error']
    if (!isObj(err) || !Number.isInteger(err['code']) || !nonEmpty(err['message'])) return 'bad: 2.0 error object'
    if (!idOk(b['id'])) return `bad: 2.0 id ${JSON.stringify(b['id'])}`
    return err['code'] === -32603 ? 'bad: internal error' : `2.0 ${String(err['code'])}`
  }
  if (e.batch !== undefined) {
    if (!Array.isArray(body) || body.length !== e.batch) return `bad: batch of ${e.batch} answered with ${Array.isArray(body) ? body.length : 'no array'}`
    const kinds = body.map((b) => v2(b) ?? 'bad: not a 2.0 error')
    return kinds.find((k) => k.startsWith('bad')) ?? `2.0 batch`
  }
  const want = e.dialect === 'v1' ? [v1] : e.dialect === 'v2' ? [v2] : [v1, v2]
  for (const f of want) { const k = f(body); if (k !== undefined) return k }
  return `bad: not a ${e.dialect} error`
}

t.test('malformed corpus: clear errors, no success, nothing moved', async (t) => {
  const a = await startAgent(t)
  const P = a.pool
  // The fixture: an image, a guest with a clone and a blank disk, two snapshots.
  t.equal((await a.call('v1', 'RequestImage', { id: IMAGE_ID })).result?.images?.[0]?.status, 'complete', 'image imported')
  const g = await a.call('v1', 'CreateGuestDisks', { guest: { id: 'g-ok', disks: [{ image: IMAGE_ID }, { size: 8 }] } })
  t.notOk(g.error, 'guest disks made')
  for (const s of ['s1', 's2']) t.notOk((await a.call('v1', 'CreateSnapshot', { id: 'guests/g-ok', dest: s, recursive: true })).error, `snapshot ${s}`)
  // Sentinels outside the trees: <pool>/other with a volume and a snapshot, and a second pool.
  sh('zfs', ['create', '-o', 'mistify:sentinel=other', `${P}/other`])
  volumeWithSnapshot(`${P}/other/vol`, { sizeMiB: 8, fillMiB: 1, snapshot: 'snap' })
  const { name: P2 } = createFilePool(t, { sizeMiB: 128, prefix: 'mrel' })
  sh('zfs', ['set', 'mistify:sentinel=pool2', P2])
  volumeWithSnapshot(`${P2}/vol`, { sizeMiB: 8, fillMiB: 1, snapshot: 'snap' })
  const before = zfsState([P, P2])
  const imagesBefore = (await a.call('v2', 'ListImages', {})).result

  const fixture = { pool: P, pool2: P2, imageId: IMAGE_ID }
  const corpus = [...sample(buildCorpus(fixture), SIZE), ...mutants(fixture, MUTANTS, SEED)]
  t.ok(corpus.length >= 500, `${corpus.length} requests (mutant seed ${SEED})`)
  // Every one of the 17 methods, in both dialects.
  for (const m of METHODS) {
    for (const d of ['v1', 'v2']) t.ok(corpus.some((e) => e.dialect === d && e.label.startsWith(`${d} ${m} `)), `${m} in ${d}`)
  }

  const started = Date.now()
  const kinds = new Tally()
  const byCategory = new Tally()
  const bad: string[] = []
  let slowest = 0
  await limited(corpus, CONCURRENCY, async (e) => {
    const t0 = Date.now()
    const r = await rawRequest(`${a.url}${e.path ?? '/_mistify_RPC_'}`, {
      method: e.httpMethod ?? 'POST', ...(e.body !== undefined ? { body: e.body } : {}),
      ...(e.contentType !== undefined ? { contentType: e.contentType } : {}), timeoutMs: 90_000,
    })
    slowest = Math.max(slowest, Date.now() - t0)
    const k = judge(e, r)
    kinds.add(k.startsWith('bad') ? 'unexpected' : k)
    byCategory.add(e.kind)
    if (k.startsWith('bad')) bad.push(`${e.label.slice(0, 120)} → ${k}: ${r.status} ${r.text.slice(0, 200)}`)
  })
  const seconds = (Date.now() - started) / 1000

  t.same(bad, [], 'every request got a clear error in its own dialect, none succeeded')

  // Still alive, and still the same agent.
  t.same((await a.call('v1', 'ListImages', {})).result, imagesBefore, 'answers afterwards (1.0), image records unchanged')
  t.same((await a.call('v2', 'ListImages', {})).result, imagesBefore, 'answers afterwards (2.0)')
  t.equal((await a.call('v2', 'GetImage', { id: IMAGE_ID })).result?.images?.[0]?.status, 'complete')
  t.equal((await fetch(`${a.url}/healthz`)).status, 200, 'healthz')

  const after = zfsState([P, P2])
  const inTrees = (s: string[]) => [...under(s, `${P}/images`), ...under(s, `${P}/guests`)]
  const outside = (s: string[]) => s.filter((l) => !inTrees([l]).length)
  t.same(outside(after), outside(before), 'nothing outside images/ and guests/ was created, changed or destroyed (other pool included)')
  t.same(under(after, `${P}/images`), under(before, `${P}/images`), 'images/ unchanged')
  t.same(under(after, `${P}/guests`), under(before, `${P}/guests`), 'guests/ unchanged')
  t.ok(before.some((l) => l.startsWith(`list\t${P2}/vol@snap\t`)) && before.some((l) => l.includes('mistify:sentinel')), 'the sentinels were in the capture')

  summary(t, 'corpus', {
    requests: corpus.length, sampledTo: SIZE || 'all', mutants: MUTANTS, seed: SEED, seconds: seconds.toFixed(1), slowestMs: slowest,
    unexpected: bad.length, answers: kinds.counts, categories: byCategory.counts,
  })
})

/**
 * Adversarial images and forged resume tokens (issue 12): what an attacker who
 * controls an image source, or who holds the agent's socket, can send. Every
 * image here must be refused (or, for a random mutant that zfs still reads,
 * become a plain image with no origin); every token must get a 400 before any
 * byte; and nothing outside images/ and guests/ may change: the sentinels in
 * <pool>/other and a second pool are the datasets an attack would reach.
 */
t.test('adversarial images and forged tokens: refused, nothing outside the trees changed', async (t) => {
  const LIMIT = 2 * 1024 * 1024
  const a = await startAgent(t, { config: { maxImageBytes: LIMIT } })
  const P = a.pool
  const call = (m: string, p: unknown) => a.call('v2', m, p)
  sh('zfs', ['create', '-o', 'mistify:sentinel=other', `${P}/other`])
  volumeWithSnapshot(`${P}/other/vol`, { sizeMiB: 8, fillMiB: 1, snapshot: 'snap' })
  const { name: P2 } = createFilePool(t, { sizeMiB: 128, prefix: 'madv' })
  volumeWithSnapshot(`${P2}/vol`, { sizeMiB: 8, fillMiB: 1, snapshot: 'snap' })
  // Material made outside the trees: a clone of the sentinel, and streams of every kind.
  sh('zfs', ['clone', `${P}/other/vol@snap`, `${P}/other/clone`])
  sh('zfs', ['snapshot', `${P}/other/clone@img`])
  sh('zfs', ['snapshot', `${P}/other/vol@later`])
  sh('zfs', ['create', '-V', '4M', '-o', 'refreservation=4M', '-o', 'mistify:image=forged', `${P}/other/props`])
  sh('zfs', ['snapshot', `${P}/other/props@p`])
  const send = (args: string[]) => execFileSync('zfs', ['send', ...args], { maxBuffer: 64 << 20 })
  const plain = send([`${P}/other/vol@snap`])
  const images: Array<[string, Buffer | ((res: import('node:http').ServerResponse) => void)]> = [
    ['clone', send(['-i', `${P}/other/vol@snap`, `${P}/other/clone@img`])],
    ['clone-gz', gzipSync(send(['-i', `${P}/other/vol@snap`, `${P}/other/clone@img`]))],
    ['incremental', send(['-i', '@snap', `${P}/other/vol@later`])],
    ['intermediates', send(['-I', '@snap', `${P}/other/vol@later`])],
    ['props', send(['-p', `${P}/other/props@p`])],
    ['replicate', send(['-R', `${P}/other/props@p`])],
    ['oversize', send([`${volumeWithSnapshot(`${P}/other/big`, { sizeMiB: 8, fillMiB: 4 })}`])],
    ['gzip-bomb', gzipSync(Buffer.concat([Buffer.alloc(510), Buffer.from([0x55, 0xaa]), Buffer.alloc(64 << 20)]), { level: 9 })],
    ['truncated-begin', plain.subarray(0, 100)],
    ['lying-length-long', (res) => { res.writeHead(200, { 'Content-Length': plain.length * 2, ...digestHeader(plain) }); res.end(plain) }],
    ['lying-length-short', (res) => { res.writeHead(200, { 'Content-Length': 1000, ...digestHeader(plain.subarray(0, 1000)) }); res.end(plain) }],
  ]
  // Mutants of a plain stream's BEGIN record: flags, versioninfo, from/to guids flipped at random.
  const rnd = prng(SEED)
  for (let i = 0; i < knob('MISTIFY_ADVERSARIAL_MUTANTS', 12, 200); i++) {
    const m = Buffer.from(plain)
    const field = [16, 36, 40, 48][Math.floor(rnd() * 4)]!
    for (let b = 0; b < 1 + Math.floor(rnd() * 3); b++) { const at = field + Math.floor(rnd() * 8); m[at] = m[at]! ^ (1 << Math.floor(rnd() * 8)) }
    images.push([`mutant-${i}-at-${field}`, m])
  }
  const before = zfsState([P, P2])
  const inTrees = (s: string[]) => [...under(s, `${P}/images`), ...under(s, `${P}/guests`)]
  const outside = (s: string[]) => s.filter((l) => !inTrees([l]).length)
  const unexpected: string[] = []
  const kinds = new Tally()
  for (const [name, body] of images) {
    a.images.routes.set(`/images/${name}/download`, body)
    const r = await call('RequestImage', { id: name })
    if (r.error) {
      // A refusal must say why: an internal error would hide what was wrong with the image.
      if (/internal error/i.test(r.error)) unexpected.push(`${name}: ${r.error}`)
      kinds.add(r.error.replace(/^image \S+: /, '').replace(/[0-9a-f]{16,}|\d+/g, 'N').slice(0, 60))
      continue
    }
    // Only a mutant that zfs still reads may import, and then only as a plain image.
    const origin = sh('zfs', ['get', '-H', '-o', 'value', 'origin', `${P}/images/${name}`]).trim()
    if (!name.startsWith('mutant-') || origin !== '-') unexpected.push(`${name} imported (origin ${origin})`)
    kinds.add('imported (plain)')
  }
  t.same(unexpected, [], 'no adversarial image became an image')
  const leftovers = sh('zfs', ['list', '-H', '-o', 'name', '-r', `${P}/images`]).split('\n').filter((n) => /_incoming-|_spool-/.test(n))
  t.same(leftovers, [], 'no temporaries left')
  t.same(outside(zfsState([P, P2])), outside(before), 'nothing outside images/ and guests/ changed (other pool included)')

  // Forged resume tokens: names outside, corrupted, and in-scope names whose guids resolve outside.
  const tokens: Array<[string, string]> = []
  const interrupted = (from: string, into: string, incremental?: string) => {
    spawnSync('bash', ['-o', 'pipefail', '-c', `zfs send ${incremental ? `-i ${incremental} ` : ''}${from} | head -c 600000 | zfs receive -s ${into}`])
    return sh('zfs', ['get', '-H', '-o', 'value', 'receive_resume_token', into]).trim()
  }
  volumeWithSnapshot(`${P}/guests/tsrc`, { sizeMiB: 8, fillMiB: 4 })
  const genuine = interrupted(`${P}/guests/tsrc@s`, `${P}/guests/tcopy`)
  tokens.push(['outside-name', interrupted(`${P}/other/big@s`, `${P}/guests/tcopy2`)])
  tokens.push(['other-pool', interrupted(`${P2}/vol@snap`, `${P}/guests/tcopy3`)])
  for (let i = 0; i < knob('MISTIFY_TOKEN_MUTANTS', 6, 100); i++) {
    const at = genuine.lastIndexOf('-') + 1 + Math.floor(rnd() * (genuine.length - genuine.lastIndexOf('-') - 1))
    const c = genuine[at] === 'a' ? 'b' : 'a'
    tokens.push([`corrupt-${i}`, genuine.slice(0, at) + c + genuine.slice(at + 1)])
  }
  // The snapshot the genuine token names moves outside; a namesake takes its place in guests/.
  sh('zfs', ['rename', `${P}/guests/tsrc`, `${P}/other/tsrc-moved`])
  volumeWithSnapshot(`${P}/guests/tsrc`, { sizeMiB: 8, fillMiB: 1 })
  tokens.push(['toguid-outside', genuine])
  const tokBefore = zfsState([P, P2])
  const tokBad: string[] = []
  for (const [name, token] of tokens) {
    const r = await rawRequest(`${a.url}/snapshots/download?token=${encodeURIComponent(token)}`, { method: 'GET' })
    if (r.status !== 400) tokBad.push(`${name}: ${r.status} ${r.text.slice(0, 120)}`)
    kinds.add(`token ${r.status}`)
  }
  t.same(tokBad, [], 'every forged token is a 400 before any byte')
  t.same(zfsState([P, P2]), tokBefore, 'no hold, no dataset, no property changed by the tokens')
  summary(t, 'adversarial', { images: images.length, tokens: tokens.length, outcomes: kinds.counts })
})
