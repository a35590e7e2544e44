/**
 * The import rules of the house (docs/architecture.md): which folder of `src/` may import which.
 * `npm test` runs it; it exits 1 and names each forbidden import. Tests (`*.test.ts`) and test
 * helpers are exempt: they may reach across layers to set things up.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

/**
 * What each folder may import besides itself, lowest layer first. Policy is pure (nothing);
 * storage (databroker) knows no service; config knows no service; the four services do not
 * import each other; only the composition root (all-in-one) and the commands see everything.
 */
export const LAYERS: Readonly<Record<string, readonly string[]>> = {
  shared: [],
  policy: [],
  ui: ['shared'],
  config: ['shared', 'policy'],
  internal: ['shared'],
  databroker: ['shared', 'config', 'internal'],
  observability: ['shared', 'config', 'databroker'],
  idp: ['shared', 'config'],
  session: ['shared', 'ui', 'policy', 'config', 'databroker', 'observability', 'idp'],
  'builtin-idp': ['shared', 'ui', 'config'],
  /** The `portcullis tcp|udp` client's parts: it talks to a server over the network, never imports one. */
  client: ['shared'],
  authorize: ['shared', 'policy', 'config', 'internal', 'databroker', 'observability', 'idp', 'session'],
  authenticate: ['shared', 'ui', 'policy', 'config', 'internal', 'databroker', 'observability', 'idp', 'session'],
  proxy: ['shared', 'ui', 'policy', 'config', 'observability'],
  /** Directory sync and SCIM (docs/directory.md): writes directory records that session/authorize read. */
  directory: ['shared', 'config', 'databroker', 'observability', 'session', 'builtin-idp'],
  'all-in-one': ['shared', 'ui', 'policy', 'config', 'internal', 'databroker', 'observability', 'idp', 'session', 'builtin-idp', 'authorize', 'authenticate', 'proxy', 'directory'],
  cmd: ['shared', 'ui', 'policy', 'config', 'internal', 'databroker', 'observability', 'idp', 'session', 'builtin-idp', 'authorize', 'authenticate', 'proxy', 'all-in-one', 'client', 'directory'],
}

/**
 * The contracts a data plane speaks to the services it fronts: the proxy (and later the ext_authz
 * and forward-auth front ends) may import these files of another service, and nothing else of it.
 */
export const CONTRACTS: Readonly<Record<string, readonly string[]>> = {
  proxy: ['authorize/types.ts', 'authenticate/endpoint.ts'],
}

/** One import between two files of `src/`, as paths relative to `src/` with `/` separators. */
export interface Edge {
  readonly from: string
  readonly to: string
}

export interface Violation extends Edge {
  readonly message: string
}

const layerOf = (path: string): string => path.split('/')[0] ?? ''

/** The forbidden imports among `edges` (an unknown folder is a violation too: add it to LAYERS). */
export function violations(edges: readonly Edge[]): Violation[] {
  const out: Violation[] = []
  for (const edge of edges) {
    const from = layerOf(edge.from)
    const to = layerOf(edge.to)
    const allowed = LAYERS[from]
    if (allowed === undefined) {
      out.push({ ...edge, message: `src/${from}/ is not in the layer table (scripts/check-architecture.ts, docs/architecture.md)` })
      continue
    }
    if (from === to || allowed.includes(to) || (CONTRACTS[from]?.includes(edge.to) ?? false)) continue
    const contracts = CONTRACTS[from]?.length ? `, and the contracts ${CONTRACTS[from]?.join(', ')}` : ''
    out.push({ ...edge, message: `${from} may import only ${allowed.length ? allowed.join(', ') : 'itself'}${contracts} (docs/architecture.md)` })
  }
  return out
}

const isProductionFile = (name: string): boolean =>
  name.endsWith('.ts') && !name.endsWith('.test.ts') && !name.endsWith('test-helpers.ts') && !name.endsWith('.d.ts')

function* productionFiles(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) yield* productionFiles(path)
    else if (isProductionFile(entry.name)) yield path
  }
}

/** Every relative import between production files under `srcDir`. */
export function importEdges(srcDir: string): Edge[] {
  const edges: Edge[] = []
  for (const file of productionFiles(srcDir)) {
    const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true)
    for (const { fileName } of info.importedFiles) {
      if (!fileName.startsWith('.')) continue
      const target = resolve(dirname(file), fileName).replace(/\.js$/, '.ts')
      const to = relative(srcDir, target).split(sep).join('/')
      if (to.startsWith('..')) continue
      edges.push({ from: relative(srcDir, file).split(sep).join('/'), to })
    }
  }
  return edges
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const src = resolve(dirname(fileURLToPath(import.meta.url)), '../src')
  const found = violations(importEdges(src))
  for (const v of found) process.stderr.write(`src/${v.from} imports src/${v.to}: ${v.message}\n`)
  if (found.length > 0) {
    process.stderr.write(`check-architecture: ${found.length} forbidden import(s)\n`)
    process.exit(1)
  }
  process.stdout.write('check-architecture: the import rules hold\n')
}
