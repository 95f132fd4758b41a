import { useEffect, useMemo, useState } from "preact/hooks";
import { age, condition, createObject, KObject, patchObject, request, saveFile, session, token } from "./api";
import { Badge, byName, Column, Conditions, DetailHead, ErrorBanner, Freshness, Labels, ListTable, StateCell, Submit, submitWith, Table, Toolbar, useAction, useCollection, usePermission } from "./table";
import { bdWhy, kubeconfigYAML, NAME_RE, parseLabels, qname, ready, registrationYAML } from "./model";
import { go, useParam } from "./route";

const FLEET = "/apis/fleet.edgefleet.io/v1alpha1";
const MACHINES = "/apis/machines.edgefleet.io/v1alpha1";

// Labels edgefleet itself sets; hidden from label columns to keep them readable.
const SYSTEM_LABELS = ["fleet.edgefleet.io/", "machines.edgefleet.io/"];

function Detail({ o, onClose, children }: { o: KObject; onClose: () => void; children?: preact.ComponentChildren }) {
  return (
    <section class="detail" aria-labelledby="detail-title">
      <DetailHead id="detail-title" title={qname(o)} onClose={onClose} />
      {children}
      <h3>Conditions</h3>
      <Conditions o={o} />
    </section>
  );
}

// Events lists the Kubernetes Events about an object, live.
export function Events({ o }: { o: KObject }) {
  const ev = useCollection(`/api/v1/namespaces/${encodeURIComponent(o.metadata.namespace ?? "default")}/events`, "", `involvedObject.uid=${o.metadata.uid}`);
  const items = useMemo(
    () => ev.sorted().sort((a: any, b: any) => String(b.lastTimestamp ?? b.eventTime ?? "").localeCompare(String(a.lastTimestamp ?? a.eventTime ?? ""))),
    [ev.version.value],
  );
  if (ev.state.value === "error") return <p class="muted">Events are not shown: {ev.error.value}</p>;
  if (items.length === 0) return <p>{ev.state.value === "loading" ? "Loading…" : "No events about this object (Kubernetes keeps them for an hour)."}</p>;
  return (
    <ListTable label="Events" head={["Type", "Reason", "Message", "Count", "Last seen"]}>
      {items.slice(0, 50).map((e: any) => (
        <tr>
          <td>
            <Badge ok={e.type === "Normal"} text={e.type} />
          </td>
          <td>{e.reason}</td>
          <td class="msg">{e.message}</td>
          <td>{e.count ?? 1}</td>
          <td>{age(e.lastTimestamp ?? e.eventTime)}</td>
        </tr>
      ))}
    </ListTable>
  );
}

// KubeconfigDownload writes a kubeconfig for the cluster's proxy through
// the manager (/k8s/clusters/<namespace>.<name>) carrying the signed-in
// user's own credential: the bearer token they signed in with, or, after a
// client-certificate sign-in, a user entry for them to fill with their
// certificate (the browser never reveals its key). Never another identity.
function KubeconfigDownload({ cluster }: { cluster: KObject }) {
  const { err, run } = useAction();
  const [done, setDone] = useState("");
  const ns = cluster.metadata.namespace!;
  const perm = usePermission("proxy", "fleet.edgefleet.io", "clusters", ns, "proxy", cluster.metadata.name);
  const download = () =>
    run(async () => {
      // The manager's CA is public (/cacerts): no credential is sent for it.
      const res = await fetch("/cacerts", { credentials: "omit", cache: "no-store" });
      if (!res.ok) throw new Error(`reading the manager's CA from /cacerts: ${res.status} ${res.statusText}`);
      const ca = await res.text();
      const name = ns + "." + cluster.metadata.name;
      const yaml = kubeconfigYAML({ name, server: location.origin + "/k8s/clusters/" + name, caPEM: ca, user: session.value?.user ?? "", token: token() });
      saveFile(new Blob([yaml], { type: "application/yaml" }), name + ".kubeconfig");
      setDone(token() ? "Saved. It carries your sign-in token: keep it like a password; it stops working when the token expires." : "Saved. Add your client certificate and key to its user entry (see the comment in the file).");
    });
  return (
    <>
      <button type="button" onClick={() => void download()} disabled={!perm}>
        Download kubeconfig
      </button>{" "}
      <span class="muted">
        reaches the cluster's API through the manager's tunnel as <strong>{session.value?.user}</strong>; the cluster's own RBAC decides (docs/tunnel.md).
      </span>
      {perm && !perm.allowed && (
        <div class="banner warn" role="note">
          The manager will refuse this kubeconfig: your user may not <code>proxy</code> to <code>clusters/proxy</code> in “{ns}”{perm.reason ? ` (${perm.reason})` : ""}. Ask an
          administrator for a RoleBinding to ClusterRole <code>edgefleet-cluster-proxy</code>.
        </div>
      )}
      <span role="status">{done}</span>
      <ErrorBanner text={err} />
    </>
  );
}

