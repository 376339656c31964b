/**
 * A generated corpus of malformed requests for /_mistify_RPC_ (both wire
 * dialects) and a few for /snapshots/download. None of them is a valid
 * request: each must be answered with an error, and none may change a
 * dataset. The corpus knows the fixture it runs against (names that exist:
 * IMAGE_ID, guests/g-ok/disk-{0,1}@s1,@s2, <pool>/other, a second pool) only
 * to aim requests at them; it never decides an outcome from the agent's code.
 */
import { prng } from './reliability.js'

export type CorpusDialect = 'v1' | 'v2' | 'either' | 'http'

export interface CorpusEntry {
  /** What it is, for failure messages and the tally. */
  readonly label: string
  /** The dialect the answer must be in; 'either' for random mutants; 'http' for the download route. */
  readonly dialect: CorpusDialect
  /** Category for the summary (envelope, method, shape, type, name, state, http, mutant). */
  readonly kind: string
  readonly body?: string | Buffer
  readonly path?: string
  readonly httpMethod?: string
  /** undefined: application/json; null: no header. */
  readonly contentType?: string | null
  /** Ids the answer may carry (null: an answer to an unreadable request). */
  readonly ids?: readonly unknown[]
  /** A 2.0 batch: the answer is an array with this many elements. */
  readonly batch?: number
  /** The transport may cut the request (bodies over the size limit). */
  readonly mayReset?: boolean
  /** No id was sent (or a mutation may have destroyed it): an empty answer is allowed. */
  readonly mayBeNotification?: boolean
}

export interface Fixture {
  readonly pool: string
  /** A second pool the agent must never touch. */
  readonly pool2: string
  readonly imageId: string
}

export const METHODS = [
  'ListImages', 'GetImage', 'RequestImage', 'DeleteImage', 'CloneImage',
  'ListSnapshots', 'GetSnapshot', 'CreateSnapshot', 'DeleteSnapshot', 'RollbackSnapshot',
  'CreateVolume', 'GetVolume', 'ListVolumes', 'DeleteDataset',
  'VerifyDisks', 'CreateGuestDisks', 'DeleteGuestsDisks',
] as const
type Method = typeof METHODS[number]

/** Methods a zero request (params [], [null], null, {}) is legitimately fine for: shape variants that decode to zero are not sent to them. */
const ZERO_OK = new Set<Method>(['ListImages', 'ListVolumes', 'ListSnapshots'])

/** Fields of each request struct and their JSON kinds, from the wire spec (§1.5), for the wrong-type variants. */
type Kind = 'str' | 'bool' | 'u64' | 'int' | 'guest' | 'disks' | 'nics' | 'map'
const IMAGE: Record<string, Kind> = { id: 'str', type: 'str', dest: 'str', source: 'str', async: 'bool' }
const SNAP: Record<string, Kind> = { id: 'str', dest: 'str', recursive: 'bool', destroyMoreRecent: 'bool' }
const VOL: Record<string, Kind> = { id: 'str', size: 'u64' }
const GUESTREQ: Record<string, Kind> = { guest: 'guest', action: 'str', args: 'map' }
const FIELDS: Record<Method, Record<string, Kind>> = {
  ListImages: IMAGE, GetImage: IMAGE, RequestImage: IMAGE, DeleteImage: IMAGE, CloneImage: IMAGE,
  ListSnapshots: SNAP, GetSnapshot: SNAP, CreateSnapshot: SNAP, DeleteSnapshot: SNAP, RollbackSnapshot: SNAP,
  CreateVolume: VOL, GetVolume: VOL, ListVolumes: VOL, DeleteDataset: VOL,
  VerifyDisks: GUESTREQ, CreateGuestDisks: GUESTREQ, DeleteGuestsDisks: GUESTREQ,
}
/** JSON texts of the wrong kind for each field kind (Go's decoder refuses each). */
const WRONG: Record<Kind, string[]> = {
  str: ['5', 'true', '[]', '{}', '-1.5', '["guests/x"]', '{"id":"x"}'],
  bool: ['"true"', '1', '0', '[]', '{}', '"x"'],
  u64: ['"64"', '-1', '1.5', '1e3', 'true', '[]', '{}', '18446744073709551616', '9007199254740993', '-0', '"0x10"'],
  int: ['"1"', '1.5', 'true', '[]'],
  guest: ['"x"', '5', '[]', 'true'],
  disks: ['"x"', '{}', '5', '[5]', '["disk"]', '[{"size":"1"}]', '[{"size":-1}]', '[{"image":5}]'],
  // (a Nic has no size or image: only its own fields' wrong types)
  nics: ['"x"', '{}', '5', '[5]', '["nic"]', '[{"vlans":"x"}]', '[{"vlans":[1.5]}]', '[{"network":5}]'],
  map: ['"x"', '[]', '5', '{"a":5}', '{"a":{}}'],
}

