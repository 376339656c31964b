// 3. Image import throughput: RequestImage (agent: HTTP → digest → zfs receive
// → verify → rename) against `curl URL | zfs receive`, same stream from the
// same HTTP server, interleaved rounds, median. The server publishes what the
// image service does (sha256 and BLAKE2b-512: the agent checks the BLAKE2b);
// the agent also imports the stream with the sha256 alone (an older image
// service, or a caller's own sha256). For reference, the raw pipelines doing
// each check too (`tee >(b2sum)`, `tee >(sha256sum)`), and what hashing the
// stream costs alone.
import { statSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { bash, median, num, timed, timedCpu, zfsDelta, fmt } from './lib.mjs'

export const name = 'import'

const pct = (x) => `${(100 * x).toFixed(0)}%`
const cpuOf = (runs, key) => `${fmt.s(median(runs.map((x) => x[key].user)))} + ${fmt.s(median(runs.map((x) => x[key].sys)))} s`

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
    const a = [], r = [], h = [], as = [], hb = []
    // How busy the VM's CPUs were during each kind (is there a spare vCPU to overlap work on?),
    // and the CPU seconds the agent and this process (it serves the file) used.
    const cpu = { raw: [], agent: [], rawB2: [], agentSha256: [], rawSha256: [] }
    const measure = async (kind, list, fn) => {
      const m = await timedCpu(fn, [agent.pid, process.pid]) // the file server runs in this process
      list.push(m.seconds)
      // A pipeline's processes are reaped by its bash, and bash by this process: its children's CPU is the pipeline's.
      cpu[kind].push({ busy: m.busy, agentCpu: m.cpu[0], serverCpu: m.cpu[1], pipelineCpu: m.cpu[1].children })
    }
    const before = await agent.zfsCounts()
    for (let i = 0; i < rounds; i++) {
      await measure('raw', r, () => bash(`curl -sfS ${server.base}/images/raw${i}/download | zfs receive ${rawParent}/r${i}`))
      await measure('agent', a, () => agent.rpc('RequestImage', { id: `imp${i}` }))
      await measure('rawB2', hb, () => bash(`curl -sfS ${server.base}/images/hashed${i}/download | tee >(b2sum > /dev/null) | zfs receive ${rawParent}/b${i}`))
      await measure('agentSha256', as, () => agent.rpc('RequestImage', { id: `sha-imp${i}` }))
      await measure('rawSha256', h, () => bash(`curl -sfS ${server.base}/images/hashed${i}/download | tee >(sha256sum > /dev/null) | zfs receive ${rawParent}/h${i}`))
      await bash(`zfs destroy -r ${rawParent}/r${i} && zfs destroy -r ${rawParent}/h${i} && zfs destroy -r ${rawParent}/b${i}`)
      await agent.rpc('DeleteImage', { id: `imp${i}` })
      await agent.rpc('DeleteImage', { id: `sha-imp${i}` })
    }
    // Hashing alone, one core: what verifying the checksum costs per byte on this machine
    // (node times its own reading and hashing: its start-up is not the hash's).
    const nodeHash = async (alg) => Number(await bash(`node -e "const t=process.hrtime.bigint(),h=require('crypto').createHash('${alg}');require('fs').createReadStream(process.argv[1],{highWaterMark:1<<20}).on('data',(c)=>h.update(c)).on('end',()=>{h.digest();console.log(Number(process.hrtime.bigint()-t)/1e9)})" ${file}`))
    const sumS = (await timed(() => bash(`sha256sum ${file} > /dev/null`))).seconds
    const b2sumS = (await timed(() => bash(`b2sum ${file} > /dev/null`))).seconds
    const nodeS = await nodeHash('sha256')
    const nodeB2S = await nodeHash('blake2b512')
    const calls = zfsDelta(before, await agent.zfsCounts())
    // Two imports per round; DeleteImage's own calls (findDataset + destroy) are not the import's.
    const per = rounds * 2
    const imp = Object.fromEntries(Object.entries(calls.byCommand).map(([k, v]) => [k, { count: v.count / per, seconds: v.seconds / per }]))
    const am = median(a), rm = median(r), hm = median(h), asm = median(as), hbm = median(hb)
    const mbps = (s) => bytes / s / 1e6
    const recv = imp.receive?.seconds ?? NaN
    const alone = `hashing alone: b2sum ${fmt.mbps(mbps(b2sumS))}, node blake2b512 ${fmt.mbps(mbps(nodeB2S))}; sha256sum ${fmt.mbps(mbps(sumS))}, node sha256 ${fmt.mbps(mbps(nodeS))}`
    return {
      rows: [{
        benchmark: `image import, ${mib} MiB random zvol (${(bytes / 1e6).toFixed(0)} MB stream), checked by the BLAKE2b-512 the image service publishes`,
        agent: fmt.mbps(mbps(am)), raw: `${fmt.mbps(mbps(rm))} (\`curl \\| zfs receive\`)`, ratio: am / rm, target: 1.18,
        note: `median of ${rounds}; time ratio`,
      }, {
        benchmark: `image import, same stream, against the raw pipeline that checks the BLAKE2b too`,
        agent: fmt.mbps(mbps(am)), raw: `${fmt.mbps(mbps(hbm))} (\`curl \\| tee >(b2sum) \\| zfs receive\`)`, ratio: am / hbm,
        note: alone,
      }, {
        benchmark: `image import, same stream, checked by sha256 (an image service without BLAKE2b, or a caller's own sha256)`,
        agent: fmt.mbps(mbps(asm)), raw: `${fmt.mbps(mbps(rm))} (\`curl \\| zfs receive\`)`, ratio: asm / rm,
        note: `against \`curl \\| tee >(sha256sum) \\| zfs receive\` (${fmt.mbps(mbps(hm))}): ${(asm / hm).toFixed(2)}×`,
      }],
      detail: {
        zvolMiB: mib, streamBytes: bytes, rounds, agentSeconds: a, rawSeconds: r, agentMBps: mbps(am), rawMBps: mbps(rm),
        agentSha256Seconds: as, agentSha256MBps: mbps(asm),
        rawB2Seconds: hb, rawB2MBps: mbps(hbm), rawHashedSeconds: h, rawHashedMBps: mbps(hm),
        sha256sumSeconds: sumS, b2sumSeconds: b2sumS, nodeSha256Seconds: nodeS, nodeBlake2bSeconds: nodeB2S,
        zfsPerImport: imp, agentReceiveSecondsPerImport: recv, cpu, vcpus: availableParallelism(),
      },
      text: [
        `stream ${bytes} bytes (${mib} MiB zvol of random data, default volblocksize), served over loopback HTTP with Content-Length, ${rounds} rounds`,
        `curl URL | zfs receive: ${r.map(fmt.s).join(', ')} s → median ${fmt.mbps(mbps(rm))}`,
        `RequestImage (sync, over JSON-RPC; BLAKE2b checked): ${a.map(fmt.s).join(', ')} s → median ${fmt.mbps(mbps(am))}`,
        `curl URL | tee >(b2sum) | zfs receive: ${hb.map(fmt.s).join(', ')} s → median ${fmt.mbps(mbps(hbm))}`,
        `RequestImage, sha256 only published (sha256 checked): ${as.map(fmt.s).join(', ')} s → median ${fmt.mbps(mbps(asm))}`,
        `curl URL | tee >(sha256sum) | zfs receive: ${h.map(fmt.s).join(', ')} s → median ${fmt.mbps(mbps(hm))}`,
        `${alone} (b2sum ${fmt.s(b2sumS)} s, node blake2b512 ${fmt.s(nodeB2S)} s, sha256sum ${fmt.s(sumS)} s, node sha256 ${fmt.s(nodeS)} s)`,
        `agent zfs calls per import (import + DeleteImage): ${Object.entries(imp).map(([k, v]) => `${k} ×${v.count} ${v.seconds.toFixed(2)} s`).join(', ')}`,
        `its zfs receive child ran ${fmt.s(recv)} s per import on average (both kinds)`,
        `VM CPU busy (of ${availableParallelism()} vCPUs), median: ${Object.entries(cpu).map(([k, v]) => `${k} ${pct(median(v.map((x) => x.busy)))}`).join(', ')}`,
        `CPU per import, median, user + system: the agent ${cpuOf(cpu.agent, 'agentCpu')} checking BLAKE2b (its zfs children ${fmt.s(median(cpu.agent.map((x) => x.agentCpu.children)))} s), ${cpuOf(cpu.agentSha256, 'agentCpu')} checking sha256; the bench process serving the stream ${cpuOf(cpu.raw, 'serverCpu')}`,
        `CPU of the raw pipelines' processes (curl, tee, the hash, zfs receive), median: curl | zfs receive ${fmt.s(median(cpu.raw.map((x) => x.pipelineCpu)))} s, with tee >(b2sum) ${fmt.s(median(cpu.rawB2.map((x) => x.pipelineCpu)))} s, with tee >(sha256sum) ${fmt.s(median(cpu.rawSha256.map((x) => x.pipelineCpu)))} s`,
      ],
    }
  } finally {
    await agent?.stop()
    await server?.close()
    await bash(`zfs destroy -r ${src} 2>/dev/null; zfs destroy -r ${rawParent} 2>/dev/null; rm -f ${file}`).catch((e) => ctx.log(`import cleanup: ${e.message}`))
  }
}
