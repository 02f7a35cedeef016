/**
 * Builds the release executables with `deno compile` for every target, and
 * `dist/SHA256SUMS` over them. Used by `.github/workflows/release.yml`
 * (`deno task compile:all`); `deno compile` downloads each target's runtime
 * from Deno's server, so this needs that server (or `DENORT_BIN` for the
 * host target only).
 *
 * Usage: deno task compile:all [target...]
 *
 * @module
 */

import pkg from "../package.json" with { type: "json" };

/** Every target we ship, as `deno compile --target` names it. */
export const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
  "x86_64-pc-windows-msvc",
] as const;

const root = new URL("..", import.meta.url).pathname;
const targets = Deno.args.length > 0 ? Deno.args : [...TARGETS];
const sums: string[] = [];

for (const target of targets) {
  if (!(TARGETS as readonly string[]).includes(target)) {
    console.error(`Unknown target "${target}"; expected one of ${TARGETS.join(", ")}`);
    Deno.exit(2);
  }
  const name = `spoa-${pkg.version}-${target}${target.includes("windows") ? ".exe" : ""}`;
  console.log(`== ${name}`);
  const { code } = await new Deno.Command(Deno.execPath(), {
    args: [
      "compile",
      "--allow-net",
      "--allow-read",
      "--unstable-net",
      "--include",
      "lib/serve/worker.ts",
      "--include",
      "lib/serve/metrics_worker.ts",
      "--include",
      "lib/iprep/agent.ts",
      "--include",
      "lib/iprep/load_worker.ts",
      "--target",
      target,
      "--output",
      `dist/${name}`,
      "main.ts",
    ],
    cwd: root,
  }).spawn().status;
  if (code !== 0) {
    console.error(`deno compile failed for ${target} (exit ${code})`);
    Deno.exit(1);
  }
  const bytes = await Deno.readFile(`${root}dist/${name}`);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  sums.push(`${hex}  ${name}`);
  console.log(`   ${(bytes.length / 1e6).toFixed(1)} MB  sha256 ${hex}`);
}

await Deno.writeTextFile(`${root}dist/SHA256SUMS`, sums.join("\n") + "\n");
console.log(`== dist/SHA256SUMS (${sums.length} files)`);