/** A name the agent may legitimately accept as one image or guest id component (the zfs rule, no leading - or .). */
function plainComponent(pool: string, s: string): boolean {
  return /^[A-Za-z0-9_][A-Za-z0-9_.:-]*$/.test(s) && `${pool}/guests/${s}`.length <= 255
}

export function badNames(f: Fixture): string[] {
  const big = 'a'.repeat(100 * 1024)
  const { pool, pool2 } = f
  return [
    // outside the trees: the pool root, its other datasets, other pools
    pool, `${pool}/guests/g-ok`, `${pool}/images/${f.imageId}`, 'other', 'other/vol', 'other/vol@snap', pool2, `${pool2}/vol`, `${pool2}/vol@snap`,
    // absolute and dot-dot
    '/', `/${pool}/guests/g-ok`, '/etc/passwd', '..', '../..', '../other', `../${pool2}/vol`, `../${pool2}/vol@snap`, 'guests/..', 'guests/../other',
    'guests/../../x', 'images/../guests/g-ok', 'guests/./g-ok', 'guests//g-ok', 'guests/g-ok/', './guests', 'guests/g-ok/disk-0/..', '.',
    // option-like
    '-R', '--help', '-o', '-rf', '-', '--', 'guests/-R', 'guests/--help', 'guests/-o', 'images/-o compression=off', '-o mountpoint=/', '-V1',
    // @ in odd places
    '@@', 'guests@@x', 'guests/g-ok@@s1', '@', 'guests/x@', '@s1', 'guests/g-ok/disk-0@-r', 'guests/x@y@z', 'guests/g-ok/disk-0@s1/x',
    // odd characters
    'guests/a b', 'guests/a#b', 'guests/g-ok#s1', 'guests/a%b', 'guests/a%2e%2e', 'guests/a\u0000b', '\u0000', 'guests/g-ok\u0000', 'guests/a\nb', 'guests/a\tb',
    'guests/$(id)', 'guests/`id`', 'guests/a;b', 'guests/*', 'guests/g-ok*', 'guests/?', 'guests/a|b', "guests/a'b", 'guests/a"b', 'guests/a\\b', 'guests/a~b', 'guests/a,b',
    // unicode
    'guests/é', 'guests/日本語', 'guests/\u202egnp', 'guests/🙂', 'guests/\ud800', 'guests/ｇ', 'guests/\ufeffx', 'images/\u0130', 'ɡuests/x', 'guests/x\u0301', 'guests\u2044x',
    // sizes
    big, `guests/${big}`, `guests/${'a'.repeat(300)}`, `guests/${'a/'.repeat(150)}x`, `images/${big}@s`, `guests/g-ok/disk-0@${'s'.repeat(300)}`,
    // case
    'GUESTS/x', 'Guests/g-ok', 'IMAGES',
  ]
}

/** Snapshot short names for CreateSnapshot's dest. */
function badSnapDests(): string[] {
  return ['-r', '--help', '-', '@', 'a@b', 'a/b', '../x', 'a b', 'a#b', '%', '\u0000', 'é', '🙂', '.', '..', 'a'.repeat(300), 'a'.repeat(100 * 1024), '@@', 's1\n', ' s1', 's1 ']
}

interface Req { method: Method; params: string; label: string; kind: string }

const j = (v: unknown) => JSON.stringify(v)

