import js from '@eslint/js'
import tseslint from 'typescript-eslint'

/**
 * Import directions (issue #9 §3): src/ and daemon/ are the product and import nothing from the
 * harness, tests, benchmarks or scripts; harness/ (what tests and benchmarks start and fake) may
 * use the product but not tests or benchmarks; benchmarks may use the harness but not tests.
 *
 * no-restricted-imports matches the import string, not the resolved file, so the rule is written
 * per depth: from src/a/b.ts, "../../bench/x" is the top-level bench/ (forbidden) while
 * "../bench/x" is src/bench/ (the product's own). Dynamic import() is not covered by that rule;
 * no-restricted-syntax catches it with the same expression.
 */
const BOUNDARIES = [
  { folder: 'src', forbidden: ['harness', 'test', 'bench', 'scripts'], why: 'src/ is the product: it imports nothing outside src/' },
  { folder: 'daemon', forbidden: ['harness', 'test', 'bench', 'scripts'], why: 'daemon/ ships with the product: it imports only src/' },
  { folder: 'harness', forbidden: ['test', 'bench'], why: 'harness/ serves test/ and bench/ and imports neither' },
  { folder: 'bench', forbidden: ['test'], why: 'bench/ uses harness/, not test/' },
]
const MAX_DEPTH = 8

export function boundaryBlocks() {
  const blocks = []
  for (const { folder, forbidden, why } of BOUNDARIES) {
    for (let depth = 1; depth <= MAX_DEPTH; depth++) {
      const dirs = forbidden.join('|')
      // esquery regexes cannot contain "/", so the selector spells it \x2F.
      const regex = `^(\\.\\./){${depth}}(${dirs})(/|$)`
      const selectorRegex = `^(\\.\\.\\x2F){${depth}}(${dirs})(\\x2F|$)`
      const message = `${why} (import directions: eslint.config.js)`
      blocks.push({
        files: [`${folder}/${'*/'.repeat(depth - 1)}*.ts`],
        rules: {
          'no-restricted-imports': ['error', { patterns: [{ regex, message }] }],
          'no-restricted-syntax': ['error', { selector: `ImportExpression[source.value=/${selectorRegex}/]`, message }],
        },
      })
    }
  }
  return blocks
}

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'test/fixtures/**', '.tap/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' }],
    },
  },
  ...boundaryBlocks(),
  {
    files: ['**/*.mjs', '**/*.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly' } },
  },
)