// ---------------------------------------------------------------- Clusters

// PROVISIONED_BY on a fleet Cluster names the ProvisionedCluster it was
// formed as: its formation progress is one click away.
const PROVISIONED_BY = "provisioning.edgefleet.io/cluster";

function FormedFrom({ o }: { o: KObject }) {
  const pc = o.metadata.labels?.[PROVISIONED_BY];
  if (!pc) return <span class="muted">—</span>;
  return (
    <a href={`#/provisioned?open=${encodeURIComponent(o.metadata.namespace + "/" + pc)}`} aria-label={`Formation progress of ${pc}`}>
      {pc} (progress)
    </a>
  );
}

export function ClustersPage() {
  const [selector, setSelector] = useParam("selector");
  const [filter, setFilter] = useParam("q");
  const [open, setOpen] = useParam("open");
  const coll = useCollection(FLEET + "/clusters", selector);
  const columns: Column[] = useMemo(
    () => [
      { title: "Name", value: qname },
      { title: "State", value: (o) => o.status?.display?.state || ready(o).text, cell: (o) => <StateCell o={o} state={o.status?.display?.state} /> },
      {
        title: "Connected",
        value: (o) => condition(o, "Connected")?.status ?? "Unknown",
        cell: (o) => {
          const c = condition(o, "Connected");
          return <Badge ok={c?.status === "True"} warn={!c} text={c?.status === "True" ? "Yes" : c ? "No" : "Unknown"} />;
        },
      },
      { title: "Last seen", value: (o) => o.status?.agent?.lastSeen ?? "", cell: (o) => age(o.status?.agent?.lastSeen) },
      {
        title: "Bundles ready",
        value: (o) => o.status?.display?.readyBundles ?? `${o.status?.readyBundles ?? 0}/${o.status?.desiredReadyBundles ?? 0}`,
      },
      { title: "Labels", value: (o) => JSON.stringify(o.metadata.labels ?? {}), cell: (o) => <Labels labels={o.metadata.labels} hide={SYSTEM_LABELS} />, width: "30%" },
      { title: "Formed from", value: (o) => o.metadata.labels?.[PROVISIONED_BY] ?? "", cell: (o) => <FormedFrom o={o} /> },
    ],
    [],
  );
  const sel = byName(coll, open);
  return (
    <>
      <Toolbar coll={coll} filter={filter} setFilter={setFilter} id="clusters" selector={selector} setSelector={setSelector} />
      <Table
        label="Clusters"
        columns={columns}
        coll={coll}
        filter={filter}
        urlSort
        selected={sel?.metadata.uid}
        onOpen={(o) => setOpen(qname(o))}
        empty={
          selector ? (
            <p>No cluster matches the label selector “{selector}”.</p>
          ) : (
            <>
              <p>
                <strong>No clusters yet.</strong> Create a registration token with <code>edgefleet token create -n fleet-default</code> and run the join command it
                prints on the cluster you want to manage; the cluster appears here as soon as its agent registers.
              </p>
            </>
          )
        }
      />
      {sel && (
        <Detail o={sel} onClose={() => setOpen("")}>
          <dl class="facts">
            <dt>Agent version</dt>
            <dd>{sel.status?.agent?.version || "—"}</dd>
            <dt>Kubernetes version</dt>
            <dd>{sel.status?.agent?.kubernetesVersion || "—"}</dd>
            <dt>Namespace on the manager</dt>
            <dd>{sel.status?.namespace || "—"}</dd>
            <dt>Status</dt>
            <dd>{ready(sel).message || "—"}</dd>
            <dt>Formed from</dt>
            <dd>{sel.metadata.labels?.[PROVISIONED_BY] ? <FormedFrom o={sel} /> : "— (joined with a registration token)"}</dd>
            <dt>kubeconfig</dt>
            <dd>
              <KubeconfigDownload cluster={sel} />
            </dd>
          </dl>
        </Detail>
      )}
    </>
  );
}