/** Requests (params as JSON text) for one method; each must fail. */
function methodRequests(m: Method, f: Fixture): Req[] {
  const out: Req[] = []
  const add = (kind: string, label: string, params: string) => out.push({ method: m, params, label: `${m} ${label}`, kind })
  const names = badNames(f)
  const notComponent = names.filter((n) => !plainComponent(f.pool, n))
  const existingDisk = 'guests/g-ok/disk-0'

  // wrong types, field by field, in an otherwise plausible request
  for (const [field, kind] of Object.entries(FIELDS[m])) {
    for (const w of WRONG[kind]) {
      const base: Record<string, string> = kind === 'guest' || field === 'guest' ? {} : { guest: '{"id":"corpus-g","disks":[{"size":1}]}' }
      if (FIELDS[m] === VOL && field !== 'size') base['size'] = '1'
      if (FIELDS[m] === VOL && field !== 'id') base['id'] = '"guests/corpus-v"'
      if (FIELDS[m] === IMAGE && field !== 'id') base['id'] = j(f.imageId)
      if (FIELDS[m] === IMAGE && field !== 'dest') base['dest'] = '"guests/corpus-c"'
      if (FIELDS[m] === SNAP && field !== 'id') base['id'] = j(existingDisk)
      if (FIELDS[m] === SNAP && field !== 'dest') base['dest'] = '"corpus-s"'
      if (FIELDS[m] !== GUESTREQ) delete base['guest']
      base[field] = w
      add('type', `${field}=${w}`, `{${Object.entries(base).map(([k, v]) => `${j(k)}:${v}`).join(',')}}`)
    }
  }
  // nested wrong types in the guest
  if (FIELDS[m] === GUESTREQ) {
    for (const [field, kind] of Object.entries({ id: 'str', disks: 'disks', memory: 'u64', vnc: 'int', metadata: 'map', nics: 'nics' } as Record<string, Kind>)) {
      for (const w of WRONG[kind]) {
        const g: Record<string, string> = { id: '"corpus-g"', disks: '[{"size":1}]' }
        g[field] = w
        add('type', `guest.${field}=${w}`, `{"guest":{${Object.entries(g).map(([k, v]) => `${j(k)}:${v}`).join(',')}}}`)
      }
    }
  }

  // bad names in every name slot
  const ds = (label: string, mk: (n: string) => unknown, list = names) => { for (const n of list) add('name', `${label}=${j(n).slice(0, 60)}`, j(mk(n))) }
  switch (m) {
    case 'GetImage': case 'DeleteImage': case 'RequestImage':
      // RequestImage of a well-formed id would fetch it (and fail upstream): only refused ids here; sources below.
      ds('id', (n) => ({ id: n }), m === 'RequestImage' ? notComponent : names)
      break
    case 'CloneImage':
      ds('id', (n) => ({ id: n, dest: 'guests/corpus-c' }))
      ds('dest', (n) => ({ id: f.imageId, dest: n }), [...names, 'guests', 'images', `${f.pool}/guests`, `${f.pool}/images`, `${f.pool}/other/x`, `${f.pool2}/x`, `${f.pool}/guests/x@s`, `${f.pool}/guests/../other`])
      break
    case 'ListSnapshots': case 'GetSnapshot':
      ds('id', (n) => ({ id: n }))
      break
    case 'DeleteSnapshot':
      ds('id', (n) => ({ id: n, recursive: true }))
      ds('id', (n) => ({ id: n }), ['guests', 'images', 'guests@s1', 'images@x'])
      break
    case 'RollbackSnapshot':
      ds('id', (n) => ({ id: n, destroyMoreRecent: true }))
      ds('id', (n) => ({ id: n, recursive: true, destroyMoreRecent: true }), ['guests', 'images', 'guests@s1'])
      break
    case 'CreateSnapshot':
      ds('id', (n) => ({ id: n, dest: 'corpus-s', recursive: true }))
      for (const d of badSnapDests()) add('name', `dest=${j(d).slice(0, 60)}`, j({ id: existingDisk, dest: d }))
      break
    case 'CreateVolume':
      ds('id', (n) => ({ id: n, size: 1 }), [...names, 'guests', 'images'])
      break
    case 'GetVolume':
      ds('id', (n) => ({ id: n }))
      break
    case 'DeleteDataset':
      ds('id', (n) => ({ id: n }), [...names, 'guests', 'images'])
      break
    case 'VerifyDisks': case 'CreateGuestDisks': case 'DeleteGuestsDisks':
      ds('guest.id', (n) => ({ guest: { id: n, disks: [{ size: 1 }] } }), notComponent)
      if (m !== 'DeleteGuestsDisks') ds('disk.image', (n) => ({ guest: { id: 'corpus-g', disks: [{ size: 1 }, { image: n }] } }))
      break
    case 'ListImages': case 'ListVolumes':
      break // they take no name
  }

  // missing fields and values the method refuses
  const refused: Partial<Record<Method, unknown[]>> = {
    GetImage: [{}, { id: '' }, { id: 'no-such-image' }, { ID: 'no-such-image' }],
    DeleteImage: [{}, { id: '' }, { id: 'no-such-image' }, { id: f.imageId } /* guest disks are cloned from it */],
    RequestImage: [{}, { id: '' }, { id: '', source: 'file:///etc/passwd' }, { async: true }, { id: '../x', async: true }],
    CloneImage: [{}, { id: f.imageId }, { dest: 'guests/corpus-c' }, { id: '', dest: 'guests/corpus-c' }, { id: 'no-such-image', dest: 'guests/corpus-c' }, { id: f.imageId, dest: existingDisk }],
    GetSnapshot: [{}, { id: '' }, { id: 'guests/g-ok' }, { id: existingDisk }, { id: `${existingDisk}@nope` }],
    CreateSnapshot: [{}, { id: '' }, { dest: 'corpus-s' }, { id: existingDisk }, { id: existingDisk, dest: '' }, { id: existingDisk, dest: 's1' }, { id: `${existingDisk}@s1`, dest: 'corpus-s' }, { id: 'guests/nope', dest: 'corpus-s' }],
    DeleteSnapshot: [{}, { id: '' }, { id: 'guests/g-ok' }, { id: existingDisk }, { id: `${existingDisk}@nope` }, { id: `images/${f.imageId}` }],
    RollbackSnapshot: [{}, { id: '' }, { id: existingDisk }, { id: `${existingDisk}@nope` }, { id: `${existingDisk}@s1` } /* s2 is newer */],
    ListSnapshots: [{ id: 'guests/nope' }, { id: 'images/nope' }],
    CreateVolume: [{}, { id: 'guests/corpus-v' }, { id: 'guests/corpus-v', size: 0 }, { size: 1 }, { id: '', size: 1 }, { id: existingDisk, size: 1 }, { id: 'guests/g-ok', size: 1 }, { id: 'guests/corpus-v', size: 2 ** 32 }, { id: 'guests/corpus-v', size: 2 ** 33 }, { id: 'guests/corpus-v', size: 2 ** 52 }, { id: 'guests/corpus-v@s', size: 1 }],
    GetVolume: [{}, { id: '' }, { id: 'guests/g-ok' }, { id: `${existingDisk}@s1` }, { id: 'guests/nope' }],
    DeleteDataset: [{}, { id: '' }, { id: 'guests/nope' }, { id: `images/${f.imageId}` }, { id: `images/${f.imageId}@test` }, { id: `${existingDisk}*` }],
    VerifyDisks: [{}, { guest: null }, { guest: {} }, { guest: { id: 'corpus-g' } }, { guest: { id: 'corpus-g', disks: [] } }, { guest: { id: 'corpus-g', disks: [{}] } }, { guest: { id: 'corpus-g', disks: [{ size: 0 }] } }, { guest: { id: 'corpus-g', disks: [{ size: 1e10 }] } }, { guest: { id: 'corpus-g', disks: [{ size: 1 }, { image: 'no-such-image' }] } }, { guest: { id: '', disks: [{ size: 1 }] } }],
    CreateGuestDisks: [{}, { guest: null }, { guest: {} }, { guest: { id: 'corpus-g' } }, { guest: { id: 'corpus-g', disks: [] } }, { guest: { id: 'corpus-g', disks: [{}] } }, { guest: { id: 'corpus-g', disks: [{ size: 1 }, { size: 1e10 }] } }, { guest: { id: 'corpus-g', disks: [{ size: 1 }, { image: 'no-such-image' }] } }, { guest: { id: 'g-ok', disks: [{ size: 1e9 }] } }],
    DeleteGuestsDisks: [{}, { guest: null }, { guest: {} }, { guest: { id: '' } }],
  }
  for (const p of refused[m] ?? []) add('state', j(p).slice(0, 80), j(p))

  if (m === 'RequestImage') {
    // Well-formed ids with sources that cannot be an image: each is fetched and must fail, leaving nothing.
    const sources = ['file:///etc/passwd', 'file:///dev/null', 'file:///nonexistent', 'file:///proc/self/environ', 'ftp://127.0.0.1/x', 'http://127.0.0.1:1/x',
      'javascript:alert(1)', 'gopher://127.0.0.1/x', '../../etc/passwd', 'http://[::1', '\u0000', 'file:///dev/zero', 'data:,hello', `file:///dev/zvol/${f.pool}/other/vol`]
    sources.forEach((s, i) => add('name', `source=${j(s)}`, j({ id: `corpus-src-${i}`, source: s })))
  }
  return out
}

