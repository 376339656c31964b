// 3. Image import throughput: RequestImage (agent: HTTP → sha256 → zfs receive
// → verify → rename) against `curl URL | zfs receive`, same stream from the
// same HTTP server, interleaved rounds, median. For reference, the raw
// pipeline doing the agent's checksum too (`tee >(sha256sum)`), and what
// hashing the stream costs alone (sha256sum and node's crypto over the file).
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
    const a = [], r = [], h = []
    const before = await agent.zfsCounts()
    for (let i = 0; i < rounds; i++) {
      r.push((await timed(() => bash(`curl -sfS ${server.base}/images/raw${i}/download | zfs receive ${rawParent}/r${i}`))).seconds)
      a.push((await timed(() => agent.rpc('RequestImage', { id: `imp${i}` }))).seconds)
      h.push((await timed(() => bash(`curl -sfS ${server.base}/images/hashed${i}/download | tee >(sha256sum > /dev/null) | zfs receive ${rawParent}/h${i}`))).seconds)
      await bash(`zfs destroy -r ${rawParent}/r${i} && zfs destroy -r ${rawParent}/h${i}`)
      await agent.rpc('DeleteImage', { id: `imp${i}` })
    }
    // Hashing alone, one core: what verifying the checksum costs per byte on this machine.
    const sumS = (await timed(() => bash(`sha256sum ${file} > /dev/null`))).seconds
    const nodeS = (await timed(() => bash(`node -e "const h=require('crypto').createHash('sha256');require('fs').createReadStream(process.argv[1],{highWaterMark:1<<20}).on('data',(c)=>h.update(c)).on('end',()=>h.digest())" ${file}`))).seconds
    const calls = zfsDelta(before, await agent.zfsCounts())
    // DeleteImage's own calls (findDataset + destroy) are not the import's.
    const imp = Object.fromEntries(Object.entries(calls.byCommand).map(([k, v]) => [k, { count: v.count / rounds, seconds: v.seconds / rounds }]))
    const am = median(a), rm = median(r), hm = median(h)
    const mbps = (s) => bytes / s / 1e6
    const recv = imp.receive?.seconds ?? NaN
    return {
      rows: [{
        benchmark: `image import, ${mib} MiB random zvol (${(bytes / 1e6).toFixed(0)} MB stream)`,
        agent: fmt.mbps(mbps(am)), raw: `${fmt.mbps(mbps(rm))} (\`curl \\| zfs receive\`)`, ratio: am / rm, target: 1.18,
        note: `median of ${rounds}; time ratio`,
      }, {
        benchmark: `image import, same stream, against the raw pipeline that checksums too`,
        agent: fmt.mbps(mbps(am)), raw: `${fmt.mbps(mbps(hm))} (\`curl \\| tee >(sha256sum) \\| zfs receive\`)`, ratio: am / hm,
        note: `sha256 alone: sha256sum ${fmt.mbps(mbps(sumS))}, node ${fmt.mbps(mbps(nodeS))}`,
      }],
      detail: {
        zvolMiB: mib, streamBytes: bytes, rounds, agentSeconds: a, rawSeconds: r, agentMBps: mbps(am), rawMBps: mbps(rm),
        rawHashedSeconds: h, rawHashedMBps: mbps(hm), sha256sumSeconds: sumS, nodeSha256Seconds: nodeS,
        zfsPerRound: imp, agentReceiveSecondsPerRound: recv,
      },
      text: [
        `stream ${bytes} bytes (${mib} MiB zvol of random data, default volblocksize), served over loopback HTTP with Content-Length, ${rounds} rounds`,
        `curl URL | zfs receive: ${r.map(fmt.s).join(', ')} s → median ${fmt.mbps(mbps(rm))}`,
        `RequestImage (sync, over JSON-RPC): ${a.map(fmt.s).join(', ')} s → median ${fmt.mbps(mbps(am))}`,
        `curl URL | tee >(sha256sum) | zfs receive: ${h.map(fmt.s).join(', ')} s → median ${fmt.mbps(mbps(hm))}`,
        `sha256 of the stream file alone: sha256sum ${fmt.s(sumS)} s (${fmt.mbps(mbps(sumS))}), node crypto ${fmt.s(nodeS)} s (${fmt.mbps(mbps(nodeS))})`,
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
