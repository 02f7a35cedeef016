/**
 * Block and allow lists as the service loads them: which files, with which
 * score, read into one {@linkcode IpDatabase} (every list's entries and the
 * lookup table), the value the service shares with its workers.
 *
 * @module
 */

import { readFileBytes, statFile } from "../runtime/files.ts";
import { type Format, ListError, type ParsedList, parseList } from "./formats.ts";
import { buildTable, type ListSource, type TableData } from "./table.ts";

/** A list to load: `--block FILE[=SCORE]` or `--allow FILE[=SCORE]`. */
export interface ListSpec {
  readonly kind: "block" | "allow";
  readonly file: string;
  /** The score of its entries that have none of their own. */
  readonly score: number;
}

/** The default score of a block list's entries. */
export const BLOCK_SCORE = 0;
/** The default score of an allow list's entries. */
export const ALLOW_SCORE = 100;

/**
 * Reads `FILE[=SCORE]`. A trailing `=` and digits is the score; anything
 * else is part of the file name.
 *
 * @param kind `block` or `allow`.
 * @param text The flag's value.
 * @returns The list.
 * @throws {RangeError} For a score above 100 or an empty file name.
 */
export function parseListSpec(kind: "block" | "allow", text: string): ListSpec {
  const match = /^(.*)=(\d+)$/.exec(text);
  const file = match === null ? text : match[1]!;
  const score = match === null ? (kind === "block" ? BLOCK_SCORE : ALLOW_SCORE) : Number(match[2]);
  if (file === "") throw new RangeError(`Cannot use --${kind} ${JSON.stringify(text)}: no file`);
  if (score > 100) {
    throw new RangeError(
      `Cannot use --${kind} ${JSON.stringify(text)}: the score must be from 0 to 100`,
    );
  }
  return { kind, file, score };
}

/** One loaded list. */
export interface LoadedList extends ListSpec {
  /** The format its content showed. */
  readonly format: Format;
  /** How many entries (IPv4 and IPv6) it had. */
  readonly count: number;
  /** The file's stamp when it was read (see {@linkcode fileStamp}). */
  readonly stamp: FileStamp;
}

/**
 * Every list and the table built from them: what the service shares. The
 * entries themselves are not kept (the table is all lookups need); "why this
 * score?" reads the files again.
 */
export interface IpDatabase {
  /** 1 for the first load, one more at each successful reload. */
  readonly generation: number;
  /** When it was loaded, in milliseconds since the epoch. */
  readonly loadedAt: number;
  readonly lists: readonly LoadedList[];
  readonly table: TableData;
}

/** What changes of a file tell that it changed: modification time, size, inode. */
export type FileStamp = string;

/**
 * A file's stamp, or `"missing"`.
 *
 * @param file The path.
 * @returns A string that changes when the file does.
 */
export function fileStamp(file: string): FileStamp {
  const stat = statFile(file);
  return stat === undefined ? "missing" : `${stat.mtimeMs}:${stat.size}:${stat.ino}`;
}

/** Options of {@linkcode loadDatabase}. */
export interface LoadOptions {
  /** The generation of the result. */
  generation: number;
  /** Entries per file of the last good load, to refuse a list that shrank too much. */
  previous?: ReadonlyMap<string, number>;
  /** The largest share of its entries (0..1) a list may lose from one load to the next. */
  maxShrink?: number;
}

/**
 * Reads every list and builds the table.
 *
 * @param specs The lists.
 * @param options The generation, and the last good load's sizes.
 * @returns The database.
 * @throws {ListError} For a file that cannot be read, has a bad line, holds
 * no address, or shrank by more than `maxShrink`.
 */
export function loadDatabase(specs: readonly ListSpec[], options: LoadOptions): IpDatabase {
  const lists: LoadedList[] = [];
  const sources: ListSource[] = [];
  for (const spec of specs) {
    const stamp = fileStamp(spec.file);
    const { format, entries } = readList(spec.file);
    const count = entries.count;
    if (count === 0 || format === undefined) {
      throw new ListError(spec.file, 0, "it holds no address (an empty list is refused)");
    }
    const before = options.previous?.get(spec.file);
    const maxShrink = options.maxShrink ?? 1;
    if (before !== undefined && before - count > before * maxShrink) {
      throw new ListError(
        spec.file,
        0,
        `it shrank from ${before} to ${count} entries, more than the ${
          Math.round(maxShrink * 100)
        } % allowed (--max-shrink)`,
      );
    }
    lists.push({ ...spec, format, count, stamp });
    sources.push({ ...spec, entries: entries.data() });
  }
  return {
    generation: options.generation,
    loadedAt: Date.now(),
    lists,
    table: buildTable(sources),
  };
}

/**
 * Reads and parses a list file.
 *
 * @param file The path.
 * @returns Its format and entries.
 * @throws {ListError} When it cannot be read or has a bad line.
 */
export function readList(file: string): ParsedList {
  let bytes: Uint8Array;
  try {
    bytes = readFileBytes(file);
  } catch (err) {
    const code = (err as { code?: string }).code;
    const why = code === "ENOENT"
      ? "no such file"
      : code === "EACCES"
      ? "permission denied"
      : code === "EISDIR"
      ? "it is a directory"
      : String((err as Error).message ?? err);
    throw new ListError(file, 0, `cannot read it: ${why}`);
  }
  return parseList(bytes, file);
}
