// The nginx example shipped for operators (systemd/nginx-image-cache.conf) is one nginx accepts.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')

t.test('systemd/nginx-image-cache.conf passes nginx -t', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nginx-example-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const example = readFileSync(join(ROOT, 'systemd/nginx-image-cache.conf'), 'utf8')
  t.match(example, /proxy_cache_key \$uri\$slice_range;/, 'cached in slices, as the tests run it')
  writeFileSync(join(dir, 'inc.conf'), example.replace('/var/cache/nginx/mistify', join(dir, 'cache')))
  writeFileSync(join(dir, 'nginx.conf'), `pid ${dir}/nginx.pid;\nerror_log ${dir}/error.log;\nevents {}\nhttp {\ninclude ${dir}/inc.conf;\n}\n`)
  const r = spawnSync('nginx', ['-t', '-p', dir, '-c', join(dir, 'nginx.conf')], { encoding: 'utf8' })
  t.equal(r.status, 0, r.stderr)
  t.match(r.stderr, /test is successful/)
})
