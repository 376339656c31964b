import t from 'tap'
import { decodeParams, goStructName, goTypeName, matchField, ParamsTypeError, zeroStruct } from '../../../src/agent/rpc/gorilla/decode.js'
import { parseJson } from '../../../src/agent/rpc/gorilla/json.js'
import { array, bool, int, map, str, struct, uint64, type StructSpec } from '../../../src/agent/rpc/schema.js'
import { InvalidParamsError } from '../../../src/agent/errors.js'

// The real request structs, so these tests follow any change to them.
import { IMAGE_REQUEST as IMAGE, SNAPSHOT_REQUEST as SNAPSHOT, VOLUME_REQUEST as VOLUME, DISK, NIC, GUEST, GUEST_REQUEST } from '../../../src/agent/rpc/requests.js'

/** Decode JSON text (through our parser, so number literals are exact). */
const dec = (json: string, spec: StructSpec) => decodeParams(parseJson(json), spec)
const errOf = (json: string, spec: StructSpec): string | undefined => {
  try {
    dec(json, spec)
    return undefined
  } catch (e) {
    if (!(e instanceof ParamsTypeError)) throw e
    return e.message
  }
}

const ZERO_GUEST = { id: '', type: '', image: '', nics: null, disks: null, state: '', memory: 0, cpu: 0, vnc: 0, metadata: null }
const ZERO_NIC = { name: '', network: '', model: '', mac: '', address: '', netmask: '', gateway: '', device: '', vlans: null }

t.test('plain structs, zero values, unknown keys', async (t) => {
  t.same(dec('{"id":"a","type":"zfs","dest":"d","source":"s"}', IMAGE), { id: 'a', type: 'zfs', dest: 'd', source: 's', async: false, format: '', sha256: '' })
  t.same(dec('{}', IMAGE), { id: '', type: '', dest: '', source: '', async: false, format: '', sha256: '' })
  t.same(dec('{"id":"a","whatever":[1,{"x":2}],"nope":null}', IMAGE), { id: 'a', type: '', dest: '', source: '', async: false, format: '', sha256: '' })
  t.same(dec('{"id":"x","recursive":true,"destroyMoreRecent":true}', SNAPSHOT), { id: 'x', dest: '', recursive: true, destroyMoreRecent: true })
  t.same(dec('{"id":"v","size":64}', VOLUME), { id: 'v', size: 64 })
  t.same(dec('null', VOLUME), { id: '', size: 0 }, 'null leaves the struct at zero')
  t.same(decodeParams(undefined, VOLUME), { id: '', size: 0 })
  t.same(dec('{"id":null,"size":null,"recursive":null}', { ...VOLUME, recursive: bool }), { id: '', size: 0, recursive: false },
    'null into a scalar leaves the zero value')
  t.same(Object.keys(dec('{"size":1,"id":"a"}', VOLUME)), ['id', 'size'], 'keys in struct order')
  t.same(zeroStruct(GUEST_REQUEST), { guest: null, action: '', args: null })
})

