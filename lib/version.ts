/**
 * The version of spoa. It is written here and in `package.json`, and
 * `tests/cli_test.ts` checks that the two agree (the release workflow checks
 * the tag against `package.json`). A constant rather than a JSON import:
 * this module is reachable from agent modules and worker threads, which Deno
 * loads with the permission checks of a dynamic import, and `--allow-read`
 * does not cover `package.json` (only `lib/`).
 *
 * @module
 */

/** The version printed by `spoa --version`. */
export const VERSION: string = "0.1.0";
