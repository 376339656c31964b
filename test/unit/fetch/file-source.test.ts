/**
 * Item 14: file:// sources are opened first and then checked by what the
 * descriptor really is (/proc/self/fd), and read from that descriptor, so a
 * symlink swapped between the check and the read cannot lead outside the
 * file-sources directory.
 */
import t from 'tap'
import { mkdirSync, readFileSync, renameSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { openImageSource } from '../../../src/agent/import/sources.js'

async function drain(body: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const c of body) parts.push(c)
  return Buffer.concat(parts)
}

function layout(t: { testdir(): string }) {
  const root = t.testdir()
  const dir = join(root, 'sources')
  mkdirSync(dir)
  const inside = join(dir, 'inside.img')
  const outside = join(root, 'secret')
  writeFileSync(inside, 'INSIDE-'.repeat(1000))
  writeFileSync(outside, 'SECRET-'.repeat(1000))
  return { root, dir, inside, outside, insideBytes: readFileSync(inside), outsideBytes: readFileSync(outside) }
}

const open = (path: string, dir: string) => openImageSource(pathToFileURL(path), { signal: new AbortController().signal, idleTimeoutMs: 1000, fileSources: dir })

t.test('item 14: a symlink inside the directory that points outside is refused', async (t) => {
  const l = layout(t)
  const link = join(l.dir, 'link.img')
  symlinkSync(l.outside, link)
  await t.rejects(open(link, l.dir), { name: 'InvalidParamsError', message: /leads outside the file-sources directory/ })
  // A parent-directory symlink too.
  symlinkSync(join(l.outside, '..'), join(l.dir, 'up'))
  await t.rejects(open(join(l.dir, 'up', 'secret'), l.dir), { name: 'InvalidParamsError', message: /leads outside/ })
  const ok = await open(l.inside, l.dir)
  t.same(await drain(ok.body), l.insideBytes, 'a file inside is read')
  t.equal(ok.size, l.insideBytes.length)
})

/**
 * The race the old code lost: realpath() gave a path through a real
 * directory, and the file was opened by that path later; replacing the
 * directory by a symlink in between made the open land outside.
 */
function nested(l: ReturnType<typeof layout>) {
  const sub = join(l.dir, 'sub')
  mkdirSync(sub)
  writeFileSync(join(sub, 'disk.img'), l.insideBytes)
  const elsewhere = join(l.root, 'elsewhere')
  mkdirSync(elsewhere)
  writeFileSync(join(elsewhere, 'disk.img'), l.outsideBytes)
  return { sub, elsewhere, file: join(sub, 'disk.img') }
}

t.test('item 14: the bytes come from the descriptor that was checked, not from the path opened again later', async (t) => {
  const l = layout(t)
  const n = nested(l)
  const src = await open(n.file, l.dir)
  // After the check, before a single byte is read: the directory becomes a symlink to outside.
  renameSync(n.sub, join(l.dir, 'sub-old'))
  symlinkSync(n.elsewhere, n.sub)
  const got = await drain(src.body)
  t.same(got, l.insideBytes, 'the file that was checked is the file that was read')
  t.notOk(got.includes(Buffer.from('SECRET')), 'nothing of the outside file')
})

t.test('item 14: swapping a directory for a symlink while sources are opened never yields the outside file', async (t) => {
  const l = layout(t)
  const n = nested(l)
  // A separate process swaps dir/sub between the real directory and a symlink to outside, as fast as it can.
  const flipper = join(l.root, 'flip.sh')
  writeFileSync(flipper, `cd '${l.dir}' || exit 1; while :; do mv sub held && ln -s '${n.elsewhere}' sub; rm sub && mv held sub; done\n`)
  // Its own process group, all killed and waited for: killing only sh left an mv or ln
  // running that made an entry while tap removed the test directory (ENOTEMPTY, once).
  const child = spawn('sh', [flipper], { stdio: 'ignore', detached: true })
  const exited = once(child, 'exit')
  const stop = async () => {
    try { process.kill(-child.pid!, 'SIGKILL') } catch { /* already gone */ }
    await exited
  }
  t.teardown(stop)
  let read = 0
  let refused = 0
  for (let i = 0; i < 300; i++) {
    try {
      const src = await open(n.file, l.dir)
      const got = await drain(src.body)
      if (got.includes(Buffer.from('SECRET'))) t.fail(`attempt ${i}: read the outside file`)
      else if (!got.equals(l.insideBytes)) t.fail(`attempt ${i}: read something that is not the inside file`)
      read++
    } catch (e) {
      // Refused as outside, or caught between the two renames (no such file): neither reads outside.
      if (!/leads outside|ENOENT/.test((e as Error).message)) throw e
      refused++
    }
  }
  await stop()
  t.equal(read + refused, 300, `read ${read}, refused ${refused}`)
})

t.test('item 14: a FIFO or a directory is refused without hanging', async (t) => {
  const l = layout(t)
  const fifo = join(l.dir, 'fifo')
  execFileSync('mkfifo', [fifo])
  await t.rejects(open(fifo, l.dir), { message: /not a regular file/ })
  mkdirSync(join(l.dir, 'sub'))
  await t.rejects(open(join(l.dir, 'sub'), l.dir), { message: /not a regular file|EISDIR/ })
  unlinkSync(fifo)
})

t.test('item 14: file:// is refused when no directory is configured', async (t) => {
  const l = layout(t)
  await t.rejects(openImageSource(pathToFileURL(l.inside), { signal: new AbortController().signal, idleTimeoutMs: 1000 }), { message: /outside the file-sources directory/ })
})
