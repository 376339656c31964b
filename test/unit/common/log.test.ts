import t from 'tap'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { batchedStderr, jsonLogger } from '../../../src/common/log.js'

const logModule = fileURLToPath(new URL('../../../src/common/log.js', import.meta.url))

const later = (ms: number) => new Promise((r) => setTimeout(r, ms))

t.test('lines within the delay reach the output in one write, later ones in another', async (t) => {
  const writes: string[] = []
  const log = jsonLogger(batchedStderr({ write: (s: string) => writes.push(s) }, 30))
  log.info({ n: 1 }, 'a')
  await later(1)
  log.warn({ n: 2 }, 'b')
  log.error({ n: 3 }, 'c')
  t.equal(writes.length, 0, 'nothing written synchronously')
  await later(80)
  t.equal(writes.length, 1)
  t.same(writes[0]!.trim().split('\n').map((l) => JSON.parse(l).msg), ['a', 'b', 'c'])
  log.info({}, 'd')
  await later(80)
  t.equal(writes.length, 2)
  t.equal(JSON.parse(writes[1]!).msg, 'd')
})

t.test('64 KiB of lines go out at once, without waiting for the delay', async (t) => {
  const writes: string[] = []
  const log = jsonLogger(batchedStderr({ write: (s: string) => writes.push(s) }, 60_000))
  const long = 'x'.repeat(1000)
  for (let i = 0; i < 70; i++) log.info({ long }, 'big')
  t.equal(writes.length, 1, 'flushed when the batch passed 64 KiB')
  t.ok(writes[0]!.length >= 64 * 1024)
})

t.test('lines logged just before process.exit still reach stderr', async (t) => {
  const script = `import { jsonLogger } from ${JSON.stringify(logModule)}
const log = jsonLogger()
for (let i = 0; i < 100; i++) log.error({ i }, 'line')
process.exit(3)`
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })
  t.equal(r.status, 3)
  const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l))
  t.equal(lines.length, 100)
  t.same(lines.map((l) => l.i), Array.from({ length: 100 }, (_, i) => i))
})

t.test('a token is still redacted', async (t) => {
  const writes: string[] = []
  const log = jsonLogger(batchedStderr({ write: (s: string) => writes.push(s) }))
  log.info({ token: 'secret', config: { token: 'secret2' } }, 'x')
  await later(60)
  t.notMatch(writes.join(''), /secret/)
})

t.test('secrets are blanked at the top level, one level down and in headers one level down; the caller keeps its objects', async (t) => {
  const { redactSecrets, CENSOR } = await import('../../../src/common/log.js')
  const headers = { authorization: 'Bearer h', accept: '*/*' }
  const input = { token: 't', Authorization: 'a', config: { token: 't2', port: 1 }, req: { headers, url: '/' }, keep: 1, list: [{ token: 'in a list' }] }
  const out = redactSecrets(input)
  t.same(out, {
    token: CENSOR, Authorization: CENSOR, config: { token: CENSOR, port: 1 }, req: { headers: { authorization: CENSOR, accept: '*/*' }, url: '/' },
    keep: 1, list: [{ token: 'in a list' }],
  })
  t.equal(input.token, 't', 'the input is not changed')
  t.equal(headers.authorization, 'Bearer h')
  const plain = { reqId: 'r', method: 'GetImage' }
  t.equal(redactSecrets(plain), plain, 'an object without secrets is used as it is')
  const err = Object.assign(new Error('boom'), { token: 'e' })
  const o = redactSecrets({ err }) as { err: Error & { token: string } }
  t.ok(o.err instanceof Error, 'an Error stays an Error')
  t.equal(o.err.message, 'boom')
  t.equal(o.err.token, CENSOR)
  t.equal(err.token, 'e')
})

t.test('the logged line carries the redaction, and the time in ISO form', async (t) => {
  const writes: string[] = []
  const log = jsonLogger(batchedStderr({ write: (s: string) => writes.push(s) }, 1))
  log.info({ req: { headers: { authorization: 'Bearer zzz' } }, authorization: 'x' }, 'm')
  log.info({}, 'n')
  await later(30)
  const lines = writes.join('').trim().split('\n').map((l) => JSON.parse(l))
  t.notMatch(writes.join(''), /zzz/)
  t.match(lines[0], { level: 'info', msg: 'm', authorization: '[redacted]', req: { headers: { authorization: '[redacted]' } } })
  t.match(lines[1].time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
})
