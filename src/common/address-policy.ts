/**
 * Which hosts an image source may be fetched from (agent RequestImage and the
 * image service's fetch-from-URL). Both run with privileges the caller does
 * not have, and both store and re-serve what they fetch: a source at
 * 127.0.0.1, 169.254.169.254 or a private address would let whoever can ask
 * for a fetch read services that only this host can reach (SSRF with
 * read-back). So those ranges are denied unless the operator allowlists them.
 *
 * The decision is made on the address that is actually connected to: a
 * `lookup` for node:http(s) resolves the name, checks every address it got,
 * and hands the socket only a checked one, so a name cannot pass a check
 * with one address and connect to another (DNS rebinding). Literal IPs never
 * reach `lookup` (node connects to them directly): `checkUrl` judges them
 * before the request. Every redirect hop is a new request through the same
 * two checks.
 */
import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions } from 'node:dns'
import { isIP, type LookupFunction } from 'node:net'

/** A source refused by the policy. Nothing was requested from it. */
export class SourceDeniedError extends Error {
  override name = 'SourceDeniedError'
  readonly code = 'ESOURCEDENIED'
}

export interface SourcePolicyOptions {
  /**
   * Host names (exact, case-insensitive) and addresses or CIDRs
   * (`127.0.0.1`, `10.0.0.0/8`, `fd00::/8`) that may be fetched from even
   * though they are in a denied range.
   */
  allow?: readonly string[] | undefined
  /**
   * Origins (`http://host:port`) trusted as they are, e.g. the image service
   * the operator configured. A redirect from them to another origin is
   * checked like any source.
   */
  trustedOrigins?: readonly string[]
}

interface Cidr { v6: boolean; bits: bigint; prefix: number }

export interface SourcePolicy {
  readonly hosts: ReadonlySet<string>
  readonly cidrs: readonly Cidr[]
  readonly trusted: ReadonlySet<string>
}

/** Builds a policy; a malformed allowlist entry throws (a config error, not a silent no-op). */
export function createSourcePolicy(o: SourcePolicyOptions = {}): SourcePolicy {
  const hosts = new Set<string>()
  const cidrs: Cidr[] = []
  for (const raw of o.allow ?? []) {
    const e = raw.trim()
    if (e === '') continue
    const c = parseCidr(e)
    if (c) { cidrs.push(c); continue }
    if (e.includes('/') || !/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?\.?$/i.test(e)) throw new Error(`not a host name, address or CIDR: ${JSON.stringify(raw)}`)
    hosts.add(normHost(e))
  }
  const trusted = new Set((o.trustedOrigins ?? []).map((s) => new URL(s).origin))
  return { hosts, cidrs, trusted }
}

/** Split a comma/space separated allowlist ("127.0.0.1, images.lan 10.0.0.0/8"). */
export function splitAllowList(s: string): string[] {
  return s.split(/[\s,]+/).filter((x) => x !== '')
}

function normHost(h: string): string {
  return h.toLowerCase().replace(/\.$/, '')
}

/** The URL's host as a bare name or address (brackets of an IPv6 literal removed). */
function hostOf(u: URL): string {
  return normHost(u.hostname.replace(/^\[(.*)\]$/, '$1'))
}

export type UrlVerdict =
  /** No address check at all (trusted origin, or an allowlisted host name). */
  | { kind: 'trusted' }
  /** A literal address that passed. */
  | { kind: 'allowed' }
  /** A name: its addresses are checked when it is resolved (`guardedLookup`). */
  | { kind: 'resolve' }
  | { kind: 'denied'; reason: string }

/** What can be decided from the URL alone. */
export function checkUrl(u: URL, p: SourcePolicy): UrlVerdict {
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return { kind: 'denied', reason: `only http(s) sources, not ${u.protocol}` }
  if (p.trusted.has(u.origin)) return { kind: 'trusted' }
  const host = hostOf(u)
  if (p.hosts.has(host)) return { kind: 'trusted' }
  if (isIP(host) === 0) return { kind: 'resolve' }
  const why = deniedAddress(host, p)
  return why ? { kind: 'denied', reason: `${host} is ${why}` } : { kind: 'allowed' }
}

/** Why `ip` may not be fetched from under `p` (undefined: it may). */
export function deniedAddress(ip: string, p: SourcePolicy): string | undefined {
  const a = parseIp(ip)
  if (!a) return 'not an IP address'
  const range = deniedRange(a)
  if (!range) return undefined
  const v4 = embeddedV4(a)
  if (p.cidrs.some((c) => inCidr(a, c) || (v4 !== undefined && inCidr(v4, c)))) return undefined
  return range
}

type Lookup = (hostname: string, options: LookupAllOptions, cb: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void) => void

/**
 * A `lookup` for http(s).get: resolves `hostname`, refuses the connection
 * when any address it resolves to is denied (a name with one public and one
 * loopback address must not be connected through the loopback one), and
 * gives the socket only those checked addresses.
 */
export function guardedLookup(p: SourcePolicy, resolve: Lookup = dnsLookup as unknown as Lookup): LookupFunction {
  return (hostname, options, cb: (...a: any[]) => void): void => {
    const { all, ...rest } = options ?? {}
    resolve(hostname, { ...rest, all: true } as LookupAllOptions, (err, addresses) => {
      if (err) return cb(err)
      if (!addresses || addresses.length === 0) return cb(Object.assign(new Error(`${hostname}: no addresses`), { code: 'ENOTFOUND' }))
      for (const a of addresses) {
        const why = deniedAddress(a.address, p)
        if (why) return cb(new SourceDeniedError(`source host ${hostname} resolves to ${a.address}, which is ${why}; not fetched (allow it with --allow-source-hosts)`))
      }
      if (all) cb(null, addresses)
      else cb(null, addresses[0]!.address, addresses[0]!.family)
    })
  }
}

