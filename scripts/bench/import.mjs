// 3. Image import throughput: RequestImage (agent: HTTP → sha256 → zfs receive
// → verify → rename) against `curl URL | zfs receive`, same stream from the
// same HTTP server, interleaved rounds, median. (Was scripts/bench-import.mjs.)
import { statSync } from 'node:fs'
import { join } from 'node:path'
import { bash, median, num, timed, zfsDelta, fmt } from './lib.mjs'

export const name = 'import'

export async function run(ctx) {
  const mib = num('BENCH_IMPORT_MIB', 256)
  const rounds = num('BENCH_ROUNDS', 3)
  const src = `${ctx.pool}/bench-import-src`
  const file = join(ctx.filesDir, 'import.zfs')
  const rawParent = `${ctx.pool}/bench-import-raw`
  let server, agent
  try {
    // Random data, default volblocksize: the same stream as the first import figures in the README.
    await bash(`zfs create -V ${mib}M ${src} && udevadm settle --timeout=30 && dd if=/dev/urandom of=/dev/zvol/${src} bs=1M count=${mib} status=none && zfs snapshot ${src}@img && zfs send ${src}@img > ${file} && zfs destroy -r ${src}`)
    const bytes = statSync(file).size
    server = await ctx.fileServer(file)
    agent = await ctx.startAgent({ name: 'import', imageServer: server.base })
    await bash(`zfs create ${rawParent}`)
    const a = [], r = []
    const before = await agent.zfsCounts()
    for (let i = 0; i < rounds; i++) {
      r.push((await timed(() => bash(`curl -sfS ${server.base}/images/raw${i}/download | zfs receive ${rawParent}/r${i}`))).seconds)
      a.push((await timed(() => agent.rpc('RequestImage', { id: `imp${i}` }))).seconds)
      await bash(`zfs destroy -r ${rawParent}/r${i}`)
      await agent.rpc('DeleteImage', { id: `imp${i}` })
    }
    const calls = zfsDelta(before, await agent.zfsCounts())
    // DeleteImage's own calls (findDataset + destroy) are not the import's.
    const imp = Object.fromEntries(Object.entries(calls.byCommand).map(([k, v]) => [k, { count: v.count / rounds, seconds: v.seconds / rounds }]))
    const am = median(a), rm = median(r)
    const mbps = (s) => bytes / s / 1e6
    const recv = imp.receive?.seconds ?? NaN
    return {
      rows: [{
        benchmark: `image import, ${mib} MiB random zvol (${(bytes / 1e6).toFixed(0)} MB stream)`,
        agent: fmt.mbps(mbps(am)), raw: `${fmt.mbps(mbps(rm))} (\`curl \\| zfs receive\`)`, ratio: am / rm, target: 1.18,
        note: `median of ${rounds}; time ratio`,
      }],
      detail: {
        zvolMiB: mib, streamBytes: bytes, rounds, agentSeconds: a, rawSeconds: r, agentMBps: mbps(am), rawMBps: mbps(rm),
        zfsPerRound: imp, agentReceiveSecondsPerRound: recv,
      },
      text: [
        `stream ${bytes} bytes (${mib} MiB zvol of random data, default volblocksize), served over loopback HTTP with Content-Length, ${rounds} rounds`,
        `curl URL | zfs receive: ${r.map(fmt.s).join(', ')} s → median ${fmt.mbps(mbps(rm))}`,
        `RequestImage (sync, over JSON-RPC): ${a.map(fmt.s).join(', ')} s → median ${fmt.mbps(mbps(am))}`,
        `agent zfs calls per round (import + DeleteImage): ${Object.entries(imp).map(([k, v]) => `${k} ×${v.count} ${v.seconds.toFixed(2)} s`).join(', ')}`,
        `of the agent's median ${fmt.s(am)} s, its zfs receive child ran ${fmt.s(recv)} s on average`,
      ],
    }
  } finally {
    await agent?.stop()
    await server?.close()
    await bash(`zfs destroy -r ${src} 2>/dev/null; zfs destroy -r ${rawParent} 2>/dev/null; rm -f ${file}`).catch((e) => ctx.log(`import cleanup: ${e.message}`))
  }
}
