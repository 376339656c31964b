/**
 * Decode one request struct the way Go's encoding/json (as of 2015, the Go
 * the original was built with) unmarshals into a Go struct:
 *  - keys match the field's JSON name exactly, or else case-insensitively
 *    (Go's fold: ASCII case, plus 'ſ' for s and the Kelvin sign for k);
 *  - unknown keys are ignored; a repeated key decodes again into what is there
 *    (scalars: last wins; structs and maps: merged);
 *  - missing keys keep the zero value; `null` leaves a scalar or a plain
 *    struct untouched, and sets a pointer, slice or map to null;
 *  - a wrong type is an error with Go's text, `json: cannot unmarshal <what>
 *    into Go value of type <T>`. A number into a non-number aborts at once (Go
 *    called d.error); the other mismatches are remembered and decoding goes
 *    on (d.saveError), and the first one is reported at the end.
 * Integers must be integer literals: `1e10`, `1.0` and `-0` (for unsigned)
 * fail as they do in Go's strconv.ParseInt/ParseUint.
 *
 * Precision limit (ours, not Go's): JS numbers hold integers exactly only up
 * to 2^53-1. A uint64/int literal beyond that is refused with a ParamsTypeError
 * saying so, rather than silently rounded (sizes are MiB, so real requests
 * never come close).
 *
 * Accepts the parser's values (JsonNumber/JsonObject from json.ts) and plain
 * JSON.parse output alike.
 */
import { InvalidParamsError } from '../../errors.js'
import { JsonNumber, JsonObject } from './json.js'
import type { FieldSpec, Infer, StructSpec } from '../schema.js'

/** A request param of the wrong JSON type; the message is Go's. */
export class ParamsTypeError extends InvalidParamsError {
  override name = 'ParamsTypeError'
}

/**
 * Go type names of the mistify request structs, keyed by their JSON field
 * names, so that error texts name the type as Go did (`rpc.VolumeRequest`,
 * `client.Disk`). Any other struct is called `struct`.
 */
const GO_TYPE_NAMES: ReadonlyMap<string, string> = new Map(([
  ['rpc.ImageRequest', 'id type dest source'],
  ['rpc.ImageRequest', 'id type dest source async format sha256'], // ours, with the async, format and sha256 extensions
  ['rpc.SnapshotRequest', 'id dest recursive destroyMoreRecent'],
  ['rpc.VolumeRequest', 'id size'],
  ['rpc.GuestRequest', 'guest action args'],
  ['client.Guest', 'id type image nics disks state memory cpu vnc metadata'],
  ['client.Disk', 'bus device size volume image source'],
  ['client.Nic', 'name network model mac address netmask gateway device vlans'],
] as const).map(([name, fields]) => [signature(fields.split(' ')), name]))

function signature(fields: readonly string[]): string {
  return [...fields].sort().join(',')
}

/** Specs are made once, at load: each name is worked out once (it was a sort on every call). */
const structNames = new WeakMap<StructSpec, string>()

export function goStructName(spec: StructSpec): string {
  let name = structNames.get(spec)
  if (name === undefined) structNames.set(spec, (name = GO_TYPE_NAMES.get(signature(Object.keys(spec))) ?? 'struct'))
  return name
}

/** The Go type a field decodes into, as `reflect.Type.String()` prints it. */
export function goTypeName(f: FieldSpec): string {
  switch (f.kind) {
    case 'string': case 'bool': case 'uint64': case 'int': return f.kind
    case 'struct': return goStructName(f.fields)
    case 'array': return `[]${goTypeName(f.of)}`
    case 'map': return `map[string]${goTypeName(f.of)}`
  }
}

/** Go's zero value of a field. */
export function zeroValue(f: FieldSpec): unknown {
  switch (f.kind) {
    case 'string': return ''
    case 'bool': return false
    case 'uint64': case 'int': return 0
    case 'struct': return f.nullable ? null : zeroStruct(f.fields)
    case 'array': case 'map': return null
  }
}

export function zeroStruct(spec: StructSpec): Record<string, unknown> {
  const o: Record<string, unknown> = {}
  for (const [k, f] of Object.entries(spec)) o[k] = zeroValue(f)
  return o
}

/**
 * Decode `value` (one JSON value) into the struct `spec`. `goType` names the
 * struct in error texts (default: the known mistify name, else `struct`).
 * Throws ParamsTypeError.
 */
export function decodeParams<S extends StructSpec>(value: unknown, spec: S, goType = goStructName(spec)): Infer<S> {
  const d = new Decoder()
  const out = d.struct(value, spec, zeroStruct(spec), goType)
  if (d.saved) throw d.saved
  // The one place a spec's static type meets its runtime reading: the decoder fills every key with its kind.
  return out as Infer<S>
}

type Kind = 'null' | 'bool' | 'string' | 'number' | 'array' | 'object'

function kindOf(v: unknown): Kind {
  if (v === null || v === undefined) return 'null'
  if (typeof v === 'boolean') return 'bool'
  if (typeof v === 'string') return 'string'
  if (typeof v === 'number' || v instanceof JsonNumber) return 'number'
  if (Array.isArray(v)) return 'array'
  return 'object'
}