function v1Body(method: string, params: string, id: number): string {
  return `{"method":${j(method)},"params":[${params}],"id":${id}}`
}
function v2Body(method: string, params: string, id: number, wrap: boolean): string {
  return `{"jsonrpc":"2.0","method":${j(method)},"params":${wrap ? `[${params}]` : params},"id":${id}}`
}

/** The deterministic corpus (grouped by method, then the envelope and transport cases). */
export function buildCorpus(f: Fixture): CorpusEntry[] {
  const out: CorpusEntry[] = []
  let id = 1000
  const v1 = (kind: string, label: string, body: string | Buffer, o: Partial<CorpusEntry> = {}) => out.push({ kind, label: `v1 ${label}`, dialect: 'v1', body, ...o })
  const v2 = (kind: string, label: string, body: string | Buffer, o: Partial<CorpusEntry> = {}) => out.push({ kind, label: `v2 ${label}`, dialect: 'v2', body, ...o })

  for (const m of METHODS) {
    for (const r of methodRequests(m, f)) {
      const a = id++
      v1(r.kind, r.label, v1Body(`ImageStore.${m}`, r.params, a), { ids: [a] })
      const b = id++
      // 2.0: alternate the bare and the ImageStore. spelling, and params as an array or the object itself.
      v2(r.kind, r.label, v2Body(b % 2 ? m : `ImageStore.${m}`, r.params, b, b % 4 < 2), { ids: [b, null] })
    }
    // params shapes
    const shapes1: Array<[string, string | undefined]> = [['missing', undefined], ['null', 'null'], ['object', '{}'], ['string', '"x"'], ['number', '5'], ['true', 'true'],
      ['[5]', '[5]'], ['["x"]', '["x"]'], ['[[]]', '[[]]'], ['[true]', '[true]'], ['2 elements, first bad', '["x",{}]']]
    if (!ZERO_OK.has(m)) shapes1.push(['[]', '[]'], ['[null]', '[null]'], ['[{}]', '[{}]'], ['2 elements', '[{},{}]'])
    for (const [label, p] of shapes1) {
      const a = id++
      v1('shape', `${m} params ${label}`, `{"method":"ImageStore.${m}"${p === undefined ? '' : `,"params":${p}`},"id":${a}}`, { ids: [a] })
    }
    const shapes2: Array<[string, string | undefined]> = [['string', '"x"'], ['number', '5'], ['true', 'true'], ['2 elements', '[{},{}]'], ['3 elements', '[{},{},{}]'],
      ['[5]', '[5]'], ['["x"]', '["x"]'], ['[[]]', '[[]]']]
    if (!ZERO_OK.has(m)) shapes2.push(['missing', undefined], ['null', 'null'], ['[]', '[]'], ['[null]', '[null]'], ['{}', '{}'])
    for (const [label, p] of shapes2) {
      const b = id++
      v2('shape', `${m} params ${label}`, `{"jsonrpc":"2.0","method":"${m}"${p === undefined ? '' : `,"params":${p}`},"id":${b}}`, { ids: [b, null] })
    }
  }

  // method names
  const badMethods: unknown[] = ['', 'ImageStore', 'ImageStore.', '.ListImages', 'ImageStore.ListImages.x', 'imagestore.ListImages', 'Other.ListImages', 'ImageStore.listImages',
    'ImageStore.Nope', 'ImageStore.__proto__', 'ImageStore.constructor', 'ImageStore.toString', 'ImageStore.hasOwnProperty', '__proto__', 'constructor', 'prototype',
    'ImageStore.DownloadSnapshot', 'ImageStore.Run', 'ImageStore.SpaceAvailible', 'ImageStore.RequestClone', 'ImageStore.ListImages\u0000', 'ImageStore.ListImages ', ' ImageStore.ListImages',
    'ImageStore.ＬistImages', 'ImageStore..ListImages', 'ImageStore/ListImages', 'rpc.discover', 'system.listMethods', 'a'.repeat(100 * 1024), 5, [], {}, true]
  for (const m of badMethods) {
    const a = id++
    v1(typeof m === 'string' ? 'method' : 'type', `method ${j(m).slice(0, 50)}`, `{"method":${j(m)},"params":[{}],"id":${a}}`, { ids: [a] })
    const b = id++
    v2(typeof m === 'string' ? 'method' : 'type', `method ${j(m).slice(0, 50)}`, `{"jsonrpc":"2.0","method":${j(m)},"params":[{}],"id":${b}}`, { ids: [b, null] })
  }

  // bodies that are not JSON, or not an envelope (gorilla answers 400 plain text)
  const rand = prng(7)
  const junk = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)))
  const v1Bodies: Array<[string, string | Buffer]> = [
    ['empty', ''], ['space', ' '], ['{', '{'], ['}', '}'], ['{"method"', '{"method"'], ['truncated', '{"method":"ImageStore.ListImages","params":[{}],"id":1'],
    ['single quotes', "{'method':'ImageStore.ListImages','params':[{}],'id':1}"], ['nul', 'nul'], ['tru', 'tru'], ['NUL byte', '\u0000'],
    ['leading zero id', '{"method":"ImageStore.ListImages","params":[{}],"id":01}'], ['bad exponent', '{"method":"ImageStore.ListImages","params":[{}],"id":1e}'],
    ['NaN id', '{"method":"ImageStore.ListImages","params":[{}],"id":NaN}'], ['trailing comma', '{"method":"ImageStore.ListImages","params":[{},],"id":1}'],
    ['comment', '{"method":"ImageStore.ListImages",/*x*/"params":[{}],"id":1}'], ['BOM', '\ufeff{"method":"ImageStore.ListImages","params":[{}],"id":1}'],
    ['string', '"ImageStore.ListImages"'], ['number', '5'], ['null', 'null'], ['true', 'true'], ['{}', '{}'], ['no method', '{"params":[{}],"id":1}'],
    ['deep objects', `${'{"a":'.repeat(20000)}1${'}'.repeat(20000)}`], ['unterminated string', '{"method":"ImageStore.ListImages'], ['bad escape', '{"method":"ImageStore.\\xListImages","params":[{}],"id":1}'],
    ['lone surrogate escape', '{"method":"ImageStore.\\ud800","params":[{}],"id":1}'], ['invalid UTF-8', Buffer.concat([Buffer.from('{"method":"ImageStore.GetImage","params":[{"id":"'), Buffer.from([0xff, 0xfe, 0xc0]), Buffer.from('"}],"id":1}')])],
    ['UTF-16', Buffer.from('{"method":"ImageStore.ListImages","params":[{}],"id":1}', 'utf16le')],
    ...Array.from({ length: 8 }, (_, i): [string, Buffer] => [`random bytes ${i}`, junk(16 + i * 97)]),
  ]
  for (const [label, body] of v1Bodies) {
    // Random bytes may look like 2.0 (a '[' first): either dialect's error will do for them.
    if (label.startsWith('random')) out.push({ kind: 'envelope', label, dialect: 'either', body, ids: [1, null] })
    else v1('envelope', label, body, { ids: [1] })
  }
  // 2.0 envelopes
  const v2Bodies: Array<[string, string, number?]> = [
    ['[', '['], ['{"jsonrpc":"2.0",', '{"jsonrpc":"2.0",'], ['unterminated batch', '[{"jsonrpc":"2.0","method":"ListImages","id":1}'],
    ['deep arrays', '['.repeat(100000)], ['deep arrays closed', `${'['.repeat(5000)}${']'.repeat(5000)}`, 1],
    ['jsonrpc 1.0', '{"jsonrpc":"1.0","method":"ListImages","params":[{}],"id":1}'], ['jsonrpc 2', '{"jsonrpc":2,"method":"ListImages","params":[{}],"id":1}'],
    ['jsonrpc "2"', '{"jsonrpc":"2","method":"ListImages","params":[{}],"id":1}'], ['jsonrpc null', '{"jsonrpc":null,"method":"ListImages","params":[{}],"id":1}'],
    ['jsonrpc "2.0 "', '{"jsonrpc":"2.0 ","method":"ListImages","params":[{}],"id":1}'], ['no method', '{"jsonrpc":"2.0","params":[{}],"id":1}'],
    ['method null', '{"jsonrpc":"2.0","method":null,"id":1}'], ['id object', '{"jsonrpc":"2.0","method":"ListImages","id":{}}'],
    ['id array', '{"jsonrpc":"2.0","method":"ListImages","id":[1]}'], ['id true', '{"jsonrpc":"2.0","method":"ListImages","id":true}'],
    ['empty batch', '[]'], ['batch of a number', '[1]', 1], ['batch of an array', '[[]]', 1], ['batch of a string', '["x"]', 1], ['batch of {}', '[{}]', 1],
    ['batch of 3 bad', '[{"jsonrpc":"2.0","method":"GetImage","params":{"id":"../x"},"id":1},{"jsonrpc":"2.0","method":"Nope","id":2},{"jsonrpc":"2.0","method":"CreateVolume","params":{"id":"other/x","size":1},"id":3}]', 3],
    ['batch of 50 bad', `[${Array.from({ length: 50 }, (_, i) => `{"jsonrpc":"2.0","method":"CloneImage","params":{"id":${j(f.imageId)},"dest":"../x${i}"},"id":${i + 1}}`).join(',')}]`, 50],
    ['batch mixing dialects', '[{"method":"ImageStore.ListImages","params":[{}],"id":1},{"jsonrpc":"2.0","method":"GetImage","params":{"id":"@@"},"id":2}]', 2],
  ]
  for (const [label, body, batch] of v2Bodies) {
    v2('envelope', label, body, { ids: [1, 2, 3, ...Array.from({ length: 50 }, (_, i) => i + 1), null], ...(batch ? { batch } : {}) })
  }

  // transport: method, content type, size
  const ok1 = (n: number) => v1Body('ImageStore.GetImage', '{"id":"../x"}', n)
  const big = `{"method":"ImageStore.GetImage","params":[{"id":"${'a'.repeat(2 * 1024 * 1024)}"}],"id":1}`
  const http = (label: string, o: Partial<CorpusEntry>) => out.push({ kind: 'http', label, dialect: 'v1', ids: [1], ...o })
  http('GET', { httpMethod: 'GET' })
  http('PUT', { httpMethod: 'PUT', body: ok1(1) })
  http('DELETE', { httpMethod: 'DELETE' })
  http('text/plain', { contentType: 'text/plain', body: '{"method":"ImageStore.ListImages","params":[{}],"id":1}' })
  http('no Content-Type', { contentType: null, body: '{"method":"ImageStore.ListImages","params":[{}],"id":1}' })
  http('form', { contentType: 'application/x-www-form-urlencoded', body: 'method=ImageStore.ListImages' })
  http('json-rpc type with a 1.0 body', { contentType: 'application/json-rpc', body: '{"method":"ImageStore.ListImages","params":[{}],"id":1}' })
  http('2 MiB body (1.0)', { body: big, mayReset: true })
  http('2 MiB body (2.0)', { dialect: 'v2', body: `{"jsonrpc":"2.0",${big.slice(1)}`, mayReset: true })
  http('charset utf-16 with a bad body', { contentType: 'application/json; charset=utf-16', body: ok1(1) })

  // the download route: refused before any byte
  const dl = (label: string, path: string, o: Partial<CorpusEntry> = {}) => out.push({ kind: 'download', label: `download ${label}`, dialect: 'http', path, httpMethod: 'GET', ...o })
  const q = (s: string) => encodeURIComponent(s)
  for (const n of ['other/vol@snap', '../other/vol@snap', `${f.pool2}/vol@snap`, `../${f.pool2}/vol@snap`, `/${f.pool}/other/vol@snap`, '', '-R', '--help', '@@', 'guests/g-ok/disk-0', 'guests/g-ok/disk-0@nope', 'guests/a b@s', 'guests/é@s', 'a'.repeat(20000)]) {
    dl(`id=${j(n).slice(0, 40)}`, `/snapshots/download?id=${q(n)}`)
  }
  dl('from outside', `/snapshots/download?id=${q('guests/g-ok/disk-0@s2')}&from=${q('other/vol@snap')}`)
  dl('from dot-dot', `/snapshots/download?id=${q('guests/g-ok/disk-0@s2')}&from=${q('../../x@y')}`)
  dl('from option', `/snapshots/download?id=${q('guests/g-ok/disk-0@s2')}&from=-R`)
  dl('garbage token', '/snapshots/download?token=garbage')
  dl('id twice', `/snapshots/download?id=${q('guests/g-ok/disk-0@s1')}&id=${q('other/vol@snap')}`)
  dl('recursive=maybe', `/snapshots/download?id=${q('guests/g-ok/disk-0@s1')}&recursive=maybe`)
  dl('POST not JSON', '/snapshots/download', { httpMethod: 'POST', body: '{' })
  dl('POST array', '/snapshots/download', { httpMethod: 'POST', body: '[]' })
  dl('POST outside', '/snapshots/download', { httpMethod: 'POST', body: j({ id: 'other/vol@snap' }) })
  dl('POST wrong type', '/snapshots/download', { httpMethod: 'POST', body: '{"id":5}' })
  return out
}

