/**
 * The version of spoa, read from `package.json` (the one place it is
 * written). The JSON import is embedded by `deno compile` and
 * `bun build --compile`, and fetched alongside the code by `deno run <url>`.
 *
 * @module
 */

import pkg from "../package.json" with { type: "json" };

/** The version printed by `spoa --version`. */
export const VERSION: string = pkg.version;
