// Browser test of the web UI against a real manager, driven by
// test/e2e/webui_test.go (which starts the manager, a dev cluster with an
// agent, a GitRepo and the users). Debian's chromium via playwright-core: no
// browser is downloaded. Prints one JSON line of measurements at the end.
//
// Env: EDGEFLEET_URL, ADMIN_TOKEN, VIEW_TOKEN, CHROMIUM, SCREENSHOTS (dir),
// CLUSTERS (how many Clusters the manager has).
import { chromium } from "playwright-core";
import { readFileSync, mkdirSync } from "node:fs";
import { createHash } from "node:crypto";
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
const downloads = env("DOWNLOADS");
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

// save clicks what starts a download and keeps the file as name.
async function save(page, click, name) {
  const [dl] = await Promise.all([page.waitForEvent("download", { timeout: 120_000 }), click()]);
  const path = `${downloads}/${name}`;
  await dl.saveAs(path);
  return readFileSync(path);
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

  step("kubeconfig for edge-0 through the tunnel, as the signed-in user");
  const kc = (await save(page, () => page.getByRole("button", { name: "Download kubeconfig" }).click(), "admin.kubeconfig")).toString();
  assert.match(kc, new RegExp(`server: "${base.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}/k8s/clusters/fleet-default.edge-0"`));
  assert.ok(kc.includes(`token: "${env("ADMIN_TOKEN")}"`), "the kubeconfig carries the signed-in user's token");
  await page.getByText("It carries your sign-in token").waitFor();
  assert.equal(await page.getByText("The manager will refuse this kubeconfig").count(), 0);
  await axe(page, "clusters (detail)");
  await page.screenshot({ path: `${shots}/cluster-detail.png`, fullPage: true });

  step("filters and sort live in the URL and survive a reload");
  await page.getByLabel("Label selector (filtered by the API server)").first().fill("canary=true");
  await page.getByRole("button", { name: "Apply" }).first().click();
  await page.getByLabel("Filter by name").fill("store");
  await table.getByRole("button", { name: "Name", exact: true }).click(); // ascending is the default: now descending
  const canaries = Math.min(2, clusters - 1);
  await page.getByRole("status").filter({ hasText: new RegExp(`^${canaries} shown$`) }).waitFor();
  const hash = new URL(page.url()).hash;
  assert.match(hash, /selector=canary%3Dtrue/);
  assert.match(hash, /q=store/);
  assert.match(hash, /dir=desc/);
  assert.match(hash, /open=fleet-default%2Fedge-0/);
  await page.reload();
  await page.getByRole("status").filter({ hasText: new RegExp(`^${canaries} shown$`) }).waitFor({ timeout: 60_000 });
  assert.equal(await page.getByLabel("Filter by name").inputValue(), "store");
  assert.equal(await page.getByLabel("Label selector (filtered by the API server)").first().inputValue(), "canary=true");
  if (canaries === 2) assert.match(await table.getByRole("row").nth(1).textContent(), /store-0002/);
  assert.equal(await table.getByRole("columnheader", { name: "Name" }).getAttribute("aria-sort"), "descending");
  await page.goto(base + "/ui/#/clusters?open=fleet-default%2Fedge-0");
  await page.getByRole("heading", { name: "fleet-default/edge-0" }).waitFor(); // the open detail, from the URL
  await page.goto(base + "/ui/#/clusters");
  await page.getByRole("status").filter({ hasText: `${clusters} shown` }).waitFor({ timeout: 60_000 });

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

  step("Build media: empty state, then from the registration's page");
  const urls = [];
  page.on("request", (r) => urls.push(r.url()));
  await page.getByRole("link", { name: "Build media" }).click();
  await page.getByText("No media built yet.").waitFor();
  await axe(page, "media (empty)");
  await page.getByRole("link", { name: "Machine registrations" }).click();
  await page.getByRole("table", { name: "Machine registrations" }).getByRole("button", { name: "fleet-default/rack-1" }).click();
  await page.getByRole("button", { name: "Build media for this registration" }).click();
  const form = page.locator("form").filter({ has: page.getByLabel("Registration", { exact: true }) });
  await form.waitFor();
  await page.waitForFunction(() => document.getElementById("media-reg")?.value === "fleet-default/rack-1");
  await page.getByRole("radio", { name: /ISO \(USB stick/ }).check();
  await page.getByRole("radio", { name: /A base image/ }).check();
  await page.getByLabel("Base image", { exact: true }).fill("https://images.example.com/os.iso");
  await page.getByText("An http(s) base image needs its SHA-256").waitFor();
  await page.getByRole("radio", { name: /Configuration only/ }).check();
  await axe(page, "media (form)");
  await form.getByRole("button", { name: "Build media" }).click();
  const mediaHead = page.getByRole("heading", { name: /^fleet-default\/media-rack-1-[a-z]{5}$/ });
  await mediaHead.waitFor();
  const mediaName = (await mediaHead.textContent()).split("/")[1];
  await page.getByRole("list", { name: "Build progress" }).waitFor();
  const dlButton = page.getByRole("button", { name: "Download ISO" });
  await dlButton.waitFor({ timeout: 120_000 });
  const shown = (await page.locator("#media-sha256").textContent()).trim();
  assert.match(shown, /^[a-f0-9]{64}$/);
  const iso = await save(page, () => dlButton.click(), "media.iso");
  assert.equal(createHash("sha256").update(iso).digest("hex"), shown, "the downloaded image has the checksum the page shows");
  await page.getByText("SHA-256 verified in your browser").waitFor();
  const sumFile = (await save(page, () => page.getByRole("button", { name: "Download checksum file" }).click(), "media.sha256")).toString();
  assert.ok(sumFile.startsWith(shown), `checksum file ${sumFile}`);
  for (const u of urls) {
    assert.ok(!u.includes("/v1/seedimages/"), `the browser used the capability URL ${u}`);
    assert.ok(!u.includes(env("ADMIN_TOKEN")), "a token in a URL");
  }
  assert.ok(urls.some((u) => u.includes(`/ui/api/seedimages/fleet-default/${mediaName}/image`)), "downloaded through the UI's authenticated route");
  await page.getByRole("table", { name: "Seed images" }).getByRole("row").filter({ hasText: mediaName }).getByText("Ready").waitFor();
  await axe(page, "media");
  await page.screenshot({ path: `${shots}/media.png`, fullPage: true });

  step("Inventory of machines: label columns, detail with conditions");
  await page.getByRole("link", { name: "Inventory of machines" }).click();
  const inv = page.getByRole("table", { name: "Inventory of machines" });
  await inv.getByRole("row").filter({ hasText: "machine-a" }).getByText("ACME").waitFor();
  await page.getByText("Label columns").click();
  await page.getByLabel("site", { exact: true }).check();
  await inv.getByRole("columnheader", { name: "site" }).waitFor();
  await inv.getByRole("row").filter({ hasText: "machine-a" }).getByRole("button").click();
  await page.getByRole("heading", { name: "fleet-default/machine-a" }).waitFor();
  const machineDetail = page.locator("section.detail");
  await machineDetail.getByText("edgefleet OS v2.0.0").waitFor();
  await machineDetail.getByText("2001:db8::10").waitFor();
  await page.getByRole("alert", { name: "Plan failure" }).filter({ hasText: "Instruction “install-agent” failed (exit code 3)" }).waitFor();
  await page.getByRole("table", { name: "Plan instructions" }).getByRole("row").filter({ hasText: "prepare" }).getByText("1.2 s").waitFor();
  await page.getByRole("table", { name: "Probes" }).getByRole("row").filter({ hasText: "kubelet" }).getByText("connection refused").waitFor();
  await page.getByRole("heading", { name: "Events" }).waitFor();
  assert.match(new URL(page.url()).hash, /open=fleet-default%2Fmachine-a/);
  await axe(page, "inventory");
  await page.screenshot({ path: `${shots}/inventory.png`, fullPage: true });

  step("OS upgrades: a channel's sync error, a version, an upgrade started from it, per-machine progress, pause");
  await page.getByRole("link", { name: "OS upgrades" }).click();
  await page.getByText("No OS upgrades.").waitFor();
  const chans = page.getByRole("table", { name: "Version channels" });
  await chans.getByRole("row").filter({ hasText: "fleet-default/nightly" }).getByText("SyncFailed").waitFor({ timeout: 60_000 });
  await axe(page, "os upgrades (empty)");
  await page.getByRole("button", { name: "Upgrade machines to fleet-default/os-v2" }).click();
  await page.waitForFunction(() => document.getElementById("up-version")?.value === "os-v2");
  await page.getByLabel("Name", { exact: true }).fill("lab-v2");
  await page.getByLabel(/^Machines \(a label selector/).fill("site in (");
  await page.getByText("is not a label requirement").waitFor();
  await page.getByLabel(/^Machines \(a label selector/).fill("site=lab");
  await page.getByRole("button", { name: "Start upgrade" }).click();
  await page.getByRole("heading", { name: "fleet-default/lab-v2" }).waitFor();
  // machine-a runs the image already; machine-b does not.
  await page.getByText(/1\/2 upgraded/).first().waitFor({ timeout: 60_000 });
  await page.getByRole("button", { name: "Pause", exact: true }).click();
  await page.getByRole("button", { name: "Resume", exact: true }).waitFor();
  await page.getByRole("table", { name: "OS upgrades" }).getByRole("row").filter({ hasText: "fleet-default/lab-v2" }).getByText("Paused").waitFor();
  await axe(page, "os upgrades");
  await page.screenshot({ path: `${shots}/os-upgrades.png`, fullPage: true });

  step("Create cluster: distro and the manager's versions, pools chosen by label, the live preview, YAML, create as the admin");
  await page.getByRole("link", { name: "Provisioned clusters" }).click();
  // "warehouse" (holding shop-5) waits for a control plane no machine matches.
  await page.getByRole("table", { name: "Provisioned clusters" }).getByRole("row").filter({ hasText: "warehouse" }).waitFor();
  await page.getByRole("button", { name: "Create cluster", exact: true }).waitFor();
  await page.getByRole("link", { name: "Inventory of machines" }).click();
  await page.getByRole("button", { name: "Create cluster from these machines" }).click();
  await page.getByRole("heading", { name: "Create cluster", level: 1 }).waitFor();
  assert.equal(await page.locator("#pc-ns").inputValue(), "fleet-default");
  // A namespace without machines: the page says where they are; nothing matches.
  await page.locator("#pc-ns").fill("nowhere");
  await page.getByText("No machines in “nowhere”; machines are in fleet-default.").waitFor();
  await page.getByRole("status", { name: "Machines matching Control plane" }).getByText("Matches 0 machines").waitFor();
  await page.getByRole("status", { name: "Machines matching Control plane" }).getByText("1 missing").waitFor();
  await page.locator("#pc-ns").fill("fleet-default");
  await page.locator("#pc-name").fill("shop");
  // rke2 is not in the manager's --kubernetes-releases: the page says any version goes.
  await page.locator("#pc-distro").selectOption("rke2");
  await page.getByText("This manager lists no rke2 versions").waitFor();
  await page.locator("#pc-distro").selectOption("k3s");
  assert.deepEqual(await page.locator("#pc-version option").allTextContents(), ["v1.33.5+k3s1", "v1.34.1+k3s1"]);
  await page.locator("#pc-version").selectOption("v1.33.5+k3s1");
  const cpPreview = page.getByRole("status", { name: "Machines matching Control plane" });
  // No requirement yet: every machine of the namespace matches.
  await cpPreview.getByText("Matches 7 machines").waitFor();
  await page.getByRole("region", { name: "Control plane" }).getByRole("button", { name: "Add requirement" }).click();
  await page.locator("#pool-cp-r0-key").fill("role");
  await page.locator("#pool-cp-r0-values").fill("server");
  await page.getByRole("region", { name: "Control plane" }).getByRole("button", { name: "Add requirement" }).click();
  await page.locator("#pool-cp-r1-key").fill("site");
  await page.locator("#pool-cp-r1-values").fill("shop");
  await cpPreview.getByText("Matches 1 machine:").waitFor();
  await cpPreview.getByText("Would adopt (1): shop-1").waitFor();
  await page.getByRole("button", { name: "Add worker pool" }).click();
  const w = page.getByRole("region", { name: "Worker pool 1" });
  assert.equal(await page.locator("#pool-w0-name").inputValue(), "default");
  await page.locator("#pool-w0-replicas").fill("2");
  await w.getByRole("button", { name: "Add requirement" }).click();
  await page.locator("#pool-w0-r0-key").fill("role");
  await page.locator("#pool-w0-r0-op").selectOption("In");
  // The values the inventory has for the key are offered.
  assert.deepEqual(await page.locator("#pool-w0-r0-seen option").evaluateAll((os) => os.map((o) => o.value)), ["server", "worker"]);
  await page.locator("#pool-w0-r0-values").fill("worker");
  await w.getByRole("button", { name: "Add requirement" }).click();
  await page.locator("#pool-w0-r1-key").fill("site");
  await page.locator("#pool-w0-r1-values").fill("shop");
  const wPreview = page.getByRole("status", { name: "Machines matching Worker pool 1" });
  await wPreview.getByText("Matches 4 machines").waitFor();
  await wPreview.getByText("Would adopt (2): shop-2, shop-3").waitFor();
  await wPreview.getByText("Not Ready yet (1): shop-4").waitFor();
  await wPreview.getByText("Held by another cluster (1): shop-5 (warehouse/default)").waitFor();
  // Live: a machine registered meanwhile shows up in the preview without a reload.
  await page.evaluate(async () => {
    const res = await fetch("/ui/api/k8s/apis/machines.edgefleet.io/v1alpha1/namespaces/fleet-default/machineinventories", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Edgefleet-UI": "1", Authorization: "Bearer " + sessionStorage.getItem("edgefleet.token") },
      body: JSON.stringify({ apiVersion: "machines.edgefleet.io/v1alpha1", kind: "MachineInventory", metadata: { name: "shop-6", labels: { role: "worker", site: "shop" } } }),
    });
    if (!res.ok) throw new Error("creating shop-6: " + res.status);
  });
  await wPreview.getByText("Not Ready yet (2): shop-4, shop-6").waitFor();
  await wPreview.getByText("Matches 5 machines").waitFor();
  // Asking for more than there is: the pool says what it would wait for.
  await page.locator("#pool-w0-replicas").fill("3");
  await wPreview.getByText("1 missing").waitFor();
  await wPreview.getByText(/The pool would wait: pool default needs 3 more machine\(s\)/).waitFor();
  await page.locator("#pool-w0-replicas").fill("2");
  await wPreview.getByText("enough machines").waitFor();
  await w.getByText("Node labels and taints").click();
  await page.locator("#pool-w0-labels").fill("tier=edge");
  await page.locator("#pool-w0-taints").fill("gpu");
  await page.getByText("Worker pool 1: taint “gpu” is not key=value:Effect or key:Effect").waitFor();
  assert.ok(await page.getByRole("button", { name: "Create cluster", exact: true }).isDisabled());
  await page.locator("#pool-w0-taints").fill("gpu=true:NoSchedule");
  const yamlView = page.locator("pre.yaml");
  await yamlView.getByText(/effect: "NoSchedule"/).waitFor();
  const y = await yamlView.textContent();
  assert.match(y, /kind: "ProvisionedCluster"/);
  assert.match(y, /distro: "k3s"\n  version: "v1\.33\.5\+k3s1"/);
  assert.match(y, /workers:\n  - name: "default"\n    replicas: 2\n/);
  assert.match(y, /nodeLabels:\n      tier: "edge"/);
  await axe(page, "create cluster");
  await page.screenshot({ path: `${shots}/create-cluster.png`, fullPage: true });
  await page.getByRole("button", { name: "Create cluster", exact: true }).click();

  step("the cluster's progress: machines adopted, bootstrapped, conditions, live");
  await page.getByRole("heading", { name: "fleet-default/shop" }).waitFor();
  assert.match(new URL(page.url()).hash, /^#\/provisioned\?open=fleet-default%2Fshop$/);
  const machinesTable = page.getByRole("table", { name: "Machines of this cluster" });
  for (const m of ["shop-1", "shop-2", "shop-3"]) await machinesTable.getByRole("row").filter({ hasText: m }).waitFor({ timeout: 60_000 });
  await machinesTable.getByRole("row").filter({ hasText: "shop-1" }).getByText("server (init)").waitFor();
  const progress = page.getByRole("list", { name: "Formation progress" });
  await progress.getByText("Machines adopted 3/3").waitFor({ timeout: 60_000 });
  // The simulated machines report their plans applied and a healthy kubelet:
  // formation marks them bootstrapped and, with no agent connected to read
  // Nodes through, NodeReady from the probe; no fleet agent ever runs here.
  await progress.getByText("Bootstrapped 3/3").waitFor({ timeout: 120_000 });
  await progress.getByText("Nodes Ready 3/3").waitFor({ timeout: 60_000 });
  await page.locator("ol.steps li.current").filter({ hasText: "Joined the fleet" }).waitFor();
  const pools = page.getByRole("table", { name: "Pools" });
  await pools.getByRole("row").filter({ hasText: "default" }).getByRole("cell").nth(1).getByText("2").waitFor();
  await page.getByRole("table", { name: "Conditions" }).getByRole("row").filter({ hasText: "FleetJoined" }).getByText(/WaitingForAgent|AgentDisconnected/).waitFor({ timeout: 60_000 });
  await page.getByRole("table", { name: "Provisioned clusters" }).getByRole("row").filter({ hasText: "fleet-default/shop" }).getByText("k3s v1.33.5+k3s1").waitFor();
  await axe(page, "provisioned cluster progress");
  await page.screenshot({ path: `${shots}/cluster-progress.png`, fullPage: true });

  step("the fleet Cluster the join token registered links to the progress, and back");
  // webui_test.go registers shop with its join token as its agent would.
  const fleetLink = page.locator("section.detail dd a[href^='#/clusters?open=']");
  await fleetLink.waitFor({ timeout: 60_000 });
  const fleetName = (await fleetLink.textContent()).trim();
  await fleetLink.click();
  await page.getByRole("heading", { name: fleetName }).waitFor();
  await page.getByLabel("Filter by name").fill(fleetName.split("/")[1]);
  await page.getByRole("table", { name: "Clusters" }).getByRole("row").filter({ hasText: fleetName }).getByRole("link", { name: "Formation progress of shop" }).waitFor();
  await page.locator("section.detail").getByRole("link", { name: "Formation progress of shop" }).click();
  await page.getByRole("heading", { name: "fleet-default/shop" }).waitFor();
  await page.getByRole("list", { name: "Formation progress" }).waitFor();
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
  await vpage.getByRole("button", { name: "Build media for this registration" }).click();
  await vpage.getByText("You cannot build media in namespace").waitFor();
  await vpage.getByRole("link", { name: "OS upgrades" }).click();
  await vpage.getByRole("button", { name: "New OS upgrade" }).click();
  await vpage.getByText("You cannot start OS upgrades").waitFor();
  // Create cluster: the viewer sees the page and the preview, the API refuses the create.
  await vpage.getByRole("link", { name: "Create cluster", exact: true }).click();
  await vpage.locator("#pc-name").fill("viewer-shop");
  await vpage.locator("#pc-distro").selectOption("k3s");
  await vpage.getByRole("status", { name: "Machines matching Control plane" }).getByText(/Matches \d+ machines/).waitFor();
  await vpage.getByText("The manager's RBAC does not allow your user to create").waitFor();
  await vpage.getByRole("button", { name: "Create cluster", exact: true }).click();
  await vpage.getByRole("alert").filter({ hasText: /provisionedclusters.provisioning.edgefleet.io is forbidden: User "system:serviceaccount:fleet-default:ui-viewer" cannot create/ }).waitFor();
  await axe(vpage, "create cluster (read-only)");
  await vpage.getByRole("link", { name: "Provisioned clusters" }).click();
  await vpage.getByRole("table", { name: "Provisioned clusters" }).getByRole("row").filter({ hasText: "fleet-default/shop" }).waitFor();
  await vpage.goto(base + "/ui/#/clusters?open=fleet-default%2Fedge-0");
  await vpage.getByRole("heading", { name: "fleet-default/edge-0" }).waitFor();
  await vpage.getByText("The manager will refuse this kubeconfig").waitFor();
  const vkc = (await save(vpage, () => vpage.getByRole("button", { name: "Download kubeconfig" }).click(), "viewer.kubeconfig")).toString();
  assert.ok(vkc.includes(`token: "${env("VIEW_TOKEN")}"`) && !vkc.includes(env("ADMIN_TOKEN")), "the viewer's kubeconfig carries the viewer's token, never the admin's");
  await axe(vpage, "clusters (read-only detail)");
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