// ---------------------------------------------------------------- Fleet

function BundleDrillDown({ bundle, onClose }: { bundle: KObject; onClose: () => void }) {
  const sel = `fleet.edgefleet.io/bundle-name=${bundle.metadata.name},fleet.edgefleet.io/bundle-namespace=${bundle.metadata.namespace}`;
  const bds = useCollection(FLEET + "/bundledeployments", sel);
  const all = useMemo(() => bds.sorted(), [bds.version.value]);
  const notReady = all.filter((o) => !o.status?.ready || o.status?.display?.state !== "Ready");
  return (
    <Detail o={bundle} onClose={onClose}>
      <p>
        Ready on <strong>{bundle.status?.display?.readyClusters ?? `${bundle.status?.readyClusters ?? 0}/${bundle.status?.desiredReadyClusters ?? 0}`}</strong> target
        clusters. <Freshness state={bds.state.value} since={bds.since.value} error={bds.error.value} />
      </p>
      {bds.state.value === "error" && <ErrorBanner text={bds.error.value} />}
      <h3>Clusters where it is not ready ({notReady.length})</h3>
      {notReady.length === 0 ? (
        <p>{all.length === 0 ? "The bundle targets no cluster: check its targets in fleet.yaml or the GitRepo's targets." : "Ready on every target cluster."}</p>
      ) : (
        <ListTable label="Clusters where the bundle is not ready" head={["Cluster", "State", "Why"]}>
          {notReady.slice(0, 200).map((o) => (
            <tr>
              <td>{(o.metadata.labels?.["fleet.edgefleet.io/cluster-namespace"] ?? "") + "/" + (o.metadata.labels?.["fleet.edgefleet.io/cluster"] ?? o.metadata.namespace)}</td>
              <td>
                <Badge ok={false} warn={!o.status?.display?.state} text={o.status?.display?.state || "Pending"} />
              </td>
              <td class="msg">{bdWhy(o)}</td>
            </tr>
          ))}
        </ListTable>
      )}
    </Detail>
  );
}

export function FleetPage() {
  const [selector, setSelector] = useParam("selector");
  const [filter, setFilter] = useParam("q");
  const [open, setOpen] = useState("");
  const repos = useCollection(FLEET + "/gitrepos");
  const bundles = useCollection(FLEET + "/bundles", selector);
  const repoCols: Column[] = useMemo(
    () => [
      { title: "Name", value: qname },
      { title: "State", value: (o) => o.status?.display?.state || ready(o).text, cell: (o) => <StateCell o={o} state={o.status?.display?.state} /> },
      { title: "Repository", value: (o) => `${o.spec?.repo ?? ""}${o.spec?.branch ? " @ " + o.spec.branch : ""}` },
      { title: "Commit", value: (o) => (o.status?.commit ?? "").slice(0, 12) || "—" },
      { title: "Clusters ready", value: (o) => o.status?.display?.readyBundleDeployments ?? `${o.status?.readyClusters ?? 0}/${o.status?.desiredReadyClusters ?? 0}` },
      { title: "Message", value: (o) => o.status?.display?.message || (ready(o).ok ? "" : ready(o).message), width: "35%" },
    ],
    [],
  );
  const bundleCols: Column[] = useMemo(
    () => [
      { title: "Name", value: qname },
      { title: "State", value: (o) => o.status?.display?.state || ready(o).text, cell: (o) => <StateCell o={o} state={o.status?.display?.state} /> },
      { title: "GitRepo", value: (o) => o.metadata.labels?.["fleet.edgefleet.io/repo-name"] ?? "—" },
      { title: "Clusters ready", value: (o) => o.status?.display?.readyClusters ?? `${o.status?.readyClusters ?? 0}/${o.status?.desiredReadyClusters ?? 0}` },
      { title: "Message", value: (o) => (ready(o).ok ? "" : ready(o).message), width: "35%" },
    ],
    [],
  );
  const sel = open ? bundles.items.get(open) : undefined;
  return (
    <>
      <section aria-labelledby="gitrepos-h">
        <div class="section-head">
          <h2 id="gitrepos-h">GitRepos</h2>
          <Freshness state={repos.state.value} since={repos.since.value} error={repos.error.value} />
        </div>
        <Table
          label="GitRepos"
          columns={repoCols}
          coll={repos}
          height={260}
          empty={
            <p>
              <strong>No GitRepos yet.</strong> Add one with <code>kubectl apply</code> of a GitRepo (docs/gitrepo.md); every folder with a fleet.yaml becomes a bundle.
            </p>
          }
        />
      </section>
      <section aria-labelledby="bundles-h">
        <div class="section-head">
          <h2 id="bundles-h">Bundles</h2>
        </div>
        <Toolbar coll={bundles} filter={filter} setFilter={setFilter} id="bundles" selector={selector} setSelector={setSelector} />
        <Table
          label="Bundles"
          columns={bundleCols}
          coll={bundles}
          filter={filter}
          selected={open}
          onOpen={(o) => setOpen(o.metadata.uid)}
          empty={<p>No bundles{selector ? " match this selector" : ""}. Bundles come from GitRepos or <code>edgefleet apply NAME DIR</code>.</p>}
        />
      </section>
      {sel && <BundleDrillDown bundle={sel} onClose={() => setOpen("")} />}
    </>
  );
}

