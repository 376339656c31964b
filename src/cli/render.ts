/** What the CLI prints: result tables, byte counts, the download bar and the wait spinner (on stderr). */

type Row = Record<string, unknown>

function table(rows: readonly Row[], cols: ReadonlyArray<readonly [string, string]>): string {
  const cells = [cols.map(([, h]) => h), ...rows.map((r) => cols.map(([k]) => (r[k] === undefined || r[k] === null ? '' : String(r[k]))))]
  const widths = cols.map((_, i) => Math.max(...cells.map((c) => c[i]!.length)))
  return cells.map((c) => c.map((v, i) => (i === c.length - 1 ? v : v.padEnd(widths[i]!))).join('  ')).join('\n') + '\n'
}

const IMAGE_COLS = [['id', 'ID'], ['status', 'STATUS'], ['size', 'SIZE_MIB'], ['snapshot', 'SNAPSHOT']] as const
const SNAP_COLS = [['id', 'SNAPSHOT'], ['size', 'SIZE']] as const
const VOL_COLS = [['id', 'VOLUME'], ['size', 'SIZE_MIB'], ['device', 'DEVICE']] as const

/** An RPC result as a table when it is a list of images, snapshots or volumes; else as indented JSON. */
export function render(result: unknown): string {
  const r = (result ?? {}) as Record<string, unknown>
  if (Array.isArray(r.images)) return table(r.images as Row[], IMAGE_COLS)
  if (Array.isArray(r.snapshots)) return table(r.snapshots as Row[], SNAP_COLS)
  if (Array.isArray(r.volumes)) return table(r.volumes as Row[], VOL_COLS)
  return `${JSON.stringify(result, null, 2)}\n`
}

export function human(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++ }
  return `${i === 0 ? n : n.toFixed(1)} ${u[i]}`
}

export interface Progress { update(text: string): void; done(): void }

/** One line on stderr, redrawn at most every 100 ms; nothing when disabled (not a TTY, or --json). */
export function progress(enabled: boolean): Progress {
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

export async function withSpinner<T>(enabled: boolean, label: string, p: Promise<T>): Promise<T> {
  if (!enabled) return p
  const start = Date.now()
  let i = 0
  const tick = () => process.stderr.write(`\r\x1b[K${SPIN[i++ % SPIN.length]} ${label} ${((Date.now() - start) / 1000).toFixed(1)}s`)
  tick()
  const timer = setInterval(tick, 100)
  try { return await p } finally { clearInterval(timer); process.stderr.write('\r\x1b[K') }
}
