#!/usr/bin/env node
/**
 * mistify-image: a command line for the agent, over its JSON-RPC 2.0
 * endpoint and /snapshots/download (TCP or a unix socket, optional bearer
 * token). Downloads stream to a file or stdout, never buffered.
 *
 * Exit codes: 0 ok; 1 the agent answered with an error; 2 usage; 3 the agent
 * could not be reached or the transfer broke.
 */
import http from 'node:http'
import https from 'node:https'
import { createWriteStream, readFileSync, renameSync, rmSync } from 'node:fs'
import { pipeline } from 'node:stream/promises'
import { Transform, type Writable } from 'node:stream'

export const DEFAULT_URL = 'http://127.0.0.1:19999'
const RPC_PATH = '/_mistify_RPC_'
const DOWNLOAD_PATH = '/snapshots/download'

const HELP = `usage: mistify-image [--url URL] [--socket PATH] [--token TOKEN | --token-file FILE] [--json] COMMAND

commands:
  images list                      list images
  images show ID                   one image
  images fetch ID [--source URL --sha256 HEX] [--format zfs|raw|qcow2]
                                   fetch an image (default from the image service; waits until imported)
  images delete ID                 delete an image
  clone ID DEST                    clone an image into a guest disk (DEST e.g. guests/g1/disk-0)
  snapshot create ID NAME [-r]     snapshot dataset ID as ID@NAME (-r: with descendants)
  snapshot list [ID]               snapshots (under ID)
  snapshot rollback ID [--destroy-more-recent] [-r]
  snapshot delete ID [-r]
  download SNAPSHOT [-o FILE|-] [-r]
                                   stream zfs send of SNAPSHOT to FILE (or stdout)

options:
  --url URL        agent URL (env MISTIFY_URL; default ${DEFAULT_URL})
  --socket PATH    talk to the agent on a unix socket (env MISTIFY_SOCKET)
  --token TOKEN    bearer token (env MISTIFY_TOKEN; visible in ps: prefer --token-file)
  --token-file FILE  read the bearer token from FILE (env MISTIFY_TOKEN_FILE)
  --json           machine-readable output (the RPC result as JSON)
  -h, --help       this help

exit codes: 0 ok, 1 the agent refused, 2 usage, 3 agent unreachable or transfer cut
`

class UsageError extends Error {}
/** The agent answered with an error. */
class AgentRefused extends Error {}
/** Could not reach the agent, or the stream broke. */
class TransportError extends Error {}

export interface Options {
  url: string
  socket: string | undefined
  token: string | undefined
  json: boolean
  help: boolean
  recursive: boolean
  destroyMoreRecent: boolean
  output: string | undefined
  source: string | undefined
  format: string | undefined
  sha256: string | undefined
  args: string[]
}

export function parseArgs(argv: readonly string[], env: NodeJS.ProcessEnv): Options {
  const o: Options = {
    url: env.MISTIFY_URL || DEFAULT_URL, socket: env.MISTIFY_SOCKET || undefined, token: env.MISTIFY_TOKEN || undefined,
    json: false, help: false, recursive: false, destroyMoreRecent: false, output: undefined, source: undefined, format: undefined, sha256: undefined, args: [],
  }
  let flagToken: string | undefined
  let flagTokenFile: string | undefined
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    const eq = a.startsWith('--') ? a.indexOf('=') : -1
    const flag = eq > 0 ? a.slice(0, eq) : a
    const value = () => {
      if (eq > 0) return a.slice(eq + 1)
      const v = argv[++i]
      if (v === undefined) throw new UsageError(`${flag} needs a value`)
      return v
    }
    switch (flag) {
      case '--url': o.url = value(); break
      case '--socket': o.socket = value(); break
      case '--token': flagToken = value(); break
      case '--token-file': flagTokenFile = value(); break
      case '--json': o.json = true; break
      case '-h': case '--help': o.help = true; break
      case '-r': case '--recursive': o.recursive = true; break
      case '--destroy-more-recent': o.destroyMoreRecent = true; break
      case '-o': case '--output': o.output = value(); break
      case '--source': o.source = value(); break
      case '--format': o.format = value(); break
      case '--sha256': o.sha256 = value(); break
      case '--': o.args.push(...argv.slice(i + 1)); i = argv.length; break
      default:
        if (a.startsWith('-') && a !== '-') throw new UsageError(`unknown option ${a}`)
        o.args.push(a)
    }
  }
  try { new URL(o.url) } catch { throw new UsageError(`--url: not a URL: ${o.url}`) }
  // Flags beat the environment; within one of them, a token and a token file are one too many.
  if (flagToken !== undefined && flagTokenFile !== undefined) throw new UsageError('--token and --token-file: give one of them')
  if (flagToken !== undefined) o.token = flagToken
  else if (flagTokenFile !== undefined) o.token = readTokenFile(flagTokenFile)
  else if (env.MISTIFY_TOKEN_FILE) {
    if (env.MISTIFY_TOKEN) throw new UsageError('MISTIFY_TOKEN and MISTIFY_TOKEN_FILE: set one of them')
    o.token = readTokenFile(env.MISTIFY_TOKEN_FILE)
  }
  return o
}