// ---------------------------------------------------------------- Machine registrations

function CreateRegistration({ onDone }: { onDone: (ns: string, name: string) => void }) {
  const [ns, setNs] = useState("fleet-default");
  const [name, setName] = useState("");
  const [machineName, setMachineName] = useState("");
  const [labelText, setLabelText] = useState("");
  const [mode, setMode] = useState<"form" | "yaml">("form");
  const [yaml, setYaml] = useState("");
  const { busy, err, run } = useAction();
  const perm = usePermission("create", "machines.edgefleet.io", "machineregistrations", ns);

  const parsed = parseLabels(labelText);
  const formYAML = registrationYAML(name, ns, machineName, parsed.labels);
  const validation = !name ? "Give the registration a name." : !NAME_RE.test(name) || name.length > 253 ? "The name must be lowercase letters, digits, '-' and '.' (a DNS subdomain)." : parsed.error;

  const submit = () =>
    run(async () => {
      const body = mode === "yaml" ? yaml : formYAML;
      const target = mode === "yaml" ? (/^\s*namespace:\s*"?([a-z0-9-]+)"?\s*$/m.exec(yaml)?.[1] ?? ns) : ns;
      const created = await createObject(MACHINES, "machineregistrations", target, body, "application/yaml");
      onDone(created.metadata.namespace ?? target, created.metadata.name);
    });

  const denied = perm && !perm.allowed;
  return (
    <section class="detail" aria-labelledby="create-title">
      <h2 id="create-title">New machine registration</h2>
      <div role="tablist" aria-label="Edit as" class="tabs">
        <button role="tab" type="button" aria-selected={mode === "form"} aria-controls="reg-panel" onClick={() => setMode("form")}>
          Form
        </button>
        <button
          role="tab"
          type="button"
          aria-selected={mode === "yaml"}
          aria-controls="reg-panel"
          onClick={() => {
            setYaml(formYAML);
            setMode("yaml");
          }}
        >
          YAML
        </button>
      </div>
      <div id="reg-panel" role="tabpanel">
      <form onSubmit={submitWith(submit)}>
        {mode === "form" ? (
          <>
            <label for="reg-ns">Namespace</label>
            <input id="reg-ns" value={ns} onInput={(e) => setNs((e.target as HTMLInputElement).value)} />
            <label for="reg-name">Name</label>
            <input id="reg-name" value={name} required onInput={(e) => setName((e.target as HTMLInputElement).value)} />
            <label for="reg-machine">Machine name template (optional)</label>
            <input id="reg-machine" value={machineName} placeholder="m-${System Information/UUID}" onInput={(e) => setMachineName((e.target as HTMLInputElement).value)} />
            <label for="reg-labels">Labels for the machines' inventory entries, one key=value per line (values may use SMBIOS templates)</label>
            <textarea id="reg-labels" rows={3} value={labelText} onInput={(e) => setLabelText((e.target as HTMLTextAreaElement).value)} />
            {validation && <p class="hint">{validation}</p>}
          </>
        ) : (
          <>
            <label for="reg-yaml">MachineRegistration YAML</label>
            <textarea id="reg-yaml" class="code" rows={14} spellcheck={false} value={yaml} onInput={(e) => setYaml((e.target as HTMLTextAreaElement).value)} />
          </>
        )}
        {denied && (
          <div class="banner warn" role="note">
            You cannot create MachineRegistrations in namespace “{ns}”: the manager's RBAC does not allow your user to <code>create</code> <code>machineregistrations.machines.edgefleet.io</code>{" "}
            there{perm!.reason ? ` (${perm!.reason})` : ""}. Ask an administrator for a RoleBinding that grants it.
          </div>
        )}
        <Submit text="Create" busyText="Creating…" busy={busy} disabled={!!denied || (mode === "form" && !!validation)} err={err} />
      </form>
      </div>
    </section>
  );
}

