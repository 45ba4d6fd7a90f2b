/**
 * The version both binaries print for `--version`. A constant rather than a read of
 * package.json at run time: the file sits at a different depth under src/ and dist/, and a
 * packed install need not ship it next to the code. test/cli/help.test.ts checks it matches.
 */
export const VERSION = '0.1.0'