t.test('keys match the Go way', async (t) => {
  t.same(dec('{"ID":"a","Dest":"b","SOURCE":"c","tYpE":"d","Async":true,"FORMAT":"raw"}', IMAGE), { id: 'a', type: 'd', dest: 'b', source: 'c', async: true, format: 'raw', sha256: '' })
  t.same(dec('{"DestroyMoreRecent":true,"RECURSIVE":true}', SNAPSHOT), { id: '', dest: '', recursive: true, destroyMoreRecent: true })
  t.same(dec('{"id":"b","ID":"a"}', IMAGE).id, 'a', 'both keys fill id: the later one wins')
  t.same(dec('{"ID":"a","id":"b"}', IMAGE).id, 'b')
  t.same(dec('{"\u017fource":"s"}', IMAGE).source, 's', "Go folds 'ſ' to s")
  t.same(dec('{"\u212aind":"k"}', { kind: str }).kind, 'k', 'Go folds the Kelvin sign to k')
  t.same(dec('{"\u0131d":"x"}', IMAGE).id, '', "dotless i is not i in Go's fold")
  t.same(dec('{"i d":"x","id ":"y"}', IMAGE).id, '', 'no trimming')
  // With two fields that fold alike, an exact match wins, else the first field.
  const AB: StructSpec = { ab: str, AB: str }
  t.same(dec('{"AB":"1"}', AB), { ab: '', AB: '1' })
  t.same(dec('{"ab":"1"}', AB), { ab: '1', AB: '' })
  t.same(dec('{"Ab":"1"}', AB), { ab: '1', AB: '' })
  t.equal(matchField(AB, 'aB'), 'ab')
  t.equal(matchField({ a_b: str }, 'A_B'), 'a_b')
  t.equal(matchField({ a_b: str }, 'a-b'), undefined, 'non-letters match exactly')
  t.equal(matchField(IMAGE, 'toString'), undefined, 'no prototype keys')
})

t.test('integers: what Go accepts and rejects', async (t) => {
  const ok: Array<[string, number]> = [['0', 0], ['64', 64], ['9007199254740991', 9007199254740991]]
  for (const [lit, n] of ok) t.equal(dec(`{"size":${lit}}`, VOLUME).size, n, lit)
  const bad: Array<[string, string]> = [
    ['"64"', 'json: cannot unmarshal string into Go value of type uint64'],
    ['-1', 'json: cannot unmarshal number -1 into Go value of type uint64'],
    ['-0', 'json: cannot unmarshal number -0 into Go value of type uint64'],
    ['1.5', 'json: cannot unmarshal number 1.5 into Go value of type uint64'],
    ['1.0', 'json: cannot unmarshal number 1.0 into Go value of type uint64'],
    ['1e10', 'json: cannot unmarshal number 1e10 into Go value of type uint64'],
    ['18446744073709551616', 'json: cannot unmarshal number 18446744073709551616 into Go value of type uint64'],
    ['true', 'json: cannot unmarshal bool into Go value of type uint64'],
    ['{}', 'json: cannot unmarshal object into Go value of type uint64'],
    ['[]', 'json: cannot unmarshal array into Go value of type uint64'],
  ]
  for (const [lit, msg] of bad) t.equal(errOf(`{"size":${lit}}`, VOLUME), msg, lit)
  // Above 2^53-1 Go would accept; we refuse rather than round.
  for (const lit of ['9007199254740993', '18446744073709551615']) {
    t.equal(errOf(`{"size":${lit}}`, VOLUME),
      `json: cannot unmarshal number ${lit} into Go value of type uint64: above 2^53-1, the largest integer this server keeps exactly`)
  }
  const INT: StructSpec = { n: int }
  t.equal(dec('{"n":-5}', INT).n, -5)
  t.equal(dec('{"n":-0}', INT).n, 0, 'ParseInt accepts -0')
  t.equal(errOf('{"n":1e2}', INT), 'json: cannot unmarshal number 1e2 into Go value of type int')
  t.equal(errOf('{"n":9223372036854775808}', INT), 'json: cannot unmarshal number 9223372036854775808 into Go value of type int')
  t.match(errOf('{"n":-9007199254740992}', INT), /above 2\^53-1/)
})