function RegistrationURL({ reg }: { reg: KObject }) {
  const [url, setUrl] = useState("");
  const [why, setWhy] = useState("");
  const [copied, setCopied] = useState(false);
  const secret = reg.status?.tokenSecretName as string | undefined;
  useEffect(() => {
    setUrl("");
    setWhy("");
    if (!secret) {
      setWhy("The controller has not issued a token yet.");
      return;
    }
    request<{ data?: Record<string, string> }>(`/api/v1/namespaces/${encodeURIComponent(reg.metadata.namespace!)}/secrets/${encodeURIComponent(secret)}`)
      .then((s) => setUrl(s.data?.url ? atob(s.data.url) : ""))
      .catch((e) => setWhy("The URL holds the registration token, kept in Secret " + secret + ": " + (e as Error).message));
  }, [secret, reg.metadata.resourceVersion]);
  return (
    <>
      <dt>Registration URL (ends with the registration token)</dt>
      <dd>
        {url ? (
          <>
            <code class="url">{url}</code>{" "}
            <button
              type="button"
              onClick={() => {
                void navigator.clipboard?.writeText(url).then(() => setCopied(true));
              }}
            >
              Copy registration URL
            </button>
            <span role="status">{copied ? " Copied." : ""}</span>
          </>
        ) : (
          <span>
            {reg.status?.registrationEndpoint ? <code>{reg.status.registrationEndpoint}…</code> : null} {why}
          </span>
        )}
      </dd>
    </>
  );
}

