/**
 * Item 7 (SSRF with read-back): which addresses an image source may name.
 * The policy module is pure; guardedLookup is tested with a fake resolver, so
 * these tests say exactly which answers a name may resolve to.
 */
import t from 'tap'
import type { LookupAddress } from 'node:dns'
import { checkUrl, createSourcePolicy, deniedAddress, guardedLookup, parseIp, SourceDeniedError, splitAllowList } from '../../../src/common/address-policy.js'

const none = createSourcePolicy()

t.test('item 7: every denied range is denied by default, with its name', async (t) => {
  const denied: Array<[string, RegExp]> = [
    ['127.0.0.1', /loopback/], ['127.255.255.254', /loopback/], ['::1', /loopback/],
    ['0.0.0.0', /unspecified/], ['0.1.2.3', /unspecified/], ['::', /unspecified/],
    ['169.254.169.254', /link-local/], ['169.254.0.1', /link-local/], ['fe80::1', /link-local/], ['febf:ffff::1', /link-local/],
    ['10.0.0.1', /private/], ['10.255.255.255', /private/], ['172.16.0.1', /private/], ['172.31.255.255', /private/],
    ['192.168.0.1', /private/], ['192.168.255.255', /private/], ['fc00::1', /private/], ['fd12:3456::1', /private/],
    ['100.64.0.1', /carrier-grade NAT/], ['100.127.255.255', /carrier-grade NAT/],
    ['224.0.0.1', /multicast/], ['239.255.255.250', /multicast/], ['ff02::1', /multicast/],
    ['255.255.255.255', /broadcast/], ['240.0.0.1', /reserved/],
    ['fec0::1', /site-local/],
  ]
  for (const [ip, why] of denied) t.match(deniedAddress(ip, none), why, ip)
})

t.test('item 7: public addresses and the edges just outside the ranges are allowed', async (t) => {
  for (const ip of ['8.8.8.8', '1.1.1.1', '11.0.0.1', '9.255.255.255', '172.15.255.255', '172.32.0.1', '192.167.255.255', '192.169.0.1',
    '100.63.255.255', '100.128.0.1', '169.253.255.255', '169.255.0.1', '126.255.255.255', '128.0.0.1', '223.255.255.255',
    '2001:4860:4860::8888', '2a00:1450::1', 'fbff::1', 'fe00::1', '::ffff:8.8.8.8', '64:ff9b::808:808', '2002:808:808::1']) {
    t.equal(deniedAddress(ip, none), undefined, ip)
  }
})

t.test('item 7: IPv6 forms of a denied IPv4 address are denied (mapped, compatible, NAT64, 6to4)', async (t) => {
  for (const ip of ['::ffff:127.0.0.1', '::ffff:7f00:1', '::FFFF:169.254.169.254', '::ffff:a9fe:a9fe', '::ffff:10.1.2.3',
    '::127.0.0.1', '::10.0.0.1', '64:ff9b::127.0.0.1', '64:ff9b::a9fe:a9fe', '2002:7f00:1::', '2002:c0a8:101::1', '64:ff9b:1::1',
    '0:0:0:0:0:ffff:127.0.0.1', 'fe80::1%eth0']) {
    t.ok(deniedAddress(ip, none), `${ip}: ${deniedAddress(ip, none)}`)
  }
})

t.test('item 7: the IP parser: shapes it takes and refuses', async (t) => {
  t.same(parseIp('::ffff:127.0.0.1'), parseIp('::ffff:7f00:1'))
  t.same(parseIp('1:2:3:4:5:6:7:8')?.bits, 0x00010002000300040005000600070008n)
  t.same(parseIp('::')?.bits, 0n)
  for (const bad of ['1.2.3', '1.2.3.4.5', '256.0.0.1', '01.2.3.4', '1::2::3', '1:2:3:4:5:6:7:8:9', 'g::1', '12345::', 'example.com', '']) {
    t.equal(parseIp(bad), undefined, JSON.stringify(bad))
  }
  t.match(deniedAddress('not-an-ip', none), /not an IP/)
})

t.test('item 7: the allowlist overrides, by CIDR, by address and by host name', async (t) => {
  const p = createSourcePolicy({ allow: ['127.0.0.1', '10.0.0.0/8', 'fd00::/8', 'images.lan'] })
  t.equal(deniedAddress('127.0.0.1', p), undefined, 'an address allows exactly itself')
  t.equal(deniedAddress('::ffff:127.0.0.1', p), undefined, 'and its mapped IPv6 form')
  t.match(deniedAddress('127.0.0.2', p), /loopback/, 'but not its neighbour')
  t.equal(deniedAddress('10.200.3.4', p), undefined, 'inside an allowed CIDR')
  t.match(deniedAddress('172.16.0.1', p), /private/, 'another private range stays denied')
  t.equal(deniedAddress('fd12::1', p), undefined, 'IPv6 CIDR')
  t.match(deniedAddress('fc00::1', p), /private/, 'outside the IPv6 CIDR')
  t.same(checkUrl(new URL('http://images.lan:8080/x'), p), { kind: 'trusted' }, 'an allowed name is not checked further')
  t.same(checkUrl(new URL('http://IMAGES.LAN./x'), p), { kind: 'trusted' }, 'names compare case-insensitively, trailing dot ignored')
  t.same(checkUrl(new URL('http://other.lan/x'), p), { kind: 'resolve' }, 'another name is checked when resolved')
  t.same(checkUrl(new URL('http://127.0.0.1:9/x'), p), { kind: 'allowed' })
  t.same(checkUrl(new URL('http://10.9.9.9/x'), p), { kind: 'allowed' })
  t.throws(() => createSourcePolicy({ allow: ['10.0.0.0/33'] }), /prefix/)
  t.throws(() => createSourcePolicy({ allow: ['not a host!'] }), /not a host name/)
  t.throws(() => createSourcePolicy({ allow: ['a/b'] }), /not a host name/)
  t.same(splitAllowList(' 127.0.0.1, images.lan 10.0.0.0/8,,'), ['127.0.0.1', 'images.lan', '10.0.0.0/8'])
})

