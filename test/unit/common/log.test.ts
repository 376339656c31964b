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
