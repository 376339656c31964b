// 8. Node's receive path alone, no agent and no ZFS: a BENCH_RECEIVE_MIB (256) MiB body over
// loopback HTTP into a child's stdin, by Node's http client (how the agent reads an image
// today) and by a raw socket with a reused 1 MiB buffer (scripts/bench/receive-client.mjs),
// each with and without the BLAKE2b, in separate processes, interleaved; the client's own CPU.
// Not a target of issue 14: it prices what a raw body reader would save the import.
import { join } from 'node:path'
import { bash, median, num, fmt } from './lib.mjs'

export const name = 'receive'

export async function run(ctx) {
  const mib = num('BENCH_RECEIVE_MIB', 256)
  const rounds = num('BENCH_ROUNDS', 3)
  const file = join(ctx.filesDir, 'receive.bin')
  try {
    await bash(`head -c ${mib}M /dev/urandom > ${file}`)
    const server = await ctx.fileServer(file)
    const kinds = ['http', 'http hash', 'raw', 'raw hash']
    const runs = Object.fromEntries(kinds.map((k) => [k, []]))
    for (let i = 0; i < rounds; i++) {
      for (const k of kinds) {
        runs[k].push(JSON.parse(await bash(`node scripts/bench/receive-client.mjs ${server.base}/images/r${i}/download ${k}`)))
      }
    }
    const med = (k, f) => median(runs[k].map(f))
    const line = (k) => `${k}: user ${fmt.s(med(k, (x) => x.user))} + system ${fmt.s(med(k, (x) => x.sys))} s CPU, ${fmt.s(med(k, (x) => x.seconds))} s wall`
    const cpu = (k) => med(k, (x) => x.user + x.sys)
    return {
      rows: [],
      detail: { mib, rounds, runs },
      text: [
        `${mib} MiB of random bytes over loopback HTTP into \`cat > /dev/null\`'s stdin, ${rounds} rounds, medians; the client's own CPU:`,
        ...kinds.map(line),
        `the raw reader used ${(cpu('http') / cpu('raw')).toFixed(1)}× less CPU without the hash, ${(cpu('http hash') / cpu('raw hash')).toFixed(1)}× less with it (${fmt.s(cpu('http hash') - cpu('raw hash'))} s saved per stream)`,
      ],
    }
  } finally {
    await bash(`rm -f ${file}`)
  }
}
