/**
 * The compiled CLI (dist/src/cli/main.js) against a small fake JSON-RPC
 * server and against the real app over fakes (TCP and unix socket).
 */
import t from 'tap'
import http from 'node:http'
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { AddressInfo } from 'node:net'
import { startFakeAgent, STREAM, IMAGE, type Teardown } from './fake-agent.js'
import { listen } from '../../../src/agent/ops/listen.js'

const CLI = join(dirname(fileURLToPath(import.meta.url)), '../../../src/cli/main.js')

interface Run { code: number; stdout: Buffer; stderr: string }
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { encoding: 'buffer', env: { PATH: process.env.PATH ?? '', ...env }, maxBuffer: 1 << 24 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 99) : 0, stdout, stderr: stderr.toString() })
    })
  })
}

/** A JSON-RPC server that records requests and answers with `reply`. */
async function fakeRpc(t: Teardown, reply: (body: any, req: http.IncomingMessage) => { status?: number; body: string }) {
  const seen: Array<{ body: any; headers: http.IncomingHttpHeaders; url: string }> = []
  const server = http.createServer(async (req, res) => {
    let text = ''
    for await (const c of req) text += c
    const body = text ? JSON.parse(text) : undefined
    seen.push({ body, headers: req.headers, url: req.url ?? '' })
    const r = reply(body, req)
    res.writeHead(r.status ?? 200, { 'Content-Type': r.status && r.status !== 200 ? 'text/plain' : 'application/json' })
    res.end(r.body)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
}

t.test('help and usage errors', async (t) => {
  const h = await cli(['--help'])
  t.equal(h.code, 0)
  t.match(h.stdout.toString(), /usage: mistify-image/)
  t.match(h.stdout.toString(), /snapshot rollback ID \[--destroy-more-recent\] \[-r\]/)
  t.equal((await cli([])).code, 2)
  const u = await cli(['frobnicate'])
  t.equal(u.code, 2)
  t.match(u.stderr, /unknown command "frobnicate"/)
  t.equal((await cli(['images', 'show'])).code, 2)
  t.match((await cli(['--bogus'])).stderr, /unknown option --bogus/)
  t.match((await cli(['--url'])).stderr, /--url needs a value/)
})

t.test('the JSON-RPC 2.0 envelope, token header, and error answers', async (t) => {
  const s = await fakeRpc(t, (b) => {
    if (b.method === 'DeleteImage') return { body: JSON.stringify({ jsonrpc: '2.0', error: { code: -32603, message: 'internal error', data: { ref: 'r-1' } }, id: b.id }) }
    if (b.method === 'GetImage') return { status: 500, body: 'boom' }
    return { body: JSON.stringify({ jsonrpc: '2.0', result: { images: [IMAGE] }, id: b.id }) }
  })
  const r = await cli(['--url', s.url, '--token', 'tok', 'images', 'fetch', 'abc'])
  t.equal(r.code, 0, r.stderr)
  t.match(s.seen[0], { url: '/_mistify_RPC_', headers: { authorization: 'Bearer tok', 'content-type': 'application/json' }, body: { jsonrpc: '2.0', method: 'RequestImage', params: { id: 'abc' }, id: Number } })
  t.match(r.stdout.toString(), /^ID\s+STATUS\s+SIZE_MIB\s+SNAPSHOT\nimg1\s+complete\s+8\s+tank\/images\/img1@base\n$/)
  t.equal(r.stderr, '', 'no progress when stderr is not a TTY')
  const e = await cli(['--url', s.url, 'images', 'delete', 'abc'])
  t.equal(e.code, 1)
  t.match(e.stderr, /mistify-image: DeleteImage: internal error \(ref r-1\)/)
  const h = await cli(['--url', s.url, 'images', 'show', 'abc'])
  t.equal(h.code, 1)
  t.match(h.stderr, /agent answered HTTP 500: boom/)
  const j = await cli(['--url', s.url, '--json', 'images', 'delete', 'x'])
  t.same(JSON.parse(j.stderr), { error: 'DeleteImage: internal error (ref r-1)', exitCode: 1 })
  t.notOk(s.seen.at(-1)!.headers.authorization, 'no token, no header')
})

t.test('unreachable agent: exit 3', async (t) => {
  const srv = http.createServer()
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  const port = (srv.address() as AddressInfo).port
  srv.close()
  const r = await cli(['--url', `http://127.0.0.1:${port}`, 'images', 'list'])
  t.equal(r.code, 3)
  t.match(r.stderr, /request to the agent at http:\/\/127\.0\.0\.1:\d+ failed: ECONNREFUSED/)
})

t.test('against the app: every RPC command with its params', async (t) => {
  const a = await startFakeAgent(t)
  const env = { MISTIFY_URL: a.url }
  const list = await cli(['--json', 'images', 'list'], env)
  t.same(JSON.parse(list.stdout.toString()), { images: [IMAGE] })
  const cases: Array<[string[], string, object]> = [
    [['images', 'show', 'img1'], 'GetImage', { id: 'img1' }],
    [['images', 'fetch', 'img2'], 'RequestImage', { id: 'img2' }],
    [['images', 'fetch', 'img3', '--source', 'file:///srv/x.img', '--format=raw'], 'RequestImage', { id: 'img3', source: 'file:///srv/x.img', format: 'raw' }],
    [['images', 'delete', 'img1'], 'DeleteImage', { id: 'img1' }],
    [['clone', 'img1', 'guests/g1/disk-0'], 'CloneImage', { id: 'img1', dest: 'guests/g1/disk-0' }],
    [['snapshot', 'create', 'guests/g1', 's1', '-r'], 'CreateSnapshot', { id: 'guests/g1', dest: 's1', recursive: true }],
    [['snapshot', 'list'], 'ListSnapshots', {}],
    [['snapshot', 'list', 'guests/g1'], 'ListSnapshots', { id: 'guests/g1' }],
    [['snapshot', 'rollback', 'guests/g1@s1', '--destroy-more-recent'], 'RollbackSnapshot', { id: 'guests/g1@s1', recursive: false, destroyMoreRecent: true }],
    [['snapshot', 'delete', '-r', 'guests/g1@s1'], 'DeleteSnapshot', { id: 'guests/g1@s1', recursive: true }],
  ]
  for (const [args, method, params] of cases) {
    const r = await cli(args, env)
    t.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
    t.match(a.calls.at(-1), { method, params }, args.join(' '))
  }
  const clone = await cli(['clone', 'img1', 'guests/g1/disk-0'], env)
  t.match(clone.stdout.toString(), /^VOLUME\s+SIZE_MIB\s+DEVICE\ntank\/guests\/g1\/disk-0\s+8\s+\/dev\/zvol\/tank\/guests\/g1\/disk-0\n$/)
  const nf = await cli(['images', 'show', 'nope'], env)
  t.equal(nf.code, 1)
  t.match(nf.stderr, /GetImage: not found/)
})

t.test('download: to a file, to stdout, recursive, errors, a cut stream', async (t) => {
  const a = await startFakeAgent(t)
  const env = { MISTIFY_URL: a.url }
  const dir = mkdtempSync(join(tmpdir(), 'mistify-cli-'))
  const file = join(dir, 'g1.zfs')
  const r = await cli(['download', 'guests/g1@s1', '-o', file, '-r'], env)
  t.equal(r.code, 0, r.stderr)
  t.ok(readFileSync(file).equals(STREAM), 'the file holds the stream')
  t.match(r.stdout.toString(), /tank\/guests\/g1@s1: 307200 bytes written to /)
  t.match(a.calls.at(-1), { method: 'download', params: { id: 'guests/g1@s1', recursive: true } })
  const out = await cli(['download', 'guests/g1@s1', '-o', '-'], env)
  t.equal(out.code, 0)
  t.ok(out.stdout.equals(STREAM), 'stdout holds the stream')
  t.match(a.calls.at(-1), { params: { recursive: false } })
  const j = await cli(['--json', 'download', 'guests/g1@s1', '-o', file], env)
  t.same(JSON.parse(j.stdout.toString()), { snapshot: 'tank/guests/g1@s1', bytes: STREAM.length, file })
  const nf = await cli(['download', 'nosnap', '-o', join(dir, 'x.zfs')], env)
  t.equal(nf.code, 1)
  t.match(nf.stderr, /agent answered HTTP 404: not found/)
  t.notOk(existsSync(join(dir, 'x.zfs')) || existsSync(join(dir, 'x.zfs.part')), 'no file left on error')
  a.cutNextDownload = true
  const cut = await cli(['download', 'guests/g1@s1', '-o', join(dir, 'cut.zfs')], env)
  t.equal(cut.code, 3, cut.stderr)
  t.match(cut.stderr, /download of guests\/g1@s1 cut after 102400 bytes/)
  t.notOk(existsSync(join(dir, 'cut.zfs')) || existsSync(join(dir, 'cut.zfs.part')), 'a cut stream leaves no file')
})

t.test('token and unix socket', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mistify-cli-sock-'))
  const sock = join(dir, 'a.sock')
  const a = await startFakeAgent(t, { token: 'tok123' }, { listen: (s) => listen(s, { socket: sock }) })
  const no = await cli(['--socket', sock, 'images', 'list'])
  t.equal(no.code, 1)
  t.match(no.stderr, /unauthorized: the agent needs a token \(--token or MISTIFY_TOKEN\)/)
  const yes = await cli(['--socket', sock, '--token', 'tok123', 'images', 'list'])
  t.equal(yes.code, 0, yes.stderr)
  t.match(yes.stdout.toString(), /img1/)
  const env = await cli(['images', 'list'], { MISTIFY_SOCKET: sock, MISTIFY_TOKEN: 'tok123' })
  t.equal(env.code, 0, env.stderr)
  const dl = await cli(['--socket', sock, '--token', 'tok123', 'download', 'guests/g1@s1', '-o', '-'])
  t.ok(dl.stdout.equals(STREAM))
  for (const l of a.logs) t.notMatch(l, 'tok123')
})

t.test('item 9: --token-file (and MISTIFY_TOKEN_FILE): the token off the command line', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mistify-cli-tok-'))
  const file = join(dir, 'token')
  writeFileSync(file, 'tok123\n')
  const a = await startFakeAgent(t, { token: 'tok123' })
  const yes = await cli(['--url', a.url, '--token-file', file, 'images', 'list'])
  t.equal(yes.code, 0, yes.stderr)
  t.match(yes.stdout.toString(), /img1/)
  const env = await cli(['--url', a.url, 'images', 'list'], { MISTIFY_TOKEN_FILE: file })
  t.equal(env.code, 0, env.stderr)
  const flagWins = await cli(['--url', a.url, '--token-file', file, 'images', 'list'], { MISTIFY_TOKEN: 'wrong' })
  t.equal(flagWins.code, 0, 'the flag beats MISTIFY_TOKEN')
  const both = await cli(['--url', a.url, '--token', 'x', '--token-file', file, 'images', 'list'])
  t.equal(both.code, 2)
  t.match(both.stderr, /--token and --token-file: give one of them/)
  writeFileSync(join(dir, 'bad'), 'a b\n')
  const bad = await cli(['--url', a.url, '--token-file', join(dir, 'bad'), 'images', 'list'])
  t.equal(bad.code, 2)
  t.match(bad.stderr, /expected one token on one line/)
  t.same(a.calls, [{ method: 'ListImages', params: {} }, { method: 'ListImages', params: {} }, { method: 'ListImages', params: {} }], 'refused usages sent nothing')
})