// ---- addresses ----------------------------------------------------------

interface Addr { v6: boolean; bits: bigint }

function parseV4(s: string): bigint | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s)
  if (!m) return undefined
  let n = 0n
  for (const part of m.slice(1)) {
    const v = Number(part)
    if (v > 255 || (part.length > 1 && part.startsWith('0'))) return undefined
    n = (n << 8n) | BigInt(v)
  }
  return n
}

function parseV6(s: string): bigint | undefined {
  let str = s.replace(/%.*$/, '') // a zone id names an interface, not a different address
  if (!/^[0-9a-f:.]+$/i.test(str)) return undefined
  if (str.includes('.')) {
    // A dotted IPv4 tail (::ffff:127.0.0.1) is the last two groups.
    const colon = str.lastIndexOf(':')
    const tail = parseV4(str.slice(colon + 1))
    if (tail === undefined) return undefined
    str = `${str.slice(0, colon + 1)}${(tail >> 16n).toString(16)}:${(tail & 0xffffn).toString(16)}`
  }
  const halves = str.split('::')
  if (halves.length > 2) return undefined
  const groups = (h: string) => (h === '' ? [] : h.split(':'))
  const head = groups(halves[0]!)
  const rest = halves.length === 2 ? groups(halves[1]!) : []
  const explicit = head.length + rest.length
  if (halves.length === 1 ? explicit !== 8 : explicit > 7) return undefined
  let n = 0n
  for (const g of [...head, ...Array<string>(8 - explicit).fill('0'), ...rest]) {
    if (!/^[0-9a-f]{1,4}$/i.test(g)) return undefined
    n = (n << 16n) | BigInt(parseInt(g, 16))
  }
  return n
}

export function parseIp(s: string): Addr | undefined {
  const v4 = parseV4(s)
  if (v4 !== undefined) return { v6: false, bits: v4 }
  const v6 = parseV6(s)
  return v6 === undefined ? undefined : { v6: true, bits: v6 }
}

function parseCidr(s: string): Cidr | undefined {
  const [ip, len, more] = s.split('/')
  if (more !== undefined) return undefined
  const a = parseIp(ip!)
  if (!a) return undefined
  const max = a.v6 ? 128 : 32
  if (len !== undefined && !/^\d{1,3}$/.test(len)) throw new Error(`bad prefix length in ${JSON.stringify(s)}`)
  const prefix = len === undefined ? max : Number(len)
  if (prefix > max) throw new Error(`bad prefix length in ${JSON.stringify(s)}`)
  return { ...a, prefix }
}

function inCidr(a: Addr, c: Cidr): boolean {
  if (a.v6 !== c.v6) return false
  const width = BigInt(c.v6 ? 128 : 32)
  const shift = width - BigInt(c.prefix)
  return (a.bits >> shift) === (c.bits >> shift)
}

const v4 = (s: string): Cidr => parseCidr(s)!
const v6 = v4

/** Denied by default, with the reason given in errors. */
const DENIED: ReadonlyArray<readonly [Cidr, string]> = [
  [v4('0.0.0.0/8'), 'an unspecified ("this network") address'],
  [v4('127.0.0.0/8'), 'a loopback address'],
  [v4('10.0.0.0/8'), 'a private address'],
  [v4('172.16.0.0/12'), 'a private address'],
  [v4('192.168.0.0/16'), 'a private address'],
  [v4('100.64.0.0/10'), 'a carrier-grade NAT (shared) address'],
  [v4('169.254.0.0/16'), 'a link-local address'],
  [v4('224.0.0.0/4'), 'a multicast address'],
  [v4('240.0.0.0/4'), 'a reserved or broadcast address'],
  [v6('::/128'), 'an unspecified address'],
  [v6('::1/128'), 'a loopback address'],
  [v6('fe80::/10'), 'a link-local address'],
  [v6('fec0::/10'), 'a site-local (private) address'],
  [v6('fc00::/7'), 'a unique local (private) address'],
  [v6('ff00::/8'), 'a multicast address'],
  [v6('64:ff9b:1::/48'), 'a local-use NAT64 address'],
]

/**
 * The IPv4 address an IPv6 address stands for, when it is one of the forms
 * that reach an IPv4 host: IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible
 * (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d) and 6to4 (2002:AABB:CCDD::).
 */
function embeddedV4(a: Addr): Addr | undefined {
  if (!a.v6) return undefined
  const top96 = a.bits >> 32n
  const low32 = a.bits & 0xffffffffn
  if (top96 === 0xffffn || top96 === 0n || top96 === 0x0064ff9b0000000000000000n) return { v6: false, bits: low32 }
  if (a.bits >> 112n === 0x2002n) return { v6: false, bits: (a.bits >> 80n) & 0xffffffffn }
  return undefined
}

function deniedRange(a: Addr): string | undefined {
  for (const [c, why] of DENIED) if (inCidr(a, c)) return why
  const e = embeddedV4(a)
  if (e) {
    const why = deniedRange(e)
    if (why) return `${why} (as IPv6)`
  }
  return undefined
}