t.test('other type mismatches and which error Go reports', async (t) => {
  t.equal(errOf('{"id":5}', IMAGE), 'json: cannot unmarshal number into Go value of type string')
  t.equal(errOf('{"id":true}', IMAGE), 'json: cannot unmarshal bool into Go value of type string')
  t.equal(errOf('{"id":{}}', IMAGE), 'json: cannot unmarshal object into Go value of type string')
  t.equal(errOf('{"recursive":"yes"}', SNAPSHOT), 'json: cannot unmarshal string into Go value of type bool')
  t.equal(errOf('{"recursive":1}', SNAPSHOT), 'json: cannot unmarshal number into Go value of type bool')
  // Go keeps decoding after most mismatches and reports the first; a number
  // in the wrong place stops it at once.
  t.equal(errOf('{"size":"x","id":true}', VOLUME), 'json: cannot unmarshal string into Go value of type uint64')
  t.equal(errOf('{"size":"x","id":5}', VOLUME), 'json: cannot unmarshal number into Go value of type string')
  t.equal(errOf('{"size":-1,"id":[]}', VOLUME), 'json: cannot unmarshal number -1 into Go value of type uint64')
  const e = (() => { try { dec('{"size":"1"}', VOLUME) } catch (e) { return e } })()
  t.type(e, ParamsTypeError)
  t.type(e, InvalidParamsError, 'maps to invalid_params')
  t.equal((e as ParamsTypeError).code, 'invalid_params')
})

t.test('the value itself is not an object', async (t) => {
  t.equal(errOf('[1]', IMAGE), 'json: cannot unmarshal array into Go value of type rpc.ImageRequest')
  t.equal(errOf('"x"', SNAPSHOT), 'json: cannot unmarshal string into Go value of type rpc.SnapshotRequest')
  t.equal(errOf('5', VOLUME), 'json: cannot unmarshal number into Go value of type rpc.VolumeRequest')
  t.equal(errOf('true', GUEST_REQUEST), 'json: cannot unmarshal bool into Go value of type rpc.GuestRequest')
  t.equal(errOf('[]', { x: str }), 'json: cannot unmarshal array into Go value of type struct')
  t.throws(() => decodeParams(parseJson('[]'), { x: str }, 'pkg.Thing'), { message: 'json: cannot unmarshal array into Go value of type pkg.Thing' })
})

t.test('Go type names', async (t) => {
  t.equal(goStructName(GUEST), 'client.Guest')
  t.equal(goStructName(DISK), 'client.Disk')
  t.equal(goStructName(NIC), 'client.Nic')
  t.equal(goStructName(GUEST_REQUEST), 'rpc.GuestRequest')
  t.equal(goTypeName(array(struct(NIC))), '[]client.Nic')
  t.equal(goTypeName(map(str)), 'map[string]string')
  t.equal(goTypeName(array(int)), '[]int')
  t.equal(goTypeName(struct(GUEST, true)), 'client.Guest')
})

t.test('GuestRequest: nested structs, arrays, maps, null', async (t) => {
  t.same(dec('{}', GUEST_REQUEST), { guest: null, action: '', args: null })
  t.same(dec('{"guest":null,"args":null}', GUEST_REQUEST), { guest: null, action: '', args: null })
  t.same(dec('{"guest":{}}', GUEST_REQUEST).guest, ZERO_GUEST)
  const full = dec(`{
    "guest": {
      "id": "g1", "type": "qemu", "image": "img", "state": "running", "memory": 1024, "cpu": 2, "vnc": -1,
      "nics": [{"name": "eth0", "mac": "aa", "vlans": [1, 2], "extra": "dropped"}, {}],
      "disks": [{"bus": "virtio", "size": 64, "image": "img"}, null],
      "metadata": {"a": "b", "n": null}
    },
    "action": "create",
    "args": {"x": "y"}
  }`, GUEST_REQUEST)
  t.same(full, {
    guest: {
      id: 'g1', type: 'qemu', image: 'img',
      nics: [{ ...ZERO_NIC, name: 'eth0', mac: 'aa', vlans: [1, 2] }, ZERO_NIC],
      disks: [
        { bus: 'virtio', device: '', size: 64, volume: '', image: 'img', source: '' },
        { bus: '', device: '', size: 0, volume: '', image: '', source: '' },
      ],
      state: 'running', memory: 1024, cpu: 2, vnc: -1, metadata: { a: 'b', n: '' },
    },
    action: 'create',
    args: { x: 'y' },
  })
  t.same(dec('{"guest":{"nics":[],"disks":[],"metadata":{}}}', GUEST_REQUEST).guest, { ...ZERO_GUEST, nics: [], disks: [], metadata: {} },
    'empty stays empty (not null)')
  t.same(dec('{"Guest":{"ID":"x","Disks":[{"SIZE":3}]}}', GUEST_REQUEST).guest,
    { ...ZERO_GUEST, id: 'x', disks: [{ bus: '', device: '', size: 3, volume: '', image: '', source: '' }] }, 'nested keys fold too')
  t.same(dec('{"guest":{"id":"a","metadata":{"k":"1"}},"guest":{"type":"t","metadata":{"j":"2"}}}', GUEST_REQUEST).guest,
    { ...ZERO_GUEST, id: 'a', type: 't', metadata: { k: '1', j: '2' } }, 'a repeated struct or map key decodes into what is there')
  t.same(dec('{"guest":{"id":"a"},"guest":null}', GUEST_REQUEST).guest, null, 'null resets a pointer')
  const m = dec('{"args":{"__proto__":"x","constructor":"y"}}', GUEST_REQUEST).args as Record<string, string>
  t.equal(Object.getPrototypeOf(m), Object.prototype)
  t.same(Object.keys(m), ['__proto__', 'constructor'])
  t.equal(m['__proto__'], 'x')
})