/** As the agent reads its --token-file: one trailing newline dropped, empty or whitespace refused. */
function readTokenFile(path: string): string {
  let text: string
  try { text = readFileSync(path, 'utf8') } catch (e) { throw new UsageError(`--token-file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`) }
  const token = text.replace(/\r?\n$/, '')
  if (token === '' || /\s/.test(token)) throw new UsageError(`--token-file ${path}: expected one token on one line`)
  return token
}

interface Reply { status: number; headers: http.IncomingHttpHeaders; res: http.IncomingMessage }

/** One HTTP request to the agent; resolves when the response head arrives. */
function request(o: Options, method: string, path: string, body?: string): Promise<Reply> {
  const base = new URL(o.url)
  const secure = base.protocol === 'https:'
  const headers: http.OutgoingHttpHeaders = { 'User-Agent': 'mistify-image' }
  if (o.token !== undefined) headers.Authorization = `Bearer ${o.token}`
  if (body !== undefined) { headers['Content-Type'] = 'application/json'; headers['Content-Length'] = Buffer.byteLength(body) }
  const fullPath = base.pathname.replace(/\/$/, '') + path
  const target: http.RequestOptions = o.socket !== undefined
    ? { socketPath: o.socket, path: fullPath, method, headers }
    : { hostname: base.hostname.replace(/^\[|\]$/g, ''), port: base.port || (secure ? 443 : 80), path: fullPath, method, headers }
  return new Promise((resolve, reject) => {
    const req = (secure && o.socket === undefined ? https : http).request(target, (res) => resolve({ status: res.statusCode ?? 0, headers: res.headers, res }))
    req.on('error', (e: NodeJS.ErrnoException) => reject(new TransportError(`request to the agent at ${o.socket ?? o.url} failed: ${e.code ?? e.message}`)))
    req.end(body)
  })
}

async function readText(res: http.IncomingMessage, limit = 1 << 20): Promise<string> {
  const chunks: Buffer[] = []
  let n = 0
  for await (const c of res) { n += (c as Buffer).length; if (n <= limit) chunks.push(c as Buffer) }
  return Buffer.concat(chunks).toString('utf8')
}

function httpError(status: number, text: string): Error {
  const t = text.trim()
  if (status === 401) return new AgentRefused('unauthorized: the agent needs a token (--token or MISTIFY_TOKEN)')
  return new AgentRefused(`agent answered HTTP ${status}${t ? `: ${t}` : ''}`)
}

let seq = 0
export async function rpc(o: Options, method: string, params: Record<string, unknown>): Promise<unknown> {
  const id = ++seq
  const r = await request(o, 'POST', RPC_PATH, JSON.stringify({ jsonrpc: '2.0', method, params, id }))
  const text = await readText(r.res).catch((e: Error) => { throw new TransportError(`reading the answer: ${e.message}`) })
  if (r.status !== 200) throw httpError(r.status, text)
  let env: { result?: unknown; error?: { code?: number; message?: string; data?: { ref?: string } } }
  try { env = JSON.parse(text) } catch { throw new TransportError(`the agent's answer is not JSON: ${text.slice(0, 200)}`) }
  if (env.error) {
    const ref = env.error.data?.ref ? ` (ref ${env.error.data.ref})` : ''
    throw new AgentRefused(`${method}: ${env.error.message ?? 'error'}${ref}`)
  }
  return env.result
}

// ---- output ----

