/**
 * `--blobs <url>`: `dir` (the default: `<data-dir>/images`) or
 * `s3://bucket[/prefix/]?endpoint=http://host:port&region=…`, credentials from the environment
 * (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), never from the URL: a command line is visible to
 * every user of the host. No SDK import here: config.ts parses this on every start.
 */
export type BlobsSpec =
  | { kind: 'dir' }
  | { kind: 's3'; bucket: string; prefix: string; endpoint?: string; region?: string }

/** Throws an Error whose message says what is wrong with the URL. */
export function parseBlobsUrl(v: string): BlobsSpec {
  if (v === 'dir') return { kind: 'dir' }
  let u: URL
  try {
    u = new URL(v)
  } catch {
    throw new Error(`not "dir" or an s3:// URL: ${JSON.stringify(v)}`)
  }
  if (u.protocol !== 's3:') throw new Error(`not "dir" or an s3:// URL: ${JSON.stringify(v)}`)
  if (u.username !== '' || u.password !== '') {
    throw new Error('credentials do not belong in the URL (it shows in the process list): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY')
  }
  const bucket = u.hostname
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new Error(`not a valid bucket name: ${JSON.stringify(bucket)}`)
  const path = decodeURIComponent(u.pathname).replace(/^\/+/, '')
  const prefix = path === '' ? '' : path.endsWith('/') ? path : `${path}/`
  const spec: BlobsSpec = { kind: 's3', bucket, prefix }
  for (const [k, val] of u.searchParams) {
    if (k === 'endpoint') {
      let e: URL
      try {
        e = new URL(val)
      } catch {
        throw new Error(`endpoint is not a URL: ${JSON.stringify(val)}`)
      }
      if (e.protocol !== 'http:' && e.protocol !== 'https:') throw new Error(`endpoint must be http(s): ${JSON.stringify(val)}`)
      spec.endpoint = val
    } else if (k === 'region') {
      spec.region = val
    } else {
      throw new Error(`unknown parameter ${JSON.stringify(k)} (known: endpoint, region)`)
    }
  }
  return spec
}