t.test('GuestRequest: nested type errors name the Go types', async (t) => {
  const cases: Array<[string, string]> = [
    ['{"guest":5}', 'json: cannot unmarshal number into Go value of type client.Guest'],
    ['{"guest":"g"}', 'json: cannot unmarshal string into Go value of type client.Guest'],
    ['{"guest":[]}', 'json: cannot unmarshal array into Go value of type client.Guest'],
    ['{"guest":{"nics":{}}}', 'json: cannot unmarshal object into Go value of type []client.Nic'],
    ['{"guest":{"disks":[5]}}', 'json: cannot unmarshal number into Go value of type client.Disk'],
    ['{"guest":{"disks":[{"size":"1"}]}}', 'json: cannot unmarshal string into Go value of type uint64'],
    ['{"guest":{"nics":[{"vlans":["x"]}]}}', 'json: cannot unmarshal string into Go value of type int'],
    ['{"guest":{"nics":[{"vlans":1}]}}', 'json: cannot unmarshal number into Go value of type []int'],
    ['{"guest":{"metadata":{"a":1}}}', 'json: cannot unmarshal number into Go value of type string'],
    ['{"guest":{"metadata":[]}}', 'json: cannot unmarshal array into Go value of type map[string]string'],
    ['{"args":[]}', 'json: cannot unmarshal array into Go value of type map[string]string'],
    ['{"args":"a=b"}', 'json: cannot unmarshal string into Go value of type map[string]string'],
    ['{"guest":{"memory":-1}}', 'json: cannot unmarshal number -1 into Go value of type uint64'],
    ['{"guest":{"vnc":1.5}}', 'json: cannot unmarshal number 1.5 into Go value of type int'],
  ]
  for (const [json, msg] of cases) t.equal(errOf(json, GUEST_REQUEST), msg, json)
})

t.test('plain JSON.parse values work too', async (t) => {
  t.same(decodeParams(JSON.parse('{"ID":"a","size":64}'), VOLUME), { id: 'a', size: 64 })
  t.same(decodeParams({ guest: { nics: [{ vlans: [3] }] } }, GUEST_REQUEST).guest, { ...ZERO_GUEST, nics: [{ ...ZERO_NIC, vlans: [3] }] })
  t.throws(() => decodeParams({ size: 1.5 }, VOLUME), { message: 'json: cannot unmarshal number 1.5 into Go value of type uint64' })
  t.throws(() => decodeParams({ size: -0 }, VOLUME), { message: 'json: cannot unmarshal number -0 into Go value of type uint64' })
  t.throws(() => decodeParams({ size: 1e21 }, VOLUME), { message: 'json: cannot unmarshal number 1e+21 into Go value of type uint64' })
})
