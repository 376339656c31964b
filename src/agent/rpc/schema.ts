/**
 * Parameter schemas: the Go request structs of the original, as data. The
 * decoder (decode.ts) follows encoding/json: keys match case-insensitively,
 * unknown keys are ignored, missing keys get the zero value, and a wrong type
 * is an error. Keys here are the canonical JSON names.
 */
export type FieldSpec =
  | { readonly kind: 'string' }
  | { readonly kind: 'bool' }
  /** Go uint64/uint: whole numbers >= 0 written as integer literals. */
  | { readonly kind: 'uint64' }
  /** Go int. */
  | { readonly kind: 'int' }
  /** A nested struct; `nullable` for Go pointers (null or missing decodes to null). */
  | { readonly kind: 'struct'; readonly fields: StructSpec; readonly nullable?: boolean }
  /** A Go slice: null or missing decodes to null. */
  | { readonly kind: 'array'; readonly of: FieldSpec }
  /** A Go map[string]T: null or missing decodes to null. */
  | { readonly kind: 'map'; readonly of: FieldSpec }

export type StructSpec = Readonly<Record<string, FieldSpec>>

export const str = { kind: 'string' } as const
export const bool = { kind: 'bool' } as const
export const uint64 = { kind: 'uint64' } as const
export const int = { kind: 'int' } as const
export const struct = (fields: StructSpec, nullable = false): FieldSpec => ({ kind: 'struct', fields, nullable })
export const array = (of: FieldSpec): FieldSpec => ({ kind: 'array', of })
export const map = (of: FieldSpec): FieldSpec => ({ kind: 'map', of })
