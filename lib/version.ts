/**
 * The version of spoa. `package.json` holds the same string; a test keeps
 * them equal, so this file is the one to edit on release.
 *
 * @module
 */

/** The version printed by `spoa --version`. */
export const VERSION = "0.1.0";
