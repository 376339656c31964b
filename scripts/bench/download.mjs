// 2. Snapshot download throughput: GET /snapshots/download with curl into a
// sink, against `zfs send snap | cat > /dev/null` (zfs refuses /dev/null
// itself), same snapshot, interleaved rounds, median.
import { bash, fillPattern, median, num, timed, zfsDelta, fmt, MiB } from './lib.mjs'

export const name = 'download'

export async function run(ctx) {
  const mib = num('BENCH_DL_MIB', 1024)
  const rounds = num('BENCH_ROUNDS', 3)
  const vbs = ctx.volblocksize
  const ds = `${ctx.pool}/guests/bench-dl`
  let agent
  try {
    const t0 = Date.now()
    await bash(`zfs create -s -b ${vbs} -V ${mib}M ${ds} && udevadm settle --timeout=30`)
    await fillPattern(`/dev/zvol/${ds}`, mib)
    await bash(`zfs snapshot ${ds}@s`)
    ctx.log(`download: ${mib} MiB zvol written in ${((Date.now() - t0) / 1000).toFixed(0)} s`)
    agent = await ctx.startAgent({ name: 'download' })
    const url = `${agent.base}/snapshots/download?id=guests/bench-dl@s`
    const a = [], r = []
    let bytes = 0
    const before = await agent.zfsCounts()
    for (let i = 0; i < rounds; i++) {
      const got = await timed(() => bash(`curl -sfS -o /dev/null -w '%{size_download}' '${url}'`))
      bytes = Number(got.value)
      a.push(got.seconds)
      r.push((await timed(() => bash(`zfs send ${ds}@s | cat > /dev/null`))).seconds)
    }
    const calls = zfsDelta(before, await agent.zfsCounts())
    const am = median(a), rm = median(r)
    const mbps = (s) => bytes / s / 1e6
    return {
      rows: [{
        benchmark: `snapshot download, ${mib} MiB zvol (${(bytes / MiB).toFixed(0)} MiB stream)`,
        agent: fmt.mbps(mbps(am)), raw: `${fmt.mbps(mbps(rm))} (\`zfs send \\| cat\`)`, ratio: am / rm, target: 1.05,
        note: `median of ${rounds}; time ratio`,
      }],
      detail: {
        zvolMiB: mib, volblocksize: vbs, streamBytes: bytes, rounds, agentSeconds: a, rawSeconds: r,
        agentMBps: mbps(am), rawMBps: mbps(rm), zfsCallsPerDownload: calls.total / rounds, zfsPerCommand: calls.byCommand,
      },
      text: [
        `stream ${bytes} bytes from a ${mib} MiB zvol (volblocksize ${vbs}, repeating pattern, lz4), ${rounds} rounds`,
        `curl GET /snapshots/download -o /dev/null: ${a.map(fmt.s).join(', ')} s → median ${fmt.mbps(mbps(am))}`,
        `zfs send | cat > /dev/null: ${r.map(fmt.s).join(', ')} s → median ${fmt.mbps(mbps(rm))}`,
        `zfs invocations per download: ${calls.total / rounds} (${Object.entries(calls.byCommand).map(([k, v]) => `${k} ×${v.count / rounds} ${(v.seconds / rounds).toFixed(2)} s`).join(', ')})`,
      ],
    }
  } finally {
    await agent?.stop()
    await bash(`zfs destroy -r ${ds}`).catch((e) => ctx.log(`download cleanup: ${e.message}`))
  }
}