// RotateToken sets spec.token.rotation to a new value, which makes the
// controller replace the token: media and machines holding the old URL stop
// registering, so it asks first.
function RotateToken({ reg }: { reg: KObject }) {
  const [asking, setAsking] = useState(false);
  const { err, run } = useAction();
  const ns = reg.metadata.namespace!;
  const perm = usePermission("patch", "machines.edgefleet.io", "machineregistrations", ns);
  const rotate = () =>
    run(async () => {
      await patchObject(MACHINES, "machineregistrations", reg, { spec: { token: { rotation: new Date().toISOString() } } });
      setAsking(false);
    });
  if (perm && !perm.allowed) {
    return <span class="muted">(you may not rotate the token: the manager's RBAC does not allow you to patch machineregistrations in “{ns}”)</span>;
  }
  return (
    <>
      {!asking ? (
        <button type="button" disabled={!perm} onClick={() => setAsking(true)}>
          Rotate token
        </button>
      ) : (
        <span role="group" aria-label="Confirm token rotation">
          <span class="hint">Media and machines with the current URL will no longer register. </span>
          <button type="button" class="primary" onClick={() => void rotate()}>
            Rotate now
          </button>{" "}
          <button type="button" onClick={() => setAsking(false)}>
            Cancel
          </button>
        </span>
      )}
      <ErrorBanner text={err} />
    </>
  );
}

export function RegistrationsPage() {
  const [creating, setCreating] = useState(false);
  const [open, setOpen] = useParam("open");
  const [filter, setFilter] = useParam("q");
  const [selector, setSelector] = useParam("selector");
  const coll = useCollection(MACHINES + "/machineregistrations", selector);
  const columns: Column[] = useMemo(
    () => [
      { title: "Name", value: qname },
      { title: "Ready", value: (o) => ready(o).text, cell: (o) => <StateCell o={o} /> },
      { title: "Token expires", value: (o) => o.status?.tokenExpiresAt ?? "never", cell: (o) => (o.status?.tokenExpiresAt ? new Date(o.status.tokenExpiresAt).toLocaleString() : "never") },
      { title: "Inventory labels", value: (o) => JSON.stringify(o.spec?.machineInventoryLabels ?? {}), cell: (o) => <Labels labels={o.spec?.machineInventoryLabels} /> },
      { title: "Message", value: (o) => (ready(o).ok ? "" : ready(o).message) },
    ],
    [],
  );
  const sel = open ? [...coll.items.values()].find((o) => o.metadata.uid === open || qname(o) === open) : undefined;
  return (
    <>
      <div class="section-head">
        <p>A registration is the endpoint machines register at: bake its URL into installation media, boot machines, and they appear in the inventory.</p>
        <button type="button" class="primary" onClick={() => setCreating(true)} aria-expanded={creating}>
          Create registration
        </button>
      </div>
      {creating && (
        <CreateRegistration
          onDone={(ns, name) => {
            setCreating(false);
            setOpen(ns + "/" + name);
          }}
        />
      )}
      <Toolbar coll={coll} filter={filter} setFilter={setFilter} id="registrations" selector={selector} setSelector={setSelector} />
      <Table
        label="Machine registrations"
        columns={columns}
        coll={coll}
        filter={filter}
        selected={sel?.metadata.uid}
        urlSort
        onOpen={(o) => setOpen(qname(o))}
        empty={
          <p>
            <strong>No machine registrations yet.</strong> Use “Create registration” to make the endpoint your machines register at.
          </p>
        }
      />
      {sel && (
        <Detail o={sel} onClose={() => setOpen("")}>
          <dl class="facts">
            <RegistrationURL reg={sel} />
            <dt>Token rotation</dt>
            <dd>
              {sel.status?.tokenRotation || sel.spec?.token?.rotation || "—"} <RotateToken reg={sel} />
            </dd>
            <dt>Max machines</dt>
            <dd>{sel.spec?.maxMachines ?? "unlimited"}</dd>
            <dt>Installation media</dt>
            <dd>
              <button type="button" onClick={() => go("media", { registration: qname(sel), create: "1" })}>
                Build media for this registration
              </button>
            </dd>
          </dl>
        </Detail>
      )}
    </>
  );
}

// ---------------------------------------------------------------- Inventory

const DEFAULT_LABEL_COLUMNS = ["machines.edgefleet.io/manufacturer", "machines.edgefleet.io/product-name", "machines.edgefleet.io/arch"];

export function InventoryPage() {
  const [filter, setFilter] = useParam("q");
  const [selector, setSelector] = useParam("selector");
  const [open, setOpen] = useParam("open");
  const [labelCols, setLabelCols] = useState<string[]>(DEFAULT_LABEL_COLUMNS);
  const coll = useCollection(MACHINES + "/machineinventories", selector);
  const keys = useMemo(() => {
    const s = new Set<string>(DEFAULT_LABEL_COLUMNS);
    for (const o of coll.items.values()) for (const k of Object.keys(o.metadata.labels ?? {})) s.add(k);
    return [...s].sort();
  }, [coll.version.value]);
  const columns: Column[] = useMemo(
    () => [
      { title: "Name", value: qname },
      { title: "Registered", value: (o) => condition(o, "Registered")?.status ?? "Unknown", cell: (o) => {
          const c = condition(o, "Registered");
          return <Badge ok={c?.status === "True"} warn={!c || c.status === "Unknown"} text={c?.status ?? "Unknown"} />;
        },
      },
      { title: "Ready", value: (o) => ready(o).text, cell: (o) => <StateCell o={o} /> },
      { title: "Address", value: (o) => o.status?.network?.primaryAddress ?? "" },
      { title: "OS", value: (o) => [o.status?.os?.name, o.status?.os?.version].filter(Boolean).join(" ") },
      ...labelCols.map((k) => ({ title: k.replace(/^machines\.edgefleet\.io\//, ""), value: (o: KObject) => o.metadata.labels?.[k] ?? "" })),
      { title: "Last seen", value: (o) => o.status?.lastSeen ?? "", cell: (o) => age(o.status?.lastSeen) },
    ],
    [labelCols],
  );
  const sel = byName(coll, open);
  return (
    <>
      <div class="section-head">
        <p>Registered machines. Form a cluster from them by label: the Create cluster page shows which machines each pool would take.</p>
        <button type="button" class="primary" onClick={() => go("create", { ns: sel?.metadata.namespace ?? "" })}>
          Create cluster from these machines
        </button>
      </div>
      <Toolbar coll={coll} filter={filter} setFilter={setFilter} id="inventory" selector={selector} setSelector={setSelector} />
      <details class="columns">
        <summary>Label columns ({labelCols.length})</summary>
        <fieldset>
          <legend>Show these labels as columns</legend>
          {keys.map((k) => (
            <label class="check">
              <input type="checkbox" checked={labelCols.includes(k)} onChange={(e) => setLabelCols((e.target as HTMLInputElement).checked ? [...labelCols, k] : labelCols.filter((x) => x !== k))} />
              {k}
            </label>
          ))}
        </fieldset>
      </details>
      <Table
        label="Inventory of machines"
        columns={columns}
        coll={coll}
        filter={filter}
        urlSort
        selected={sel?.metadata.uid}
        onOpen={(o) => setOpen(qname(o))}
        empty={
          <p>
            <strong>No machines yet.</strong> Create a machine registration, build installation media with its URL (a SeedImage) and boot a machine from it; registered
            machines appear here.
          </p>
        }
      />
      {sel && (
        <Detail o={sel} onClose={() => setOpen("")}>
          <dl class="facts">
            <dt>Registration</dt>
            <dd>{sel.spec?.registrationRef ? `${sel.spec.registrationRef.namespace ?? sel.metadata.namespace}/${sel.spec.registrationRef.name}` : "—"}</dd>
            <dt>TPM hash</dt>
            <dd>
              <code>{sel.spec?.tpmHash || "—"}</code>
            </dd>
            <dt>Labels</dt>
            <dd>
              <Labels labels={sel.metadata.labels} />
            </dd>
          </dl>
          <MachineOS m={sel} />
          <MachineNetwork m={sel} />
          <MachinePlan m={sel} />
          <h3>Events</h3>
          <Events o={sel} />
        </Detail>
      )}
    </>
  );
}

function MachineOS({ m }: { m: KObject }) {
  const os = m.status?.os;
  return (
    <>
      <h3>Operating system</h3>
      {!os ? (
        <p>Not reported yet: the machine's node agent reports its OS after installation (edgefleet-node boot confirm).</p>
      ) : (
        <dl class="facts">
          <dt>OS</dt>
          <dd>{[os.name, os.version].filter(Boolean).join(" ") || "—"}</dd>
          <dt>Image</dt>
          <dd>
            <code>{os.image || "—"}</code> {os.digest && <code class="muted">{os.digest}</code>}
          </dd>
          <dt>Slots</dt>
          <dd>
            booted {os.bootedSlot || "—"}, active {os.activeSlot || "—"}
            {os.trySlot ? `, on trial ${os.trySlot}` : ""}
          </dd>
          {os.lastUpgrade && (
            <>
              <dt>Last upgrade</dt>
              <dd>
                <Badge ok={os.lastUpgrade.result === "Succeeded"} warn={os.lastUpgrade.result === "Pending"} text={os.lastUpgrade.result} /> {os.lastUpgrade.version || os.lastUpgrade.image}
                {os.lastUpgrade.slot ? ` (slot ${os.lastUpgrade.slot})` : ""} {age(os.lastUpgrade.time)}
                {os.lastUpgrade.message && <div class="msg">{os.lastUpgrade.message}</div>}
              </dd>
            </>
          )}
        </dl>
      )}
    </>
  );
}

function MachineNetwork({ m }: { m: KObject }) {
  const n = m.status?.network;
  return (
    <>
      <h3>Network</h3>
      {!n ? (
        <p>Not reported yet: the node agent reports the machine's addresses when it checks in.</p>
      ) : (
        <dl class="facts">
          <dt>Primary address</dt>
          <dd>
            <code>{n.primaryAddress || "—"}</code>
          </dd>
          <dt>All addresses</dt>
          <dd>{(n.addresses ?? []).map((a: string) => <code class="label">{a}</code>)}</dd>
        </dl>
      )}
    </>
  );
}

// MachinePlan shows where the machine's plan is: the manager's state, and
// what the node agent reported (instructions, the failure, probes).
function MachinePlan({ m }: { m: KObject }) {
  const p = m.status?.plan;
  if (!p) {
    return (
      <>
        <h3>Plan</h3>
        <p>No plan: nothing has been asked of this machine yet (a cluster or an OS upgrade gives it one).</p>
      </>
    );
  }
  const f = p.failure;
  const instr = (p.instructions ?? []) as { name: string; exitCode: number; output?: string; finishedTime?: string; durationMilliseconds?: number }[];
  const periodic = (p.periodicInstructions ?? []) as { name: string; exitCode: number; output?: string; lastRunTime?: string; failures?: number }[];
  const probes = (p.probes ?? []) as { name: string; healthy: boolean; successCount?: number; failureCount?: number; lastError?: string }[];
  return (
    <>
      <h3>Plan</h3>
      <dl class="facts">
        <dt>State</dt>
        <dd>
          <Badge ok={p.state === "Applied"} warn={!p.state || p.state === "Pending"} text={p.state || "Pending"} />
          {p.attempts ? ` after ${p.attempts} failed attempt${p.attempts === 1 ? "" : "s"}` : ""}
          {p.nextRetryTime ? `; next try ${new Date(p.nextRetryTime).toLocaleString()}` : ""}
        </dd>
        <dt>Plan checksum</dt>
        <dd>
          <code>{(p.checksum ?? "").slice(0, 16) || "—"}</code>
          {p.appliedChecksum && p.appliedChecksum !== p.checksum ? (
            <span class="muted"> (last applied {p.appliedChecksum.slice(0, 16)})</span>
          ) : p.appliedChecksum ? (
            <span class="muted"> (applied {age(p.lastAppliedTime)})</span>
          ) : null}
        </dd>
      </dl>
      {f && (
        <div class="banner error" role="alert" aria-label="Plan failure">
          <strong>{f.instruction ? `Instruction “${f.instruction}” failed` : "The plan failed"}</strong>
          {f.exitCode !== undefined && f.exitCode !== null ? ` (exit code ${f.exitCode})` : ""}: {f.message}
          {f.output && <pre class="output">{f.output}</pre>}
        </div>
      )}
      {instr.length > 0 && (
        <ListTable label="Plan instructions" head={["Instruction", "Exit code", "Took", "Finished", "Output"]}>
          {instr.map((i) => (
            <tr>
              <td>{i.name}</td>
              <td>
                <Badge ok={i.exitCode === 0} text={String(i.exitCode)} />
              </td>
              <td>{i.durationMilliseconds !== undefined ? `${(i.durationMilliseconds / 1000).toFixed(1)} s` : "—"}</td>
              <td>{age(i.finishedTime)}</td>
              <td class="msg">{i.output ? <pre class="output">{i.output}</pre> : ""}</td>
            </tr>
          ))}
        </ListTable>
      )}
      {periodic.length > 0 && (
        <ListTable label="Periodic instructions" head={["Periodic instruction", "Exit code", "Failures in a row", "Last run", "Output"]}>
          {periodic.map((i) => (
            <tr>
              <td>{i.name}</td>
              <td>
                <Badge ok={i.exitCode === 0} text={String(i.exitCode)} />
              </td>
              <td>{i.failures ?? 0}</td>
              <td>{age(i.lastRunTime)}</td>
              <td class="msg">{i.output ? <pre class="output">{i.output}</pre> : ""}</td>
            </tr>
          ))}
        </ListTable>
      )}
      {probes.length > 0 && (
        <ListTable label="Probes" head={["Probe", "Healthy", "Successes / failures in a row", "Last error"]}>
          {probes.map((pr) => (
            <tr>
              <td>{pr.name}</td>
              <td>
                <Badge ok={pr.healthy} text={pr.healthy ? "Healthy" : "Unhealthy"} />
              </td>
              <td>
                {pr.successCount ?? 0} / {pr.failureCount ?? 0}
              </td>
              <td class="msg">{pr.lastError}</td>
            </tr>
          ))}
        </ListTable>
      )}
    </>
  );
}
