/**
 * Regular expressions with RE2 semantics, the engine Pomerium and Envoy use: the same syntax
 * (`(?P<name>...)`, no backreferences or lookaround) and matching in linear time, so no route
 * regex can be made to burn CPU by a crafted path. Backed by re2js, a pure-JavaScript port of RE2.
 */
import { RE2JS } from 're2js'

export class Pattern {
  readonly source: string
  readonly #re: RE2JS
  readonly #anchored: boolean

  private constructor(source: string, re: RE2JS, anchored: boolean) {
    this.source = source
    this.#re = re
    this.#anchored = anchored
  }

  /** Compiles `source`; returns the reason as a string when RE2 refuses it. */
  static compile(source: string, anchored: boolean): Pattern | string {
    try {
      return new Pattern(source, RE2JS.compile(source), anchored)
    } catch (err) {
      return `invalid regular expression: ${(err as Error).message.replace(/^error parsing regexp: /, '')}`
    }
  }

  /** A whole-string match when anchored (route `regex`), a match anywhere otherwise. */
  test(input: string): boolean {
    return this.#anchored ? this.#re.matches(input) : this.#re.matcher(input).find()
  }

  /**
   * A function replacing every match in its input, with `substitution` written as Envoy
   * writes it (`\1` for a group, `\\` for a backslash). Built once per config.
   */
  replacer(substitution: string): (input: string) => string {
    const replacement = toRe2jsReplacement(substitution)
    return (input) => this.#re.matcher(input).replaceAll(replacement)
  }
}

/**
 * Envoy's `\N` group references become re2js' `$N`, Envoy's `\\` a backslash (re2js takes
 * backslashes literally), and a literal `$` is doubled (re2js' escape for it).
 */
export function toRe2jsReplacement(envoy: string): string {
  let out = ''
  for (let i = 0; i < envoy.length; i++) {
    const c = envoy[i] as string
    if (c === '\\' && i + 1 < envoy.length) {
      const next = envoy[i + 1] as string
      if (/[0-9]/.test(next)) {
        out += `$${next}`
        i++
      } else if (next === '\\') {
        out += '\\'
        i++
      } else out += c
    } else if (c === '$') out += '$$'
    else out += c
  }
  return out
}