/** Categories small enough to always send whole; the big ones (type, shape, name) are sampled down to `size`. */
const WHOLE = new Set(['envelope', 'http', 'download', 'method', 'state'])

/** At most `size` entries (0: all): every entry of the small categories, an even stride through the rest. */
export function sample(corpus: readonly CorpusEntry[], size: number): CorpusEntry[] {
  if (size <= 0 || size >= corpus.length) return [...corpus]
  const whole = corpus.filter((e) => WHOLE.has(e.kind))
  const rest = corpus.filter((e) => !WHOLE.has(e.kind))
  const want = Math.max(0, size - whole.length)
  const stride = rest.length / Math.max(1, want)
  const picked = Array.from({ length: Math.min(want, rest.length) }, (_, i) => rest[Math.floor(i * stride)]!)
  return [...picked, ...whole]
}

/**
 * Random mutants of requests that are bad already and stay bad under any
 * small edit (their names are far from anything under images/ or guests/,
 * and none is a method that a request with a mangled key would turn into a
 * valid call, as ListSnapshots without an id is): bytes flipped, dropped,
 * doubled, the body cut. A mutant may change dialect, rewrite its id or lose
 * it, so either dialect's error with any id (or, without an id, silence) is
 * accepted; it must still never succeed.
 */
export function mutants(f: Fixture, n: number, seed: number): CorpusEntry[] {
  const rand = prng(seed)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!
  const templates = [
    v1Body('ImageStore.GetImage', j({ id: '../../other' }), 1),
    v1Body('ImageStore.CreateVolume', j({ id: '../../other/vol', size: 1 }), 1),
    v1Body('ImageStore.DeleteDataset', j({ id: `../${f.pool2}/vol` }), 1),
    v1Body('ImageStore.CloneImage', j({ id: f.imageId, dest: `../../${f.pool2}/x` }), 1),
    v1Body('ImageStore.GetSnapshot', j({ id: '../../other/vol@snap' }), 1),
    v1Body('ImageStore.RollbackSnapshot', j({ id: '../../other/vol@snap', destroyMoreRecent: true }), 1),
    v1Body('ImageStore.DeleteGuestsDisks', j({ guest: { id: '../../other' } }), 1),
    v2Body('CreateSnapshot', j({ id: '../../other/vol', dest: 'mut', recursive: true }), 1, true),
    v2Body('DeleteSnapshot', j({ id: `../${f.pool2}/vol@snap`, recursive: true }), 1, false),
    v2Body('GetVolume', j({ id: '../../other/vol' }), 1, false),
    v2Body('CreateGuestDisks', j({ guest: { id: '../../other', disks: [{ size: 1 }] } }), 1, true),
    v2Body('RequestImage', j({ id: '../../other' }), 1, false),
  ]
  const alphabet = ['"', '\\', '{', '}', '[', ']', ',', ':', '\u0000', '\u00e9', '\ud83d', '0', '-', '@', '/', '.', ' ', 'a', 'n', 't', '\n', '1e9']
  const out: CorpusEntry[] = []
  for (let i = 0; i < n; i++) {
    let s = pick(templates)
    const edits = 1 + Math.floor(rand() * 3)
    const ops: string[] = []
    for (let e = 0; e < edits; e++) {
      const at = Math.floor(rand() * (s.length + 1))
      const op = pick(['flip', 'drop', 'insert', 'double', 'cut'] as const)
      ops.push(`${op}@${at}`)
      if (op === 'flip') s = s.slice(0, at) + pick(alphabet) + s.slice(at + 1)
      else if (op === 'drop') s = s.slice(0, at) + s.slice(at + 1)
      else if (op === 'insert') s = s.slice(0, at) + pick(alphabet) + s.slice(at)
      else if (op === 'double') s = s.slice(0, at) + s.slice(at, at + 8) + s.slice(at)
      else s = s.slice(0, at)
    }
    out.push({ kind: 'mutant', label: `mutant ${i} (${ops.join(' ')})`, dialect: 'either', body: s, mayBeNotification: true })
  }
  return out
}
