// Builds the UI into ../../internal/webui/dist, which the manager embeds.
// The output is reproducible: file names carry content hashes, nothing
// depends on the time or the machine, and the old output is removed first.
// `node build.mjs --check DIR` builds into DIR instead (for `make verify-ui`).
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync, readdirSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const i = process.argv.indexOf("--out");
const out = i > 0 ? process.argv[i + 1] : join(here, "../../internal/webui/dist");

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const res = await build({
  absWorkingDir: here,
  entryPoints: ["src/main.tsx"],
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022"],
  jsx: "automatic",
  jsxImportSource: "preact",
  entryNames: "app-[hash]",
  assetNames: "[name]-[hash]",
  outdir: out,
  metafile: true,
  legalComments: "none",
  sourcemap: false,
  logLevel: "warning",
});
const outputs = Object.keys(res.metafile.outputs).map((p) => basename(p));
const js = outputs.find((f) => f.endsWith(".js"));
const css = outputs.find((f) => f.endsWith(".css"));
const html = readFileSync(join(here, "src/index.html"), "utf8").replace("{{JS}}", "./" + js).replace("{{CSS}}", "./" + css);
writeFileSync(join(out, "index.html"), html);

let raw = 0;
let gz = 0;
const sizes = [];
for (const f of readdirSync(out).sort()) {
  const b = readFileSync(join(out, f));
  const g = gzipSync(b, { level: 9 }).length;
  raw += b.length;
  gz += g;
  sizes.push(`${f}\t${b.length}\t${g}`);
}
const digest = createHash("sha256");
for (const f of readdirSync(out).sort()) digest.update(f + "\0").update(readFileSync(join(out, f)));
console.log(sizes.join("\n") + `\ntotal\t${raw}\t${gz}\t(bytes, gzip -9)\nsha256\t${digest.digest("hex")}`);
