/** `--metadata`: which RecordBackend holds the image records, and opening it. */
import { join } from 'node:path'
import { openDb } from '../../common/db.js'
import { LevelRecords, type RecordBackend } from './records.js'

export type MetadataTarget = { kind: 'level' } | { kind: 'etcd'; endpoints: string[]; prefix?: string }

/** `level`, or `etcd://h1:p1,h2:p2[/prefix]`; undefined when neither. */
export function parseMetadataUrl(url: string): MetadataTarget | undefined {
  if (url === 'level') return { kind: 'level' }
  const m = /^etcd:\/\/([^/]+)(\/.*)?$/.exec(url)
  if (!m) return undefined
  const endpoints = (m[1] ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '')
  if (endpoints.length === 0 || endpoints.some((e) => !/^[^:\s/]+:\d{1,5}$/.test(e))) return undefined
  const prefix = m[2]?.replace(/\/+$/, '')
  return prefix ? { kind: 'etcd', endpoints, prefix } : { kind: 'etcd', endpoints }
}

export interface OpenOptions {
  /** level: the records live in `<dataDir>/metadata`. */
  dataDir: string
  leaseTtlS?: number
}

export async function openRecords(url: string, o: OpenOptions): Promise<RecordBackend> {
  const t = parseMetadataUrl(url)
  if (!t) throw new Error(`metadata: level or etcd://host:port[,host:port…][/prefix], got ${JSON.stringify(url)}`)
  if (t.kind === 'level') return new LevelRecords(await openDb(join(o.dataDir, 'metadata')))
  // Loaded only when used: the default install never touches gRPC.
  const { EtcdRecords } = await import('./etcd-records.js')
  const backend = new EtcdRecords({ endpoints: t.endpoints, ...(t.prefix ? { prefix: t.prefix } : {}), ...(o.leaseTtlS ? { leaseTtlS: o.leaseTtlS } : {}) })
  try {
    await backend.health()
  } catch (err) {
    await backend.close()
    throw new Error(`metadata store ${url} unreachable: ${err instanceof Error ? err.message : String(err)}`)
  }
  return backend
}
