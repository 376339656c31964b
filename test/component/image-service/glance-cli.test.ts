// A real OpenStack client (python-glanceclient's `glance` CLI; Debian package
// python3-glanceclient) against the Glance API on a loopback port. Missing
// CLI is a failure, not a skip: CI installs it.
import t from 'tap'
import { execFile, spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { getJson, startTestService, tempDir } from '../../helpers/image-service.js'

interface Run { code: number; stdout: string; stderr: string }

/** `| key | value |` rows of a glance table (continuation rows are appended). */
function parseShow(out: string): Record<string, string> {
  const rows: Record<string, string> = {}
  let last = ''
  for (const line of out.split('\n')) {
    const m = /^\|\s*(\S*)\s*\|\s*(.*?)\s*\|$/.exec(line)
    if (!m) continue
    const [, k = '', v = ''] = m
    if (k === 'Property') continue
    if (k === '') rows[last] += v
    else rows[(last = k)] = v
  }
  return rows
}

/** ID → Name rows of `glance image-list`. */
function parseList(out: string): Map<string, string> {
  const rows = new Map<string, string>()
  for (const line of out.split('\n')) {
    const m = /^\|\s*([0-9a-f-]{36})\s*\|\s*(.*?)\s*\|/.exec(line)
    if (m) rows.set(m[1] as string, m[2] as string)
  }
  return rows
}

t.test('glance CLI: create, list, show, update, download, tags, delete', { timeout: 180_000 }, async (t) => {
  const probe = spawnSync('glance', ['--version'], { encoding: 'utf8', timeout: 30_000 })
  if (probe.error) {
    t.fail(`the glance CLI is required for this test and was not found (${probe.error.message}); install it with: apt-get install -y python3-glanceclient`)
    return
  }
  t.pass(`glance ${(probe.stdout || probe.stderr).trim()}`)

  const { native, glance } = await startTestService(t)
  const work = tempDir(t, 'mis-glance-cli-')
  // A fresh HOME: the client caches the server's schemas in ~/.glanceclient.
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work, LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8' }
  const cli = (...args: string[]): Promise<Run> => new Promise((resolve) => {
    execFile('glance', ['--os-image-url', glance, '--os-auth-token', 'not-checked', ...args], { env, timeout: 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr })
    })
  })
  const ok = (r: Run, what: string): void => {
    t.equal(r.code, 0, what, { stderr: r.stderr, stdout: r.stdout })
  }

  const data = randomBytes(300_000)
  const file = join(work, 'disk.raw')
  writeFileSync(file, data)

  const created = await cli('image-create', '--name', 't', '--disk-format', 'raw', '--container-format', 'bare', '--property', 'os_distro=test', '--file', file)
  ok(created, 'image-create --file')
  const img = parseShow(created.stdout)
  const id = img.id ?? ''
  t.match(id, /^[0-9a-f-]{36}$/, 'id printed')
  t.equal(img.status, 'active')
  t.equal(img.size, String(data.length))
  t.equal(img.checksum, createHash('md5').update(data).digest('hex'))
  t.equal(img.os_hash_value, createHash('sha512').update(data).digest('hex'))
  t.equal(img.os_distro, 'test')

  const second = await cli('image-create', '--name', 'u', '--disk-format', 'qcow2', '--container-format', 'docker', '--file', file)
  ok(second, 'second image-create')
  const id2 = parseShow(second.stdout).id ?? ''

  const list = await cli('image-list')
  ok(list, 'image-list')
  t.same([...parseList(list.stdout)], [[id, 't'], [id2, 'u']], 'both listed, sorted by name')
  const paged = await cli('image-list', '--page-size', '1')
  ok(paged, 'image-list --page-size 1 (follows next links)')
  t.equal(parseList(paged.stdout).size, 2)
  const filtered = await cli('image-list', '--property-filter', 'os_distro=test')
  t.same([...parseList(filtered.stdout).keys()], [id], 'property filter')

  const show = await cli('image-show', id)
  ok(show, 'image-show')
  t.equal(parseShow(show.stdout).name, 't')

  const updated = await cli('image-update', '--name', 't2', '--min-disk', '2', '--property', 'color=blue', id)
  ok(updated, 'image-update (json-patch)')
  t.match(parseShow(updated.stdout), { name: 't2', min_disk: '2', color: 'blue' })
  const removed = await cli('image-update', '--remove-property', 'color', id)
  ok(removed, 'image-update --remove-property')
  t.notOk('color' in parseShow(removed.stdout))

  ok(await cli('image-tag-update', id, 'golden'), 'image-tag-update')
  t.match(parseShow((await cli('image-show', id)).stdout).tags, /golden/)
  ok(await cli('image-tag-delete', id, 'golden'), 'image-tag-delete')

  const out = join(work, 'out.raw')
  const dl = await cli('image-download', '--file', out, id)
  ok(dl, 'image-download (the client checks os_hash_value)')
  t.ok(readFileSync(out).equals(data), 'downloaded bytes identical')

  // The native API sees what the CLI made.
  const n = await getJson(`${native}/images/${id}`)
  t.equal(n.body.status, 'complete')
  t.equal(n.body.name, 't2')
  t.equal(n.body.sha256, createHash('sha256').update(data).digest('hex'))
  t.equal((await getJson(`${native}/images/${id2}`)).body.type, 'container')

  ok(await cli('image-delete', id), 'image-delete')
  const after = await cli('image-list')
  t.same([...parseList(after.stdout).keys()], [id2], 'deleted image gone')
  const missing = await cli('image-show', id)
  t.not(missing.code, 0, 'image-show of a deleted image fails')
  t.match(missing.stderr + missing.stdout, /No image|404|not found/i)
})
