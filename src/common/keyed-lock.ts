/**
 * Run async work one at a time per key (e.g. per guest id), in arrival order;
 * different keys run in parallel. A key's entry is removed once nothing is
 * running or waiting on it, so the map does not grow with every id ever seen.
 */
export interface KeyedLock {
  run<T>(key: string, fn: () => Promise<T>): Promise<T>
  /** Keys with work running or waiting (for tests). */
  readonly size: number
}

export function createKeyedLock(): KeyedLock {
  // The last promise in each key's chain; it settles when that holder is done.
  const tails = new Map<string, Promise<void>>()
  return {
    get size() { return tails.size },
    async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
      const prev = tails.get(key)
      let done!: () => void
      const mine = new Promise<void>((resolve) => { done = resolve })
      tails.set(key, mine)
      try {
        if (prev) await prev // never rejects: it is a `mine` of an earlier caller
        return await fn()
      } finally {
        done()
        // Only the last in line clears the entry; a later caller has replaced it otherwise.
        if (tails.get(key) === mine) tails.delete(key)
      }
    },
  }
}
