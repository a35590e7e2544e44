// Lint rules that catch real bugs in a security proxy: floating promises, misused promises,
// non-exhaustive switches, throwing non-errors, and type-only imports kept apart.
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

/**
 * A digest of everything the type-aware rules can see: every TypeScript file of the program, its
 * tsconfigs and the locked dependencies. `npm run lint` keeps a cache (`--cache`), and ESLint
 * re-lints a cached file only when that file or its config changed; but a type-aware rule's answer
 * for one file depends on the types of others (a function that starts returning a promise makes
 * its unchanged callers' calls floating). Put in the config's settings, this digest changes every
 * file's config whenever any input changes, so the cache is only reused when nothing changed.
 */
function typeInputsDigest() {
  const hash = createHash('sha256')
  const root = import.meta.dirname
  const add = (rel) => hash.update(rel).update('\0').update(readFileSync(join(root, rel))).update('\0')
  const walk = (dir) => {
    for (const entry of readdirSync(join(root, dir), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const rel = join(dir, entry.name)
      if (entry.isDirectory()) walk(rel)
      else if (entry.name.endsWith('.ts')) add(rel)
    }
  }
  for (const dir of ['src', 'test', 'scripts', 'bench']) walk(dir)
  for (const file of ['tsconfig.base.json', 'tsconfig.test.json', 'package-lock.json']) add(file)
  return hash.digest('hex')
}

/** Files only tests import: `tsconfig.json` does not build them. */
const TEST_HELPER_FILES = ['src/**/test-helpers.ts', 'src/**/*.test-helpers.ts']
const TEST_HELPER_IMPORTS = [
  {
    group: ['**/test-helpers.js', '**/*.test-helpers.js', 'node:test'],
    message: 'Test helpers are not built into dist: only tests may import them.',
  },
]

const BASE_RESTRICTED_SYNTAX = [
  { selector: 'ExportDefaultDeclaration', message: 'Use named exports.' },
  {
    selector: "CallExpression[callee.property.name='only']",
    message: 'No .only in tests.',
  },
]


export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'eslint.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    settings: { typeInputsDigest: typeInputsDigest() },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite'] }] },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/only-throw-error': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'no-restricted-syntax': ['error', ...BASE_RESTRICTED_SYNTAX],
    },
  },
  {
    // Services read the typed, load-time-checked fields of Config / RouteConfig; `raw` (every key
    // as written) is for the config system itself (status, validate, the checks).
    files: ['src/**/*.ts'],
    ignores: ['src/config/**', 'src/**/*.test.ts', ...TEST_HELPER_FILES],
    rules: {
      'no-restricted-syntax': [
        'error',
        ...BASE_RESTRICTED_SYNTAX,
        {
          selector: "MemberExpression[computed=true] > MemberExpression.object[property.name='raw']",
          message: 'Read the typed Config / RouteConfig field (src/config/types.ts), not raw; add one in src/config/ if it is missing.',
        },
      ],
    },
  },
  {
    // Test helpers are left out of the build (tsconfig.json), so production code that imported
    // one would fail at run time: only tests and other helpers may.
    files: ['src/**/*.ts'],
    ignores: ['src/**/*.test.ts', ...TEST_HELPER_FILES],
    rules: { 'no-restricted-imports': ['error', { patterns: TEST_HELPER_IMPORTS }] },
  },
  {
    files: ['src/policy/**/*.ts'],
    ignores: TEST_HELPER_FILES,
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['node:*', '../proxy/*', '../config/*', '../authorize/*'] },
            ...TEST_HELPER_IMPORTS,
          ],
        },
      ],
    },
  },
)
