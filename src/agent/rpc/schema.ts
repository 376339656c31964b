/**
 * Parameter schemas: the Go request structs as data, keyed by canonical JSON name. The decoder
 * (gorilla/decode.ts) reads them; `Infer` is the type it produces, so each struct is written once.
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

/** The value a field decodes to. */
export type InferField<F extends FieldSpec> =
  F extends { readonly kind: 'string' } ? string
    : F extends { readonly kind: 'bool' } ? boolean
      : F extends { readonly kind: 'uint64' | 'int' } ? number
        : F extends { readonly kind: 'struct'; readonly fields: infer S extends StructSpec; readonly nullable: true } ? Infer<S> | null
          : F extends { readonly kind: 'struct'; readonly fields: infer S extends StructSpec } ? Infer<S>
            : F extends { readonly kind: 'array'; readonly of: infer E extends FieldSpec } ? Array<InferField<E>> | null
              : F extends { readonly kind: 'map'; readonly of: infer E extends FieldSpec } ? Record<string, InferField<E>> | null
                : never

/** The object a struct decodes to (every key present: missing ones get Go's zero value); any struct at all: a record. */
export type Infer<S extends StructSpec> = string extends keyof S ? Record<string, unknown> : { -readonly [K in keyof S]: InferField<S[K]> }

export const str = { kind: 'string' } as const
export const bool = { kind: 'bool' } as const
export const uint64 = { kind: 'uint64' } as const
export const int = { kind: 'int' } as const
export function struct<S extends StructSpec, N extends boolean = false>(fields: S, nullable?: N) {
  return { kind: 'struct', fields, nullable: (nullable ?? false) as N } as const
}
export const array = <E extends FieldSpec>(of: E) => ({ kind: 'array', of }) as const
export const map = <E extends FieldSpec>(of: E) => ({ kind: 'map', of }) as const
