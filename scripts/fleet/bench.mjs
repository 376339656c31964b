#!/usr/bin/env node
// Cluster-mode figures on real engines (etcd, Ceph RGW, nginx on loopback), printed as a table:
//   1. pulls per second one image-service replica serves (etcd records, S3 blobs), next to
//      the same object read straight from RGW with the same concurrency (the limit it sits on);
//   2. origin bytes for N concurrent pulls of one image, through the nginx cache and without.
// Usage (after `npm run build`): node scripts/fleet/bench.mjs [clients=8] [seconds=10] [MiB=64]
import { spawn, spawnSync } from 'node:child_process'
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const [clients, seconds, mib] = [Number(process.argv[2] ?? 8), Number(process.argv[3] ?? 10), Number(process.argv[4] ?? 64)]
const dir = mkdtempSync(join(tmpdir(), 'mistify-fleet-bench-'))
const children = []
const cleanup = () => {
  for (const c of children) c.kill('SIGKILL')
  spawnSync('bash', [join(root, 'scripts/fleet/nginx.sh'), 'down', join(dir, 'nginx')], { stdio: 'ignore' })
  spawnSync('bash', [join(root, 'scripts/fleet/engines.sh'), 'down', join(dir, 'engines')], { stdio: 'inherit' })
  rmSync(dir, { recursive: true, force: true })
}
process.on('exit', cleanup)
for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => process.exit(130))
const log = (m) => console.error(`[fleet-bench] ${m}`)

function sh(script, args, env = {}) {
  const r = spawnSync('bash', [join(root, 'scripts/fleet', script), ...args], { encoding: 'utf8', env: { ...process.env, ...env } })
  if (r.status !== 0) throw new Error(`${script} ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}
const freePort = () => new Promise((res) => { const s = createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)) }) })

log('engines up')
sh('engines.sh', ['up', join(dir, 'engines')])
const env = Object.fromEntries(readFileSync(join(dir, 'engines', 'engines.env'), 'utf8').split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]))
Object.assign(process.env, env)
const etcd = `etcd://${env.ETCD_ENDPOINTS.split(',').map((e) => e.replace(/^https?:\/\//, '')).join(',')}/bench-${randomUUID()}`
const bucket = `bench-${randomBytes(4).toString('hex')}`
const blobsUrl = `s3://${bucket}?endpoint=${encodeURIComponent(env.S3_ENDPOINT)}&region=us-east-1`

async function replica() {
  const [port, glance] = [await freePort(), await freePort()]
  const c = spawn(process.execPath, [join(root, 'dist/src/image-service/main.js'), '--port', String(port), '--glance-port', String(glance),
    '--data-dir', mkdtempSync(join(dir, 'r-')), '--metadata', etcd, '--blobs', blobsUrl, '--download-redirect', 'on'], { stdio: ['ignore', 'ignore', 'inherit'] })
  children.push(c)
  const url = `http://127.0.0.1:${port}`
  for (let i = 0; i < 600; i++) {
    if (await fetch(`${url}/healthz`).then((r) => r.ok, () => false)) return url
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error('replica did not come up')
}

const drain = async (r) => { let n = 0; for await (const c of r.body) n += c.length; return n }
// Once more on a failure: the pool may hand out a keep-alive socket the replica closed while nginx started.
const metrics = (url) => fetch(`${url}/metrics`).catch(() => fetch(`${url}/metrics`))
const readBytes = async (url) => Number(/^image_service_blob_read_bytes_total\{backend="s3"\} (\d+)$/m.exec(await (await metrics(url)).text())?.[1] ?? 0)

/** `clients` closed loops of `pull` for `seconds`: completed pulls per second and MB/s. */
async function closedLoop(pull) {
  const end = Date.now() + seconds * 1000
  let pulls = 0
  let bytes = 0
  const t0 = Date.now()
  await Promise.all(Array.from({ length: clients }, async () => {
    // Not `bytes += await pull()`: that reads `bytes` before the await, and concurrent clients' sums would be lost.
    while (Date.now() < end) { const n = await pull(); bytes += n; pulls++ }
  }))
  const s = (Date.now() - t0) / 1000
  return { perSecond: pulls / s, mbps: bytes / s / 1e6 }
}

const r1 = await replica()
const r2 = await replica()
log(`replicas ${r1} ${r2}; uploading ${mib} MiB`)
const data = randomBytes(mib * 1024 * 1024)
const sha = createHash('sha256').update(data).digest('hex')
const made = await (await fetch(`${r1}/images`, { method: 'PUT', headers: { 'Content-Type': 'application/octet-stream', 'X-Image-Type': 'kvm' }, body: data })).json()
if (made.status !== 'complete' || made.sha256 !== sha) throw new Error(`upload: ${JSON.stringify(made)}`)

// The object as the replica stores it, read straight from RGW by the same SDK the replica uses.
const { S3Client, GetObjectCommand, ListObjectsV2Command } = await import('@aws-sdk/client-s3')
const s3 = new S3Client({ endpoint: env.S3_ENDPOINT, region: 'us-east-1', forcePathStyle: true })
const key = (await s3.send(new ListObjectsV2Command({ Bucket: bucket }))).Contents.find((o) => o.Key.includes(made.id)).Key

log(`pulls: ${clients} clients, ${seconds} s each`)
const raw = await closedLoop(async () => { let n = 0; for await (const c of (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body) n += c.length; return n })
const served = await closedLoop(async () => drain(await fetch(`${r1}/blobs/sha256/${sha}`)))

log(`origin bytes: ${clients} concurrent pulls through nginx, then straight to the replicas`)
const nginxPort = await freePort()
sh('nginx.sh', ['up', join(dir, 'nginx'), String(nginxPort), r1.slice(7), r2.slice(7)])
const origin = async () => (await readBytes(r1)) + (await readBytes(r2))
let before = await origin()
await Promise.all(Array.from({ length: clients }, async () => drain(await fetch(`http://127.0.0.1:${nginxPort}/images/${made.id}/download`))))
const cached = (await origin()) - before
before = await origin()
await Promise.all(Array.from({ length: clients }, async (_, i) => drain(await fetch(`${[r1, r2][i % 2]}/images/${made.id}/download`))))
const direct = (await origin()) - before

const f = (n) => n.toFixed(1)
console.log(`| figure (${clients} concurrent clients, ${mib} MiB image) | image service | limit / baseline | ratio |`)
console.log('|---|---|---|---|')
console.log(`| pulls/s, one replica (etcd + S3), ${seconds} s closed loop | ${f(served.perSecond)} pulls/s (${f(served.mbps)} MB/s) | ${f(raw.perSecond)} pulls/s (${f(raw.mbps)} MB/s) straight from RGW | ${(raw.perSecond / served.perSecond).toFixed(2)}× |`)
console.log(`| origin bytes, ${clients} agents' downloads | ${cached} B through nginx (${(cached / data.length).toFixed(2)} transfers) | ${direct} B straight to the replicas (${(direct / data.length).toFixed(2)} transfers) | ${(direct / cached).toFixed(1)}× fewer |`)
process.exit(0) // the SDK's and fetch's keep-alive sockets would hold the process (and the engines) open