t.test('item 7: checkUrl judges literal addresses at once, in every spelling the URL parser accepts', async (t) => {
  for (const u of ['http://127.0.0.1/', 'http://169.254.169.254/latest/meta-data/', 'https://[::1]:8443/', 'http://[::ffff:127.0.0.1]/',
    'http://2130706433/', 'http://0x7f.1/', 'http://0177.0.0.1/', 'http://127.1/', 'http://0/', 'http://[fe80::1]/', 'http://10.1.1.1:20000/']) {
    const v = checkUrl(new URL(u), none)
    t.equal(v.kind, 'denied', `${u}: ${JSON.stringify(v)}`)
  }
  t.equal(checkUrl(new URL('file:///etc/passwd'), none).kind, 'denied', 'only http(s)')
  t.equal(checkUrl(new URL('http://8.8.8.8/'), none).kind, 'allowed')
  t.equal(checkUrl(new URL('http://localhost/'), none).kind, 'resolve', 'a name is left to the lookup')
})

t.test('item 7: a trusted origin (the configured image service) is trusted; other ports and hosts are not', async (t) => {
  const p = createSourcePolicy({ trustedOrigins: ['http://127.0.0.1:20000'] })
  t.same(checkUrl(new URL('http://127.0.0.1:20000/images/x/download'), p), { kind: 'trusted' })
  t.equal(checkUrl(new URL('http://127.0.0.1:20001/'), p).kind, 'denied', 'same host, other port')
  t.equal(checkUrl(new URL('https://127.0.0.1:20000/'), p).kind, 'denied', 'same host and port, other scheme')
})

function fakeResolver(answers: Record<string, LookupAddress[]>) {
  const asked: string[] = []
  const resolve = (host: string, _o: unknown, cb: (e: NodeJS.ErrnoException | null, a: LookupAddress[]) => void) => {
    asked.push(host)
    const a = answers[host]
    if (!a) cb(Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' }), [])
    else cb(null, a)
  }
  return { resolve, asked }
}

function lookupP(l: ReturnType<typeof guardedLookup>, host: string, all: boolean): Promise<unknown> {
  return new Promise((resolve, reject) => {
    l(host, { all }, (err: Error | null, addr: unknown, family?: number) => (err ? reject(err) : resolve(all ? addr : [addr, family])))
  })
}

t.test('item 7: guardedLookup checks every address a name resolves to, and gives the socket only checked ones', async (t) => {
  const { resolve, asked } = fakeResolver({
    'public.example': [{ address: '93.184.216.34', family: 4 }, { address: '2606:2800:220:1::1', family: 6 }],
    'rebind.example': [{ address: '93.184.216.34', family: 4 }, { address: '127.0.0.1', family: 4 }],
    'metadata.example': [{ address: '169.254.169.254', family: 4 }],
    'mapped.example': [{ address: '::ffff:10.0.0.5', family: 6 }],
    'lan.example': [{ address: '192.168.1.10', family: 4 }],
  })
  const l = guardedLookup(createSourcePolicy(), resolve)
  t.same(await lookupP(l, 'public.example', true), [{ address: '93.184.216.34', family: 4 }, { address: '2606:2800:220:1::1', family: 6 }])
  t.same(await lookupP(l, 'public.example', false), ['93.184.216.34', 4], 'all: false gets the first checked address')
  await t.rejects(lookupP(l, 'rebind.example', true), { name: 'SourceDeniedError', message: /rebind\.example resolves to 127\.0\.0\.1, which is a loopback address/ },
    'one bad address among good ones refuses the name')
  await t.rejects(lookupP(l, 'metadata.example', false), { message: /169\.254\.169\.254, which is a link-local/ })
  await t.rejects(lookupP(l, 'mapped.example', true), { message: /private address \(as IPv6\)/ })
  await t.rejects(lookupP(l, 'nowhere.example', true), { code: 'ENOTFOUND' }, 'resolver errors pass through')
  const err = await lookupP(l, 'lan.example', true).catch((e: unknown) => e)
  t.ok(err instanceof SourceDeniedError)
  const allowLan = guardedLookup(createSourcePolicy({ allow: ['192.168.1.0/24'] }), resolve)
  t.same(await lookupP(allowLan, 'lan.example', true), [{ address: '192.168.1.10', family: 4 }], 'an allowed CIDR lets the name through')
  t.same(asked.filter((h) => h === 'lan.example').length, 2)
})
