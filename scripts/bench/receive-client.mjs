#!/usr/bin/env node
// One fetch of URL's body into `cat > /dev/null`'s stdin, as an import feeds `zfs receive`, then
// a JSON line with this process's own CPU. MODE http: Node's http client, as the agent reads
// today. MODE raw: a plain socket with a reused 1 MiB read buffer (net's `onread`), the status
// line and headers parsed by hand, Content-Length bodies only: what the receive path could cost.
//   node scripts/bench/receive-client.mjs URL http|raw [hash]
import http from 'node:http'
import net from 'node:net'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'

const [url, mode, hashArg] = process.argv.slice(2)
const u = new URL(url)
const hash = hashArg === 'hash' ? createHash('blake2b512') : undefined
const t0 = process.hrtime.bigint()
const c0 = process.cpuUsage()
const sink = spawn('sh', ['-c', 'cat > /dev/null'], { stdio: ['pipe', 'inherit', 'inherit'] })
let bytes = 0
const write = (b) => { bytes += b.length; hash?.update(b); return sink.stdin.write(b) }

if (mode === 'http') {
  const res = await new Promise((resolve, reject) => http.get(u, resolve).on('error', reject))
  for await (const c of res) if (!write(c)) await new Promise((r) => sink.stdin.once('drain', r))
} else if (mode === 'raw') {
  await new Promise((resolve, reject) => {
    let head = Buffer.alloc(0)
    let length = -1
    const sock = net.connect({
      host: u.hostname, port: Number(u.port),
      onread: {
        buffer: Buffer.allocUnsafe(1 << 20),
        callback(n, buf) {
          let chunk = buf.subarray(0, n)
          if (length < 0) {
            head = Buffer.concat([head, chunk])
            const end = head.indexOf('\r\n\r\n')
            if (end < 0) return true
            const m = /\r\ncontent-length: *(\d+)/i.exec(head.subarray(0, end).toString('latin1'))
            if (!m) { sock.destroy(); reject(new Error('no Content-Length')); return false }
            length = Number(m[1])
            chunk = head.subarray(end + 4)
          }
          // The read buffer is reused: the pipe gets a copy.
          const ok = chunk.length === 0 || write(Buffer.from(chunk))
          if (bytes >= length) { sock.destroy(); resolve(); return false }
          if (!ok) { sink.stdin.once('drain', () => sock.resume()); return false }
          return true
        },
      },
    })
    sock.on('connect', () => sock.write(`GET ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nConnection: close\r\n\r\n`))
    sock.on('error', reject)
    sock.on('close', () => { if (length < 0 || bytes < length) reject(new Error(`connection closed after ${bytes} bytes`)) })
  })
} else {
  throw new Error(`mode ${mode}: http or raw`)
}
sink.stdin.end()
await new Promise((r) => sink.on('close', r))
const c = process.cpuUsage(c0)
hash?.digest()
console.log(JSON.stringify({ bytes, seconds: Number(process.hrtime.bigint() - t0) / 1e9, user: c.user / 1e6, sys: c.system / 1e6 }))
