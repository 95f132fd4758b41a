// Runs the UI's unit tests (src/**/*.test.ts) with node:test: esbuild
// bundles each into a temporary ES module first (Node runs no TypeScript).
import { build } from "esbuild";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, "..", "src");
const tests = readdirSync(src).filter((f) => f.endsWith(".test.ts"));
const out = mkdtempSync(join(tmpdir(), "edgefleet-ui-unit-"));
try {
  await build({
    absWorkingDir: join(here, ".."),
    entryPoints: tests.map((f) => join("src", f)),
    bundle: true,
    platform: "node",
    format: "esm",
    outdir: out,
    outExtension: { ".js": ".mjs" },
    logLevel: "warning",
  });
  const files = readdirSync(out).map((f) => join(out, f));
  const r = spawnSync(process.execPath, ["--test", ...files], { stdio: "inherit" });
  process.exitCode = r.status ?? 1;
} finally {
  rmSync(out, { recursive: true, force: true });
}