function entriesOf(v: unknown): Array<[string, unknown]> {
  if (v instanceof JsonObject) return v.members.map((m) => [m.key, m.value])
  return Object.entries(v as object)
}

function numberText(v: unknown): string {
  if (v instanceof JsonNumber) return v.raw
  const n = v as number
  return Object.is(n, -0) ? '-0' : Number.isFinite(n) ? JSON.stringify(n) : String(n)
}

/** Go's fold for matching a key to an (ASCII) field name. */
function foldEq(key: string, name: string): boolean {
  const k = Array.from(key)
  if (k.length !== name.length) return false
  for (let i = 0; i < name.length; i++) {
    const a = k[i]!
    const b = name[i]!
    if (a === b) continue
    const lb = b.toLowerCase()
    if (lb === b.toUpperCase()) return false // not a letter: exact only
    const la = a === '\u017f' ? 's' : a === '\u212a' ? 'k' : a.length === 1 && a.charCodeAt(0) < 0x80 ? a.toLowerCase() : a
    if (la !== lb) return false
  }
  return true
}

/** Which field a JSON key fills: an exact match first, else the first fold match (in struct order). */
export function matchField(spec: StructSpec, key: string): string | undefined {
  if (Object.hasOwn(spec, key)) return key
  return Object.keys(spec).find((name) => foldEq(key, name))
}

const U64_MAX = (1n << 64n) - 1n
const I64_MIN = -(1n << 63n)
const I64_MAX = (1n << 63n) - 1n
const SAFE = BigInt(Number.MAX_SAFE_INTEGER)

class Decoder {
  saved: ParamsTypeError | null = null

  private mismatch(what: string, goType: string): ParamsTypeError {
    return new ParamsTypeError(`json: cannot unmarshal ${what} into Go value of type ${goType}`)
  }
  /** Go's d.saveError: remember the first, keep decoding. */
  private save(e: ParamsTypeError): void { this.saved ??= e }

  /** A value of the wrong JSON kind for `goType`; returns what the slot keeps. */
  private wrong<T>(kind: Kind, goType: string, keep: T): T {
    const e = this.mismatch(kind === 'bool' ? 'bool' : kind, goType)
    if (kind === 'number') throw e // Go 1.5: d.error, decoding stops here
    this.save(e)
    return keep
  }

  struct(v: unknown, spec: StructSpec, into: Record<string, unknown>, goType: string): Record<string, unknown> {
    const k = kindOf(v)
    if (k === 'null') return into
    if (k !== 'object') return this.wrong(k, goType, into)
    for (const [key, val] of entriesOf(v)) {
      const name = matchField(spec, key)
      if (name === undefined) continue
      into[name] = this.field(val, spec[name]!, into[name])
    }
    return into
  }

  field(v: unknown, f: FieldSpec, current: unknown): unknown {
    const k = kindOf(v)
    const goType = goTypeName(f)
    switch (f.kind) {
      case 'string':
        if (k === 'string') return v
        return k === 'null' ? current : this.wrong(k, goType, current)
      case 'bool':
        if (k === 'bool') return v
        return k === 'null' ? current : this.wrong(k, goType, current)
      case 'uint64': case 'int':
        if (k === 'number') return this.integer(numberText(v), f.kind, current)
        return k === 'null' ? current : this.wrong(k, goType, current)
      case 'struct': {
        if (k === 'null') return f.nullable ? null : current
        const base = current !== null && typeof current === 'object' ? current as Record<string, unknown> : zeroStruct(f.fields)
        return this.struct(v, f.fields, base, goType)
      }
      case 'array':
        if (k === 'null') return null
        if (k !== 'array') return this.wrong(k, goType, current)
        return (v as unknown[]).map((el) => this.field(el, f.of, zeroValue(f.of)))
      case 'map': {
        if (k === 'null') return null
        if (k !== 'object') return this.wrong(k, goType, current)
        const m = current !== null && typeof current === 'object' ? current as Record<string, unknown> : {}
        for (const [key, val] of entriesOf(v)) {
          // defineProperty: a "__proto__" key is data, not the prototype.
          Object.defineProperty(m, key, { value: this.field(val, f.of, zeroValue(f.of)), enumerable: true, writable: true, configurable: true })
        }
        return m
      }
    }
  }

  private integer(raw: string, kind: 'uint64' | 'int', current: unknown): unknown {
    const ok = kind === 'uint64' ? /^(0|[1-9][0-9]*)$/.test(raw) : /^-?(0|[1-9][0-9]*)$/.test(raw)
    const n = ok ? BigInt(raw) : null
    if (n === null || (kind === 'uint64' ? n > U64_MAX : n < I64_MIN || n > I64_MAX)) {
      this.save(this.mismatch(`number ${raw}`, kind))
      return current
    }
    if (n > SAFE || n < -SAFE) {
      this.save(new ParamsTypeError(
        `json: cannot unmarshal number ${raw} into Go value of type ${kind}: above 2^53-1, the largest integer this server keeps exactly`))
      return current
    }
    return Number(n)
  }
}
