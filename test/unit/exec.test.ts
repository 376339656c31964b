import t from 'tap'
import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createZfsRunner } from '../../src/zfs/runner.js'
import { createZfs, DatasetNotFoundError, ZfsCommandError, ZfsTimeoutError, InvalidStreamError } from '../../src/zfs/index.js'

/** A fake zfs: a node script that acts on its argv (no ZFS, no root needed). */
function fakeBin(dir: string, body: string): string {
  const f = join(dir, 'fake-zfs')
  writeFileSync(f, `#!${process.execPath}\nconst args = process.argv.slice(2);\n${body}\n`)
  chmodSync(f, 0o755)
  return f
}

t.test('buffered run: stdout, locale, no shell', async (t) => {
  const bin = fakeBin(t.testdir(), `process.stdout.write(JSON.stringify({ args, lc: process.env.LC_ALL }) + '\\n')`)
  const r = createZfsRunner({ zfsBin: bin })
  const out = JSON.parse(await r.run('zfs', ['list', '$(touch /tmp/x)', 'a b']))
  t.same(out, { args: ['list', '$(touch /tmp/x)', 'a b'], lc: 'C' }, 'argv passed verbatim, C locale')
})

t.test('failures are classified from stderr', async (t) => {
  const bin = fakeBin(t.testdir(), `process.stderr.write("cannot open 'tank/x': dataset does not exist\\n"); process.exit(1)`)
  const zfs = createZfs(createZfsRunner({ zfsBin: bin }))
  const e = await zfs.getDataset('tank/x').catch((e: unknown) => e)
  t.type(e, DatasetNotFoundError)
  t.match((e as DatasetNotFoundError).command, { bin, exitCode: 1, stderr: /does not exist/ })
  t.same((e as DatasetNotFoundError).command?.args.slice(0, 1), ['list'])
})

t.test('unknown failure keeps exit code and stderr', async (t) => {
  const bin = fakeBin(t.testdir(), `process.stderr.write('something odd\\n'); process.exit(3)`)
  const e = await createZfsRunner({ zfsBin: bin }).run('zfs', ['x']).catch((e: unknown) => e)
  t.type(e, ZfsCommandError)
  t.match((e as Error).message, /zfs-?\S* x: something odd|x: something odd/)
  t.equal((e as ZfsCommandError).command?.exitCode, 3)
})

t.test('missing binary', async (t) => {
  const e = await createZfsRunner({ zfsBin: '/nonexistent/zfs' }).run('zfs', ['list']).catch((e: unknown) => e)
  t.type(e, ZfsCommandError)
  t.match((e as Error).message, /ENOENT|not found|no such file/i)
})

t.test('timeout kills the process', async (t) => {
  const bin = fakeBin(t.testdir(), `setTimeout(() => {}, 60000)`)
  const start = Date.now()
  const e = await createZfsRunner({ zfsBin: bin, timeoutMs: 300 }).run('zfs', ['list']).catch((e: unknown) => e)
  t.type(e, ZfsTimeoutError)
  t.ok(Date.now() - start < 10000)
})

t.test('abort signal kills the process', async (t) => {
  const bin = fakeBin(t.testdir(), `setTimeout(() => {}, 60000)`)
  const ac = new AbortController()
  setTimeout(() => ac.abort(), 200)
  const e = await createZfsRunner({ zfsBin: bin }).run('zfs', ['list'], { signal: ac.signal }).catch((e: unknown) => e)
  t.type(e, ZfsCommandError)
  t.equal((e as ZfsCommandError).command?.signal, 'aborted')
})

t.test('send streams stdout; kill stops it', async (t) => {
  const bin = fakeBin(t.testdir(), `
    const chunk = Buffer.alloc(65536, 1); let n = 0
    const w = () => { while (n < 64) { n++; if (!process.stdout.write(chunk)) return process.stdout.once('drain', w) } }
    if (args.includes('forever')) setInterval(() => process.stdout.write(chunk), 1); else w()`)
  const zfs = createZfs(createZfsRunner({ zfsBin: bin }))
  const child = zfs.send('tank/x@s')
  let bytes = 0
  for await (const c of child.stdout!) bytes += (c as Buffer).length
  await child.done
  t.equal(bytes, 64 * 65536, 'every byte arrives in order')

  const runner = createZfsRunner({ zfsBin: bin })
  const forever = runner.spawn('zfs', ['send', 'forever'], { stdout: 'pipe' })
  forever.stdout!.resume()
  setTimeout(() => forever.kill(), 100)
  const e = await forever.done.catch((e: unknown) => e)
  t.type(e, ZfsCommandError)
  t.equal((e as ZfsCommandError).command?.signal, 'SIGTERM')
})

t.test('receive: stdin streamed in; zfs verdict wins over EPIPE', async (t) => {
  const dir = t.testdir()
  const ok = fakeBin(dir, `let n = 0; process.stdin.on('data', (c) => n += c.length); process.stdin.on('end', () => { if (n !== 1048576) process.exit(9) })`)
  const zfs = createZfs(createZfsRunner({ zfsBin: ok }))
  await zfs.receive('tank/i/x', Readable.from((function* () { for (let i = 0; i < 16; i++) yield Buffer.alloc(65536) })()))
  t.pass('all bytes reached the child')

  const bad = join(dir, 'bad')
  writeFileSync(bad, `#!${process.execPath}\nprocess.stderr.write('cannot receive: invalid backup stream\\n'); process.exit(1)\n`)
  chmodSync(bad, 0o755)
  const zfs2 = createZfs(createZfsRunner({ zfsBin: bad }))
  const big = Readable.from((function* () { for (let i = 0; i < 1000; i++) yield Buffer.alloc(65536) })())
  await t.rejects(zfs2.receive('tank/i/x', big), InvalidStreamError)

  const broken = new Readable({ read() { this.destroy(new Error('upstream cut')) } })
  await t.rejects(zfs.receive('tank/i/x', broken), /upstream cut|exit code 9|ZfsCommandError/)
})

t.test('a stream can be piped and awaited with pipeline', async (t) => {
  const bin = fakeBin(t.testdir(), `process.stdout.write('x'.repeat(10))`)
  const child = createZfs(createZfsRunner({ zfsBin: bin })).send('tank/x@s')
  const chunks: Buffer[] = []
  await pipeline(child.stdout!, async function* (src) { for await (const c of src) chunks.push(c as Buffer) })
  await child.done
  t.equal(Buffer.concat(chunks).toString(), 'x'.repeat(10))
})
