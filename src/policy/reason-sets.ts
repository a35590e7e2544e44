/**
 * Interned reason sets, so that merging reasons on the hot path costs a map lookup instead of
 * building, sorting and deduplicating arrays for every request.
 *
 * Every distinct set of reasons a policy can produce gets a small integer id; id 0 is the empty
 * set. A criterion's outcome is encoded as one integer, `(setId << 1) | value`, so closures
 * return plain numbers. Unions are memoised per pair of ids. A policy can only ever produce
 * unions of the reasons its criteria declare, so the tables stay small and stop growing once
 * each combination has been seen.
 */

/** Ids are kept below 2^25 so that pair keys stay exact integers. */
const PAIR = 0x2000000

export class ReasonSets {
  readonly #sets: (readonly string[])[] = [Object.freeze([])]
  readonly #ids = new Map<string, number>([['', 0]])
  readonly #unions = new Map<number, number>()

  /** The id of a set of reasons (any order, duplicates allowed). */
  intern(reasons: readonly string[]): number {
    const sorted = [...new Set(reasons)].sort()
    const key = sorted.join('\n')
    let id = this.#ids.get(key)
    if (id === undefined) {
      id = this.#sets.length
      if (id >= PAIR) throw new Error('too many distinct reason sets')
      this.#sets.push(Object.freeze(sorted))
      this.#ids.set(key, id)
    }
    return id
  }

  /** The id of the union of two sets. */
  union(a: number, b: number): number {
    if (a === b || b === 0) return a
    if (a === 0) return b
    const key = a < b ? a * PAIR + b : b * PAIR + a
    let id = this.#unions.get(key)
    if (id === undefined) {
      id = this.intern([...this.get(a), ...this.get(b)])
      this.#unions.set(key, id)
    }
    return id
  }

  /** The frozen, sorted reasons of an id. */
  get(id: number): readonly string[] {
    const set = this.#sets[id]
    if (set === undefined) throw new Error(`unknown reason set ${id}`)
    return set
  }
}

/** Encodes an outcome: a reason set and a truth value in one small integer. */
export function outcome(setId: number, value: boolean): number {
  return (setId << 1) | (value ? 1 : 0)
}
