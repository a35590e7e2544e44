/**
 * Parses the config file (YAML, and therefore JSON) keeping the source position of every key
 * and value, so that validation errors can point at `file:line:column`.
 */
import { LineCounter, isMap, isScalar, isSeq, parseDocument } from 'yaml'
import type { Node as YamlNode } from 'yaml'
import type { ConfigIssue } from './types.js'
import { indexPath, joinPath } from './issues.js'
import type { NodePositions, Position } from './issues.js'

/** The parsed file: the plain value, where each key path sits, and syntax problems. */
export interface ParsedSource {
  readonly value: unknown
  readonly positions: Map<string, NodePositions>
  readonly issues: ConfigIssue[]
}

/** Parses YAML/JSON text; `file` is only used to label issues. */
export function parseSource(text: string, file: string | undefined): ParsedSource {
  const lineCounter = new LineCounter()
  // merge: Pomerium configs written for go-yaml may use `<<` merge keys.
  const doc = parseDocument(text, { keepSourceTokens: true, lineCounter, merge: true, prettyErrors: true })
  const issues: ConfigIssue[] = []
  for (const [severity, list] of [
    ['error', doc.errors],
    ['warning', doc.warnings],
  ] as const) {
    for (const e of list) {
      const pos = e.linePos?.[0]
      issues.push({
        severity,
        file,
        line: pos?.line,
        column: pos?.col,
        path: '',
        value: undefined,
        // The pretty message repeats the position and quotes source lines; line/column carry that.
        message: `YAML: ${(e.message.split('\n')[0] ?? e.message).replace(/ at line \d+, column \d+:?$/, '')}`,
      })
    }
  }
  const positions = new Map<string, NodePositions>()
  const at = (offset: number | undefined): Position | undefined => {
    if (offset === undefined) return undefined
    const p = lineCounter.linePos(offset)
    return { line: p.line, column: p.col }
  }
  const walk = (node: unknown, path: string): void => {
    if (isMap(node)) {
      for (const pair of node.items) {
        const keyNode = pair.key as YamlNode | null
        const key = isScalar(keyNode) ? String(keyNode.value) : String(keyNode)
        const p = joinPath(path, key)
        const valueNode = pair.value as YamlNode | null
        positions.set(p, { key: at(keyNode?.range?.[0]), value: at(valueNode?.range?.[0]) })
        walk(valueNode, p)
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => {
        const p = indexPath(path, i)
        const start = at((item as YamlNode | null)?.range?.[0])
        positions.set(p, { key: start, value: start })
        walk(item, p)
      })
    }
  }
  walk(doc.contents, '')
  const hasErrors = issues.some((i) => i.severity === 'error')
  const value: unknown = hasErrors ? undefined : doc.toJS({ maxAliasCount: 1000 })
  return { value, positions, issues }
}
