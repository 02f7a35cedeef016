/**
 * Reading whole files and their stamps, synchronously: `Deno.readFileSync`
 * on Deno, `node:fs` on Bun. On Deno, `node:fs` in a Worker starts Deno's
 * Node layer there, which left about 5 MiB behind in the thread that loads
 * the IP-reputation lists (bench/RESULTS.md §14); this module loads no
 * `node:` module on Deno.
 *
 * @module
 */

/** What changes of a file tell that it changed. */
export interface FileStat {
  /** Modification time, in milliseconds since the epoch. */
  mtimeMs: number;
  size: number;
  /** The inode: a new one when the file was replaced (written to another file, renamed over it). */
  ino: number;
}

interface DenoFiles {
  readFileSync(path: string): Uint8Array;
  statSync(path: string): { mtime: Date | null; size: number; ino: number | null };
}

interface NodeFiles {
  readFileSync(path: string): Uint8Array;
  statSync(path: string): { mtimeMs: number; size: number; ino: number };
}

function denoFiles(): DenoFiles | undefined {
  if (!globalThis.navigator?.userAgent?.startsWith("Deno/")) return undefined;
  return (globalThis as unknown as { Deno: DenoFiles }).Deno;
}

let node: NodeFiles | undefined;

/** `node:fs`, loaded at first use (Bun has `process.getBuiltinModule`). */
function nodeFiles(): NodeFiles {
  const proc = (globalThis as { process?: { getBuiltinModule?(id: string): unknown } }).process;
  node ??= proc?.getBuiltinModule?.("node:fs") as NodeFiles | undefined;
  if (node === undefined) throw new TypeError("Cannot read files: this runtime has no node:fs");
  return node;
}

/**
 * Reads a whole file.
 *
 * @param path The file.
 * @returns Its bytes.
 * @throws {Error} The runtime's error: its `code` is `ENOENT`, `EACCES`, `EISDIR`, ... (a
 * missing Deno permission has none, and says so).
 */
export function readFileBytes(path: string): Uint8Array {
  return (denoFiles() ?? nodeFiles()).readFileSync(path);
}

/**
 * A file's modification time, size and inode.
 *
 * @param path The file.
 * @returns Them, or `undefined` when the file cannot be read.
 */
export function statFile(path: string): FileStat | undefined {
  try {
    const deno = denoFiles();
    if (deno !== undefined) {
      const stat = deno.statSync(path);
      return { mtimeMs: stat.mtime?.getTime() ?? 0, size: stat.size, ino: stat.ino ?? 0 };
    }
    const stat = nodeFiles().statSync(path);
    return { mtimeMs: stat.mtimeMs, size: stat.size, ino: stat.ino };
  } catch {
    return undefined;
  }
}
