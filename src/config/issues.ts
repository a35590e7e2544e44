/**
 * Collects every configuration problem with the best location we know: file, line and column
 * for values that came from the YAML file, the environment variable name for values that came
 * from the environment. Secret values are never copied into an issue.
 */
import type { ConfigIssue } from './types.js'

/** 1-based line and column. */
export interface Position {
  readonly line: number
  readonly column: number
}

/** Where a key and its value start in the source file. */
export interface NodePositions {
  readonly key: Position | undefined
  readonly value: Position | undefined
}

/** Joins a key onto a key path (`routes[3]` + `from` → `routes[3].from`). */
export function joinPath(base: string, key: string): string {
  return base === '' ? key : `${base}.${key}`
}

/** Appends a list index onto a key path. */
export function indexPath(base: string, index: number): string {
  return `${base}[${index}]`
}

// The last path segment of settings whose values are secrets (keys, passwords, DSNs).
const SECRET_SEGMENT = /(secret|token|password|basic_auth|connection_string|(^|_)key)$/

function isSecretPath(path: string): boolean {
  const last = path.split(/[.[\]]/).filter((s) => s !== '').at(-1) ?? ''
  return SECRET_SEGMENT.test(last)
}

/** Accumulates issues; validation never stops at the first problem. */
export class IssueCollector {
  readonly issues: ConfigIssue[] = []
  readonly #file: string | undefined
  readonly #positions: ReadonlyMap<string, NodePositions>
  readonly #envOrigins: ReadonlyMap<string, string>

  constructor(
    file: string | undefined,
    positions: ReadonlyMap<string, NodePositions>,
    envOrigins: ReadonlyMap<string, string>,
  ) {
    this.#file = file
    this.#positions = positions
    this.#envOrigins = envOrigins
  }

  /** Records an error at `path` (reported at the value's position unless `at` is `key`). */
  error(path: string, value: unknown, message: string, at: 'key' | 'value' = 'value'): void {
    this.#add('error', path, value, message, at)
  }

  /** Records a warning; warnings never stop a config from loading. */
  warning(path: string, value: unknown, message: string, at: 'key' | 'value' = 'value', kind?: ConfigIssue['kind']): void {
    this.#add('warning', path, value, message, at, kind)
  }

  /** Adds an issue that already carries its own location (YAML syntax errors, file errors). */
  push(issue: ConfigIssue): void {
    this.issues.push(issue)
  }

  get hasErrors(): boolean {
    return this.issues.some((i) => i.severity === 'error')
  }

  #add(
    severity: ConfigIssue['severity'],
    path: string,
    value: unknown,
    message: string,
    at: 'key' | 'value',
    kind?: ConfigIssue['kind'],
  ): void {
    const shown = value === undefined ? undefined : isSecretPath(path) ? '[redacted]' : value
    const env = this.#envOrigin(path)
    if (env) {
      this.issues.push({ severity, file: undefined, line: undefined, column: undefined, path: env, value: shown, message, ...(kind ? { kind } : {}) })
      return
    }
    const pos = this.#position(path, at)
    this.issues.push({
      severity,
      file: this.#file,
      line: pos?.line,
      column: pos?.column,
      path,
      value: shown,
      message,
      ...(kind ? { kind } : {}),
    })
  }

  /** The env var that supplied `path` (or one of its parents), with the rest of the path appended. */
  #envOrigin(path: string): string | undefined {
    for (let p = path; p !== ''; p = parentPath(p)) {
      const env = this.#envOrigins.get(p)
      if (env !== undefined) return env + path.slice(p.length)
    }
    return undefined
  }

  /** The nearest recorded position: the path itself, else its closest parent. */
  #position(path: string, at: 'key' | 'value'): Position | undefined {
    for (let p = path; p !== ''; p = parentPath(p)) {
      const found = this.#positions.get(p)
      if (found) return at === 'key' ? (found.key ?? found.value) : (found.value ?? found.key)
    }
    return undefined
  }
}

function parentPath(path: string): string {
  const cut = Math.max(path.lastIndexOf('.'), path.lastIndexOf('['))
  return cut <= 0 ? '' : path.slice(0, cut)
}
