/**
 * Go duration strings (`30s`, `1m30s`, `14h`, `500ms`, `0`), as Pomerium writes them, converted
 * to milliseconds. Sub-millisecond units are accepted and rounded, because Envoy and Go accept
 * them and a config should not fail to load over `1500us`.
 */

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3,
  'μs': 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
}

const PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y

/**
 * Parses a Go duration string into milliseconds (rounded to the nearest millisecond).
 * Returns undefined for anything that is not a valid, non-negative Go duration.
 */
export function parseDuration(text: string): number | undefined {
  const s = text.trim()
  if (s === '0' || s === '+0') return 0
  const rest = s.startsWith('+') ? s.slice(1) : s
  if (rest === '') return undefined
  let total = 0
  let pos = 0
  while (pos < rest.length) {
    // A sticky regex walks the string part by part; any gap means an invalid duration.
    PART.lastIndex = pos
    const m = PART.exec(rest)
    if (!m) return undefined
    total += Number(m[1]) * (UNIT_MS[m[2] ?? ''] ?? Number.NaN)
    pos = PART.lastIndex
  }
  return Number.isFinite(total) ? Math.round(total) : undefined
}

/** Formats milliseconds as a compact Go duration string (for docs and messages). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s'
  const parts: string[] = []
  let rest = ms
  for (const [unit, size] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`)
      rest %= size
    }
  }
  if (rest > 0) parts.push(`${rest}ms`)
  return parts.join('')
}
