/** The request headers that choose what part of an image to send: Range and If-None-Match. */
export type RangeResult =
  | { kind: 'full' }
  | { kind: 'partial'; start: number; end: number }
  | { kind: 'unsatisfiable' }

/**
 * One `bytes=` range (RFC 9110 §14.1.2). Anything we do not serve as one range
 * (multiple ranges, other units, bad syntax) yields the full body, which the
 * RFC allows.
 */
export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined || header === '') return { kind: 'full' }
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header)
  if (!m) return { kind: 'full' }
  const [, a = '', b = ''] = m
  if (a === '' && b === '') return { kind: 'full' }
  if (a === '') {
    // Suffix range: the last N bytes.
    const n = Number(b)
    if (n === 0 || size === 0) return { kind: 'unsatisfiable' }
    return { kind: 'partial', start: Math.max(0, size - n), end: size - 1 }
  }
  const start = Number(a)
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1)
  if (b !== '' && Number(b) < start) return { kind: 'full' }
  if (start >= size) return { kind: 'unsatisfiable' }
  return { kind: 'partial', start, end }
}

/**
 * Does an If-None-Match header match this (strong) ETag? Weak comparison, as RFC 9110 asks.
 * Not Koa's ctx.fresh: it calls a request with `Cache-Control: no-cache` stale, and fetch()
 * sends that with every conditional request, so its clients would never see a 304.
 */
export function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false
  const bare = etag.replace(/^W\//, '')
  return header.split(',').some((t) => {
    const v = t.trim()
    return v === '*' || v.replace(/^W\//, '') === bare
  })
}