type Row = Record<string, unknown>
function table(rows: readonly Row[], cols: ReadonlyArray<readonly [string, string]>): string {
  const cells = [cols.map(([, h]) => h), ...rows.map((r) => cols.map(([k]) => (r[k] === undefined || r[k] === null ? '' : String(r[k]))))]
  const widths = cols.map((_, i) => Math.max(...cells.map((c) => c[i]!.length)))
  return cells.map((c) => c.map((v, i) => (i === c.length - 1 ? v : v.padEnd(widths[i]!))).join('  ')).join('\n') + '\n'
}

const IMAGE_COLS = [['id', 'ID'], ['status', 'STATUS'], ['size', 'SIZE_MIB'], ['snapshot', 'SNAPSHOT']] as const
const SNAP_COLS = [['id', 'SNAPSHOT'], ['size', 'SIZE']] as const
const VOL_COLS = [['id', 'VOLUME'], ['size', 'SIZE_MIB'], ['device', 'DEVICE']] as const

function render(result: unknown): string {
  const r = (result ?? {}) as Record<string, unknown>
  if (Array.isArray(r.images)) return table(r.images as Row[], IMAGE_COLS)
  if (Array.isArray(r.snapshots)) return table(r.snapshots as Row[], SNAP_COLS)
  if (Array.isArray(r.volumes)) return table(r.volumes as Row[], VOL_COLS)
  return `${JSON.stringify(result, null, 2)}\n`
}

// ---- progress ----

function human(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++ }
  return `${i === 0 ? n : n.toFixed(1)} ${u[i]}`
}

interface Progress { update(text: string): void; done(): void }
function progress(enabled: boolean): Progress {
  if (!enabled) return { update() {}, done() {} }
  let last = 0
  return {
    update(text) {
      const now = Date.now()
      if (now - last < 100) return
      last = now
      process.stderr.write(`\r\x1b[K${text}`)
    },
    done() { process.stderr.write('\r\x1b[K') },
  }
}

const SPIN = '⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏'

async function withSpinner<T>(enabled: boolean, label: string, p: Promise<T>): Promise<T> {
  if (!enabled) return p
  const start = Date.now()
  let i = 0
  const tick = () => process.stderr.write(`\r\x1b[K${SPIN[i++ % SPIN.length]} ${label} ${((Date.now() - start) / 1000).toFixed(1)}s`)
  tick()
  const timer = setInterval(tick, 100)
  try { return await p } finally { clearInterval(timer); process.stderr.write('\r\x1b[K') }
}

// ---- commands ----

function need(args: readonly string[], n: number, usage: string): void {
  if (args.length !== n) throw new UsageError(`usage: mistify-image ${usage}`)
}

async function download(o: Options, snapshot: string, out: Writable, showProgress: boolean): Promise<{ bytes: number; snapshot: string }> {
  const q = new URLSearchParams({ id: snapshot })
  if (o.recursive) q.set('recursive', '1')
  const r = await request(o, 'GET', `${DOWNLOAD_PATH}?${q}`)
  if (r.status !== 200) throw httpError(r.status, await readText(r.res).catch(() => ''))
  const estimate = Number(r.headers['x-estimated-size'] ?? NaN)
  const bar = progress(showProgress)
  const start = Date.now()
  let bytes = 0
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length
      const secs = Math.max((Date.now() - start) / 1000, 0.001)
      const pct = Number.isFinite(estimate) && estimate > 0 ? ` (${Math.min(100, (bytes / estimate) * 100).toFixed(0)}% of ~${human(estimate)})` : ''
      bar.update(`${human(bytes)}${pct}  ${human(bytes / secs)}/s`)
      cb(null, chunk)
    },
  })
  try {
    await pipeline(r.res, counter, out)
  } catch (e) {
    throw new TransportError(`download of ${snapshot} cut after ${bytes} bytes: ${(e as Error).message}`)
  } finally {
    bar.done()
  }
  return { bytes, snapshot: String(r.headers['x-snapshot'] ?? snapshot) }
}

