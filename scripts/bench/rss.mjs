// 6. Peak RSS of the agent process (dist/src/agent/main.js, a process of its own)
// while it imports a big image and while it streams a big snapshot out:
// baseline VmRSS just before, peak (VmHWM, reset through clear_refs, and
// VmRSS sampled every 100 ms), peak - baseline. Next to it the peak RSS of
// the raw `zfs receive` / `zfs send` (and curl, cat) doing the same transfer.
import { spawn } from 'node:child_process'
import { statSync } from 'node:fs'
import { join } from 'node:path'
import { bash, fillPattern, num, resetPeak, rssKiB, sampleRss, timed, fmt, MiB } from './lib.mjs'

export const name = 'rss'

/** A bash pipeline as a child whose descendants' RSS is sampled. */
async function sampled(script) {
  const child = spawn('bash', ['-o', 'pipefail', '-c', script], { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr.on('data', (c) => { err += c })
  const s = sampleRss(child.pid, { children: true })
  const t0 = Date.now()
  const code = await new Promise((r) => child.once('exit', r))
  const peaks = s.stop()
  if (code !== 0) throw new Error(`${script}: exit ${code}: ${err}`)
  return { seconds: (Date.now() - t0) / 1000, children: peaks.children }
}

/** The agent's RSS across `fn`: baseline, peak, delta (KiB). */
async function agentRss(pid, fn) {
  const baselineKiB = rssKiB(pid)
  const reset = resetPeak(pid)
  const s = sampleRss(pid)
  const got = await timed(fn)
  const p = s.stop()
  const peakKiB = Math.max(p.maxRssKiB, reset ? p.hwmKiB : 0)
  return { seconds: got.seconds, baselineKiB, peakKiB, deltaKiB: peakKiB - baselineKiB, sampledMaxKiB: p.maxRssKiB, hwmKiB: p.hwmKiB, hwmReset: reset, samples: p.samples, value: got.value }
}

export async function run(ctx) {
  const mib = num('BENCH_RSS_MIB', 4096)
  const vbs = ctx.volblocksize
  const src = `${ctx.pool}/bench-rss-src`
  const raw = `${ctx.pool}/bench-rss-raw`
  const file = join(ctx.filesDir, 'big.zfs')
  let server, agent
  try {
    const made = await timed(async () => {
      await bash(`zfs create -s -b ${vbs} -V ${mib}M ${src} && udevadm settle --timeout=30`)
      await fillPattern(`/dev/zvol/${src}`, mib)
      await bash(`zfs snapshot ${src}@s && zfs send ${src}@s > ${file}`)
    })
    const bytes = statSync(file).size
    ctx.log(`rss: ${mib} MiB zvol and its ${bytes}-byte stream made in ${fmt.s(made.seconds)} s`)
    server = await ctx.fileServer(file)
    agent = await ctx.startAgent({ name: 'rss', imageServer: server.base })
    await agent.rpc('ListImages', {}) // warm
    const rawImport = await sampled(`curl -sfS ${server.base}/images/raw/download | zfs receive ${raw}`)
    await bash(`zfs destroy -r ${raw}`)
    const imp = await agentRss(agent.pid, () => agent.rpc('RequestImage', { id: 'bench-big' }))
    const snap = imp.value.images[0].snapshot
    const rawSend = await sampled(`zfs send ${snap} | cat > /dev/null`)
    const rel = snap.slice(ctx.pool.length + 1)
    const dl = await agentRss(agent.pid, () => bash(`curl -sfS -o /dev/null -w '%{size_download}' '${agent.base}/snapshots/download?id=${rel}'`))
    const mbps = (s) => bytes / s / 1e6
    const kids = (c) => Object.entries(c).map(([k, v]) => `${k} ${fmt.mib(v)}`).join(', ')
    const row = (what, a, r, rawName) => ({
      benchmark: `agent RSS, ${what} ${(bytes / MiB / 1024).toFixed(1)} GiB`,
      agent: `${fmt.mib(a.baselineKiB)} → ${fmt.mib(a.peakKiB)} (+${fmt.mib(a.deltaKiB)})`,
      raw: `${rawName} ${fmt.mib(r.children.zfs ?? 0)}`, ratio: NaN,
      note: `${fmt.mbps(mbps(a.seconds))} vs ${fmt.mbps(mbps(r.seconds))} raw`,
    })
    return {
      rows: [row('importing', imp, rawImport, '`zfs receive`'), row('downloading', dl, rawSend, '`zfs send`')],
      detail: {
        zvolMiB: mib, volblocksize: vbs, streamBytes: bytes, prepareSeconds: made.seconds,
        import: { ...imp, value: undefined, MBps: mbps(imp.seconds) }, rawImport: { ...rawImport, MBps: mbps(rawImport.seconds) },
        download: { ...dl, value: undefined, MBps: mbps(dl.seconds) }, rawSend: { ...rawSend, MBps: mbps(rawSend.seconds) },
      },
      text: [
        `${bytes}-byte stream of a ${mib} MiB zvol (volblocksize ${vbs}, repeating pattern, lz4 on disk), served from a file over loopback HTTP`,
        `import: agent RSS baseline ${fmt.mib(imp.baselineKiB)}, peak ${fmt.mib(imp.peakKiB)} (VmHWM ${fmt.mib(imp.hwmKiB)}${imp.hwmReset ? ', reset before' : ', not resettable'}; sampled max ${fmt.mib(imp.sampledMaxKiB)} over ${imp.samples} samples), +${fmt.mib(imp.deltaKiB)}; ${fmt.s(imp.seconds)} s = ${fmt.mbps(mbps(imp.seconds))}`,
        `raw curl | zfs receive: ${fmt.s(rawImport.seconds)} s = ${fmt.mbps(mbps(rawImport.seconds))}; peak RSS ${kids(rawImport.children)}`,
        `download: agent RSS baseline ${fmt.mib(dl.baselineKiB)}, peak ${fmt.mib(dl.peakKiB)} (VmHWM ${fmt.mib(dl.hwmKiB)}; sampled max ${fmt.mib(dl.sampledMaxKiB)}), +${fmt.mib(dl.deltaKiB)}; ${fmt.s(dl.seconds)} s = ${fmt.mbps(mbps(dl.seconds))}`,
        `raw zfs send | cat: ${fmt.s(rawSend.seconds)} s = ${fmt.mbps(mbps(rawSend.seconds))}; peak RSS ${kids(rawSend.children)}`,
      ],
    }
  } finally {
    await agent?.stop()
    await server?.close()
    await bash(`zfs destroy -r ${raw} 2>/dev/null; zfs destroy -r ${ctx.pool}/images/bench-big 2>/dev/null; zfs destroy -r ${src}; rm -f ${file}`).catch((e) => ctx.log(`rss cleanup: ${e.message}`))
  }
}
