// A small closed-loop HTTP load generator: `concurrency` workers, each posting
// the same body over a keep-alive agent as fast as answers come back, for
// `seconds` (after `warmup` seconds not counted). Same client for the agent
// and for the bare Koa baseline.
import http from 'node:http'
import { now, quantile } from './lib.mjs'

function post(agent, url, data) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { 'Content-Type': 'application/json', 'Content-Length': data.length } }, (res) => {
      let n = 0
      res.on('data', (c) => { n += c.length })
      res.on('end', () => (res.statusCode === 200 ? resolve(n) : reject(new Error(`HTTP ${res.statusCode}`))))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(data)
  })
}

export async function load({ url, body, concurrency = 16, seconds = 10, warmup = 2 }) {
  const data = Buffer.from(JSON.stringify(body))
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency })
  const start = now()
  const measureFrom = start + warmup
  const end = measureFrom + seconds
  const lat = []
  let bytes = 0, errors = 0
  const worker = async () => {
    while (now() < end) {
      const t0 = now()
      try {
        const n = await post(agent, url, data)
        if (t0 >= measureFrom) { lat.push(now() - t0); bytes += n }
      } catch {
        errors++
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  agent.destroy()
  const span = now() - measureFrom
  return {
    requests: lat.length, seconds: span, rps: lat.length / span, errors, responseBytes: lat.length ? bytes / lat.length : 0,
    p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), concurrency,
  }
}