export async function run(o: Options, stdout: NodeJS.WriteStream = process.stdout): Promise<void> {
  const print = (result: unknown) => { stdout.write(o.json ? `${JSON.stringify(result)}\n` : render(result)) }
  const tty = process.stderr.isTTY === true && !o.json
  const [cmd, sub, ...rest] = o.args
  switch (cmd) {
    case 'images': {
      switch (sub) {
        case 'list': need(rest, 0, 'images list'); return print(await rpc(o, 'ListImages', {}))
        case 'show': need(rest, 1, 'images show ID'); return print(await rpc(o, 'GetImage', { id: rest[0] }))
        case 'fetch': {
          need(rest, 1, 'images fetch ID [--source URL --sha256 HEX] [--format zfs|raw|qcow2]')
          const params = { id: rest[0], ...(o.source ? { source: o.source } : {}), ...(o.sha256 ? { sha256: o.sha256 } : {}), ...(o.format ? { format: o.format } : {}) }
          return print(await withSpinner(tty, `fetching ${rest[0]}`, rpc(o, 'RequestImage', params)))
        }
        case 'delete': need(rest, 1, 'images delete ID'); return print(await rpc(o, 'DeleteImage', { id: rest[0] }))
        default: throw new UsageError('usage: mistify-image images list|show ID|fetch ID|delete ID')
      }
    }
    case 'clone': {
      const a = [sub, ...rest].filter((x) => x !== undefined)
      need(a, 2, 'clone ID DEST')
      return print(await rpc(o, 'CloneImage', { id: a[0], dest: a[1] }))
    }
    case 'snapshot': {
      switch (sub) {
        case 'create': need(rest, 2, 'snapshot create ID NAME [-r]'); return print(await rpc(o, 'CreateSnapshot', { id: rest[0], dest: rest[1], recursive: o.recursive }))
        case 'list': if (rest.length > 1) throw new UsageError('usage: mistify-image snapshot list [ID]'); return print(await rpc(o, 'ListSnapshots', rest[0] === undefined ? {} : { id: rest[0] }))
        case 'rollback': need(rest, 1, 'snapshot rollback ID [--destroy-more-recent] [-r]'); return print(await rpc(o, 'RollbackSnapshot', { id: rest[0], recursive: o.recursive, destroyMoreRecent: o.destroyMoreRecent }))
        case 'delete': need(rest, 1, 'snapshot delete ID [-r]'); return print(await rpc(o, 'DeleteSnapshot', { id: rest[0], recursive: o.recursive }))
        default: throw new UsageError('usage: mistify-image snapshot create|list|rollback|delete …')
      }
    }
    case 'download': {
      const a = [sub, ...rest].filter((x) => x !== undefined)
      need(a, 1, 'download SNAPSHOT [-o FILE|-] [-r]')
      const snapshot = a[0]!
      const file = o.output
      if (file === undefined || file === '-') {
        if (file === undefined && stdout.isTTY) throw new UsageError('refusing to write a zfs stream to a terminal: use -o FILE or redirect stdout')
        const r = await download(o, snapshot, stdout, tty)
        if (o.json) process.stderr.write(`${JSON.stringify({ snapshot: r.snapshot, bytes: r.bytes })}\n`)
        return
      }
      // Into FILE.part, renamed only once the stream ended cleanly: a cut transfer never looks whole.
      const part = `${file}.part`
      try {
        const r = await download(o, snapshot, createWriteStream(part, { flags: 'w' }), tty)
        renameSync(part, file)
        stdout.write(o.json ? `${JSON.stringify({ snapshot: r.snapshot, bytes: r.bytes, file })}\n` : `${r.snapshot}: ${r.bytes} bytes written to ${file}\n`)
      } catch (e) {
        rmSync(part, { force: true })
        throw e
      }
      return
    }
    case undefined: throw new UsageError(HELP.trimEnd())
    default: throw new UsageError(`unknown command ${JSON.stringify(cmd)} (mistify-image --help)`)
  }
}

async function main(): Promise<number> {
  let o: Options
  try {
    o = parseArgs(process.argv.slice(2), process.env)
  } catch (e) {
    process.stderr.write(`mistify-image: ${(e as Error).message}\n`)
    return 2
  }
  if (o.help) { process.stdout.write(HELP); return 0 }
  try {
    await run(o)
    return 0
  } catch (e) {
    const code = e instanceof UsageError ? 2 : e instanceof AgentRefused ? 1 : 3
    const msg = (e as Error).message
    if (o.json && !(e instanceof UsageError)) process.stderr.write(`${JSON.stringify({ error: msg, exitCode: code })}\n`)
    else process.stderr.write(`mistify-image: ${msg}\n`)
    return code
  }
}

// Finish writing stdout before exiting (a pipe may still hold our output).
main().then((code) => { process.exitCode = code })
