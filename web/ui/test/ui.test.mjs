// Browser test of the web UI against a real manager, driven by
// test/e2e/webui_test.go (which starts the manager, a dev cluster with an
// agent, a GitRepo and the users). Debian's chromium via playwright-core: no
// browser is downloaded. Prints one JSON line of measurements at the end.
//
// Env: EDGEFLEET_URL, ADMIN_TOKEN, VIEW_TOKEN, CHROMIUM, SCREENSHOTS (dir),
// CLUSTERS (how many Clusters the manager has).
import { chromium } from "playwright-core";
import { readFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import assert from "node:assert/strict";

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const base = env("EDGEFLEET_URL").replace(/\/$/, "");
const shots = env("SCREENSHOTS");
const clusters = Number(env("CLUSTERS"));
mkdirSync(shots, { recursive: true });
const metrics = {};
const step = (s) => console.log(`-- ${s}`);

// axe: fail on serious and critical violations, report the rest.
async function axe(page, what) {
  // Evaluated through the DevTools protocol, which the page's CSP (no inline
  // script) does not block; the CSP stays on for the whole test.
  if (!(await page.evaluate(() => "axe" in window))) await page.evaluate(axeSource);
  const res = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = res.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  for (const v of res.violations) console.log(`   axe ${what}: ${v.impact} ${v.id}: ${v.help} (${v.nodes.length} nodes)`);
  assert.equal(bad.length, 0, `${what}: serious accessibility violations: ${bad.map((v) => v.id + " " + v.nodes.map((n) => n.target).join(",")).join("; ")}`);
}

async function signIn(page, token) {
  await page.goto(base + "/ui/");
  await page.getByLabel("Bearer token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("Signed in as").waitFor();
}

const browser = await chromium.launch({
  executablePath: env("CHROMIUM"),
  headless: true,
  args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
});
let current;
try {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  await ctx.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  const page = await ctx.newPage();
  current = page;
  page.on("console", (m) => m.type() === "error" && console.log("   browser error:", m.text()));

  step("login page, bad token");
  await page.goto(base + "/ui/");
  await page.getByRole("heading", { name: "edgefleet" }).waitFor();
  await axe(page, "login");
  await page.screenshot({ path: `${shots}/login.png` });
  await page.getByLabel("Bearer token").fill("not-a-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: "did not accept" }).waitFor();

  step("admin signs in and sees the clusters, live");
  await signIn(page, env("ADMIN_TOKEN"));
  const table = page.getByRole("table", { name: "Clusters" });
  await page.getByRole("status").filter({ hasText: `${clusters} shown` }).waitFor({ timeout: 60_000 });
  await page.getByText(/^Live/).first().waitFor();
  const edge = table.getByRole("row").filter({ hasText: "fleet-default/edge-0" });
  // The agent's heartbeat makes it Connected; its bundle becomes ready: both
  // arrive through the watch, without reloading.
  await edge.getByText("Yes").waitFor({ timeout: 90_000 });
  await edge.getByRole("cell", { name: "1/1", exact: true }).waitFor({ timeout: 90_000 });
  await edge.getByText("env=dev").waitFor();
  await axe(page, "clusters");
  await page.screenshot({ path: `${shots}/clusters.png` });

  step("live: a Cluster created and deleted elsewhere appears and disappears without a reload");
  const api = base + "/ui/api/k8s/apis/fleet.edgefleet.io/v1alpha1/namespaces/fleet-default/clusters";
  const auth = { Authorization: "Bearer " + env("ADMIN_TOKEN"), "X-Edgefleet-UI": "1" };
  const created = await ctx.request.post(api, {
    headers: { ...auth, "Content-Type": "application/json" },
    data: { apiVersion: "fleet.edgefleet.io/v1alpha1", kind: "Cluster", metadata: { name: "late-arrival", labels: { env: "late" } } },
  });
  assert.equal(created.status(), 201, await created.text());
  await page.getByRole("status").filter({ hasText: `${clusters + 1} shown` }).waitFor();
  const deleted = await ctx.request.delete(api + "/late-arrival", { headers: auth });
  assert.equal(deleted.status(), 200, await deleted.text());
  await page.getByRole("status").filter({ hasText: `${clusters} shown` }).waitFor({ timeout: 60_000 });

  step("network loss: the table says it is reconnecting, then catches up by itself");
  await ctx.setOffline(true);
  await page.getByText(/^Reconnecting/).first().waitFor({ timeout: 30_000 });
  const during = await ctx.request.post(api, {
    headers: { ...auth, "Content-Type": "application/json" },
    data: { apiVersion: "fleet.edgefleet.io/v1alpha1", kind: "Cluster", metadata: { name: "while-offline" } },
  });
  assert.equal(during.status(), 201, await during.text());
  await ctx.setOffline(false);
  await page.getByText(/^Live/).first().waitFor({ timeout: 30_000 });
  await page.getByRole("status").filter({ hasText: `${clusters + 1} shown` }).waitFor();
  assert.equal((await ctx.request.delete(api + "/while-offline", { headers: auth })).status(), 200);
  await page.getByRole("status").filter({ hasText: `${clusters} shown` }).waitFor({ timeout: 60_000 });

  step("server-side label filter");
  await page.getByLabel("Label selector (filtered by the API server)").first().fill("env=dev");
  await page.getByRole("button", { name: "Apply" }).first().click();
  await page.getByRole("status").filter({ hasText: /^1 shown$/ }).waitFor();
  await page.getByLabel("Label selector (filtered by the API server)").first().fill("");
  await page.getByRole("button", { name: "Apply" }).first().click();
  await page.getByRole("status").filter({ hasText: `${clusters} shown` }).waitFor();

  step("cluster detail");
  await edge.getByRole("button", { name: "fleet-default/edge-0" }).click();
  await page.getByRole("heading", { name: "fleet-default/edge-0" }).waitFor();
  await page.getByRole("table", { name: "Conditions" }).getByRole("cell", { name: "Connected", exact: true }).waitFor();

  step("time to first paint and to an interactive clusters table (reload, token in sessionStorage)");
  await page.reload();
  await table.getByRole("row").nth(1).waitFor();
  await page.getByRole("status").filter({ hasText: `${clusters} shown` }).waitFor({ timeout: 60_000 });
  const t = await page.evaluate(() => ({
    fcp: performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? -1,
    interactive: performance.now(),
    transfer: performance.getEntriesByType("resource").reduce((n, e) => n + (e.transferSize || 0), 0) + (performance.getEntriesByType("navigation")[0]?.transferSize ?? 0),
    rows: document.querySelectorAll("table[aria-label=Clusters] tbody tr:not(.spacer)").length,
  }));
  metrics.clusters = clusters;
  metrics.firstContentfulPaintMs = Math.round(t.fcp);
  metrics.clustersTableInteractiveMs = Math.round(t.interactive);
  metrics.initialLoadBytes = t.transfer;
  metrics.renderedRows = t.rows;
  assert.ok(t.rows < 80, `the table is virtualised: ${t.rows} rows rendered for ${clusters} clusters`);

  step("Fleet: GitRepo with commit and bundles ready/desired, drill-down");
  await page.getByRole("link", { name: "Fleet" }).click();
  const repos = page.getByRole("table", { name: "GitRepos" });
  const demo = repos.getByRole("row").filter({ hasText: "fleet-default/demo" });
  await demo.getByRole("cell", { name: env("COMMIT").slice(0, 12) }).waitFor({ timeout: 60_000 });
  await demo.getByRole("cell", { name: "1/1", exact: true }).waitFor({ timeout: 60_000 });
  const bundles = page.getByRole("table", { name: "Bundles" });
  const bundle = bundles.getByRole("row").filter({ hasText: "fleet-default/demo-app" });
  await bundle.getByRole("cell", { name: "1/1", exact: true }).waitFor();
  await bundle.getByRole("button").first().click();
  await page.getByText("Ready on every target cluster.").waitFor();
  if (clusters >= 3) {
    // A bundle whose target clusters never connected: the drill-down says which and why.
    const canary = bundles.getByRole("row").filter({ hasText: "fleet-default/canary-app" });
    await canary.getByRole("cell", { name: "0/2", exact: true }).waitFor({ timeout: 60_000 });
    await canary.getByRole("button").first().click();
    await page.getByRole("heading", { name: "Clusters where it is not ready (2)" }).waitFor();
    const notReady = page.getByRole("table", { name: "Clusters where the bundle is not ready" });
    await notReady.getByRole("row").filter({ hasText: "fleet-default/store-0001" }).waitFor();
    await notReady.getByRole("row").filter({ hasText: "fleet-default/store-0002" }).waitFor();
  }
  await axe(page, "fleet");
  await page.screenshot({ path: `${shots}/fleet.png`, fullPage: true });

  step("Machine registrations: empty state, create through the form, copy the URL");
  await page.getByRole("link", { name: "Machine registrations" }).click();
  await page.getByText("No machine registrations yet.").waitFor();
  await axe(page, "registrations (empty)");
  await page.getByRole("button", { name: "Create registration" }).click();
  await page.getByLabel("Name", { exact: true }).fill("Bad_Name");
  await page.getByText("The name must be lowercase").waitFor();
  await page.getByLabel("Name", { exact: true }).fill("rack-1");
  await page.getByLabel(/^Labels for the machines/).fill("site=lab\nrack=1");
  await page.getByRole("tab", { name: "YAML" }).click();
  const yaml = await page.getByLabel("MachineRegistration YAML").inputValue();
  assert.match(yaml, /"site": "lab"/);
  await page.getByRole("tab", { name: "Form" }).click();
  await axe(page, "registrations (form)");
  await page.getByRole("button", { name: "Create", exact: true }).click();
  await page.getByRole("heading", { name: "fleet-default/rack-1" }).waitFor();
  const url = page.locator("code.url");
  await url.waitFor({ timeout: 60_000 });
  const regURL = await url.textContent();
  assert.match(regURL, /^https:\/\/.+\/v1\/machines\/register\/.+/);
  await page.getByRole("button", { name: "Copy registration URL" }).click();
  await page.getByText("Copied.").waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), regURL);
  await page.getByRole("table", { name: "Machine registrations" }).getByRole("row").filter({ hasText: "fleet-default/rack-1" }).getByText("Ready").waitFor({ timeout: 60_000 });

  step("rotate the token: a new URL replaces the old one");
  await page.getByRole("button", { name: "Rotate token" }).click();
  await page.getByRole("button", { name: "Rotate now" }).click();
  await page.waitForFunction((old) => {
    const u = document.querySelector("code.url")?.textContent;
    return !!u && u !== old;
  }, regURL, { timeout: 60_000 });
  await axe(page, "registrations");
  await page.screenshot({ path: `${shots}/registrations.png`, fullPage: true });

  step("create as YAML");
  await page.getByRole("button", { name: "Create registration" }).click();
  await page.getByLabel("Name", { exact: true }).fill("rack-2");
  await page.getByRole("tab", { name: "YAML" }).click();
  const editor = page.getByLabel("MachineRegistration YAML");
  await editor.fill((await editor.inputValue()).replace("spec: {}", "spec:\n  maxMachines: 7"));
  await page.getByRole("button", { name: "Create", exact: true }).click();
  await page.getByRole("heading", { name: "fleet-default/rack-2" }).waitFor();
  await page.locator("dl.facts").getByText("7", { exact: true }).waitFor();

  step("a duplicate name shows the API's message");
  await page.getByRole("button", { name: "Create registration" }).click();
  await page.getByLabel("Name", { exact: true }).fill("rack-1");
  await page.getByRole("button", { name: "Create", exact: true }).click();
  await page.getByRole("alert").filter({ hasText: "already exists" }).waitFor();

  step("Inventory of machines: label columns, detail with conditions");
  await page.getByRole("link", { name: "Inventory of machines" }).click();
  const inv = page.getByRole("table", { name: "Inventory of machines" });
  await inv.getByRole("row").filter({ hasText: "machine-a" }).getByText("ACME").waitFor();
  await page.getByText("Label columns").click();
  await page.getByLabel("site", { exact: true }).check();
  await inv.getByRole("columnheader", { name: "site" }).waitFor();
  await inv.getByRole("row").filter({ hasText: "machine-a" }).getByRole("button").click();
  await page.getByRole("heading", { name: "fleet-default/machine-a" }).waitFor();
  await axe(page, "inventory");
  await page.screenshot({ path: `${shots}/inventory.png`, fullPage: true });
  await ctx.close();

  step("read-only user: sees, cannot create, and is told why");
  const vctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  const vpage = await vctx.newPage();
  current = vpage;
  await signIn(vpage, env("VIEW_TOKEN"));
  await vpage.getByRole("table", { name: "Clusters" }).getByRole("row").filter({ hasText: "fleet-default/edge-0" }).waitFor();
  await vpage.getByRole("link", { name: "Machine registrations" }).click();
  await vpage.getByRole("table", { name: "Machine registrations" }).getByRole("row").filter({ hasText: "fleet-default/rack-1" }).waitFor();
  await vpage.getByRole("button", { name: "Create registration" }).click();
  await vpage.getByText("You cannot create MachineRegistrations").waitFor();
  assert.ok(await vpage.getByRole("button", { name: "Create", exact: true }).isDisabled());
  await axe(vpage, "registrations (read-only)");
  await vpage.screenshot({ path: `${shots}/registrations-readonly.png`, fullPage: true });
  // The Secret holding the token is not readable: the URL is not shown.
  await vpage.getByRole("table", { name: "Machine registrations" }).getByRole("button", { name: "fleet-default/rack-1" }).click();
  await vpage.getByText(/The URL holds the registration token/).waitFor();
  await vpage.getByText("you may not rotate the token").waitFor();
  await vctx.close();

  step("client certificate: the browser presents it, the UI signs in without a token");
  const cctx = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: { width: 1280, height: 800 },
    clientCertificates: [{ origin: base, certPath: env("ADMIN_CERT"), keyPath: env("ADMIN_KEY") }],
  });
  const cpage = await cctx.newPage();
  current = cpage;
  await cpage.goto(base + "/ui/");
  await cpage.getByText("Signed in as").waitFor();
  await cpage.locator("header .who strong").filter({ hasText: env("ADMIN_CERT_USER") }).waitFor();
  await cpage.getByRole("table", { name: "Clusters" }).getByRole("row").filter({ hasText: "fleet-default/edge-0" }).waitFor();
  assert.equal(await cpage.evaluate(() => sessionStorage.length), 0, "no token is stored for a certificate sign-in");
  await cctx.close();
} catch (e) {
  await current?.screenshot({ path: `${shots}/failure.png`, fullPage: true }).catch(() => {});
  console.log(`   failure screenshot: ${shots}/failure.png`);
  throw e;
} finally {
  await browser.close();
}
console.log("METRICS " + JSON.stringify(metrics));