t.test('flags through node:util parseArgs: inline values, short groups, the terminator', async (t) => {
  const s = await fakeRpc(t, (b) => ({ body: JSON.stringify({ jsonrpc: '2.0', result: { snapshots: [] }, id: b.id }) }))
  const r = await cli([`--url=${s.url}`, 'snapshot', 'delete', '-r', '--', '-odd@name'])
  t.equal(r.code, 0, r.stderr)
  t.match(s.seen.at(-1)!.body, { method: 'DeleteSnapshot', params: { id: '-odd@name', recursive: true } }, 'after --, a dash is an argument')
  const h = await cli(['-rh'])
  t.equal(h.code, 0, 'a short group: -r -h')
  t.match(h.stdout.toString(), /^usage: mistify-image/)
  t.match((await cli(['-rx'])).stderr, /^mistify-image: unknown option -rx\n$/)
  t.match((await cli(['-o'])).stderr, /^mistify-image: -o needs a value\n$/)
})

t.test('an answer that is not this call\'s: exit 3 at once (the JSON-RPC client would wait for ever)', async (t) => {
  const s = await fakeRpc(t, (b) => {
    if (b.method === 'GetImage') return { body: 'not json' }
    return { body: JSON.stringify({ jsonrpc: '2.0', result: { images: [] }, id: 'other' }) }
  })
  const wrong = await cli(['--url', s.url, 'images', 'list'])
  t.equal(wrong.code, 3)
  t.match(wrong.stderr, /the agent's answer is not the answer to this call/)
  const bad = await cli(['--url', s.url, 'images', 'show', 'x'])
  t.equal(bad.code, 3)
  t.match(bad.stderr, /the agent's answer is not JSON: not json/)
})
