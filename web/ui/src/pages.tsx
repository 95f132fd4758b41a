import { useEffect, useMemo, useState } from "preact/hooks";
import { ApiError, age, can, condition, KObject, request } from "./api";
import { Badge, Column, Conditions, Freshness, Labels, SelectorInput, Table, useCollection } from "./table";
import { Collection } from "./api";
import { bdWhy, NAME_RE, parseLabels, qname, ready, registrationYAML, stateTone } from "./model";

const FLEET = "/apis/fleet.edgefleet.io/v1alpha1";
const MACHINES = "/apis/machines.edgefleet.io/v1alpha1";

// Labels edgefleet itself sets; hidden from label columns to keep them readable.
const SYSTEM_LABELS = ["fleet.edgefleet.io/", "machines.edgefleet.io/"];

// StateCell shows the kind's state word, coloured by stateTone.
function StateCell({ o, state }: { o: KObject; state?: string }) {
  const { tone, text } = stateTone(o, state);
  return <Badge ok={tone === "ok"} warn={tone === "warn"} text={text} />;
}

function Toolbar({ coll, filter, setFilter, id, selector, setSelector }: { coll: Collection; filter: string; setFilter: (s: string) => void; id: string; selector: string; setSelector: (s: string) => void }) {
  return (
    <div class="toolbar">
      <div class="filters">
        <label for={id + "-filter"}>Filter by name</label>
        <input id={id + "-filter"} type="search" value={filter} onInput={(e) => setFilter((e.target as HTMLInputElement).value)} />
      </div>
      <SelectorInput id={id + "-selector"} value={selector} onChange={setSelector} />
      <Freshness state={coll.state.value} since={coll.since.value} error={coll.error.value} />
    </div>
  );
}

function Detail({ o, onClose, children }: { o: KObject; onClose: () => void; children?: preact.ComponentChildren }) {
  return (
    <section class="detail" aria-labelledby="detail-title">
      <div class="detail-head">
        <h2 id="detail-title">{qname(o)}</h2>
        <button type="button" onClick={onClose}>
          Close
        </button>
      </div>
      {children}
      <h3>Conditions</h3>
      <Conditions o={o} />
    </section>
  );
}

// ---------------------------------------------------------------- Clusters

export function ClustersPage() {
  const [selector, setSelector] = useState("");
  const [filter, setFilter] = useState("");
  const [open, setOpen] = useState<string>("");
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
    ],
    [],
  );
  const sel = open ? coll.items.get(open) : undefined;
  return (
    <>
      <Toolbar coll={coll} filter={filter} setFilter={setFilter} id="clusters" selector={selector} setSelector={setSelector} />
      <Table
        label="Clusters"
        columns={columns}
        coll={coll}
        filter={filter}
        selected={open}
        onOpen={(o) => setOpen(o.metadata.uid)}
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
      {bds.state.value === "error" && (
        <div class="banner error" role="alert">
          {bds.error.value}
        </div>
      )}
      <h3>Clusters where it is not ready ({notReady.length})</h3>
      {notReady.length === 0 ? (
        <p>{all.length === 0 ? "The bundle targets no cluster: check its targets in fleet.yaml or the GitRepo's targets." : "Ready on every target cluster."}</p>
      ) : (
        <table class="conditions" aria-label="Clusters where the bundle is not ready">
          <thead>
            <tr>
              <th scope="col">Cluster</th>
              <th scope="col">State</th>
              <th scope="col">Why</th>
            </tr>
          </thead>
          <tbody>
            {notReady.slice(0, 200).map((o) => (
              <tr>
                <td>{(o.metadata.labels?.["fleet.edgefleet.io/cluster-namespace"] ?? "") + "/" + (o.metadata.labels?.["fleet.edgefleet.io/cluster"] ?? o.metadata.namespace)}</td>
                <td>
                  <Badge ok={false} warn={!o.status?.display?.state} text={o.status?.display?.state || "Pending"} />
                </td>
                <td class="msg">{bdWhy(o)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Detail>
  );
}

export function FleetPage() {
  const [selector, setSelector] = useState("");
  const [filter, setFilter] = useState("");
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
  const [err, setErr] = useState("");
  const [busy, setBusy] = useState(false);
  const [perm, setPerm] = useState<{ allowed: boolean; reason: string } | null>(null);

  useEffect(() => {
    let live = true;
    setPerm(null);
    can("create", "machines.edgefleet.io", "machineregistrations", ns)
      .then((p) => live && setPerm(p))
      .catch((e) => live && setPerm({ allowed: false, reason: (e as Error).message }));
    return () => {
      live = false;
    };
  }, [ns]);

  const parsed = parseLabels(labelText);
  const formYAML = registrationYAML(name, ns, machineName, parsed.labels);
  const validation = !name ? "Give the registration a name." : !NAME_RE.test(name) || name.length > 253 ? "The name must be lowercase letters, digits, '-' and '.' (a DNS subdomain)." : parsed.error;

  const submit = async () => {
    setBusy(true);
    setErr("");
    const body = mode === "yaml" ? yaml : formYAML;
    const target = mode === "yaml" ? (/^\s*namespace:\s*"?([a-z0-9-]+)"?\s*$/m.exec(yaml)?.[1] ?? ns) : ns;
    try {
      const created = await request<KObject>(`${MACHINES}/namespaces/${encodeURIComponent(target)}/machineregistrations?fieldManager=edgefleet-ui`, {
        method: "POST",
        contentType: "application/yaml",
        body,
      });
      onDone(created.metadata.namespace ?? target, created.metadata.name);
    } catch (e) {
      setErr((e as ApiError).message);
    } finally {
      setBusy(false);
    }
  };

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
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void submit();
        }}
      >
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
        <div class="actions">
          <button type="submit" class="primary" disabled={busy || !!denied || (mode === "form" && !!validation)}>
            {busy ? "Creating…" : "Create"}
          </button>
        </div>
        {err && (
          <div class="banner error" role="alert">
            {err}
          </div>
        )}
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
  const [err, setErr] = useState("");
  const [perm, setPerm] = useState<{ allowed: boolean; reason: string } | null>(null);
  const ns = reg.metadata.namespace!;
  useEffect(() => {
    let live = true;
    can("patch", "machines.edgefleet.io", "machineregistrations", ns)
      .then((p) => live && setPerm(p))
      .catch((e) => live && setPerm({ allowed: false, reason: (e as Error).message }));
    return () => {
      live = false;
    };
  }, [ns]);
  const rotate = async () => {
    setErr("");
    try {
      await request(`${MACHINES}/namespaces/${encodeURIComponent(ns)}/machineregistrations/${encodeURIComponent(reg.metadata.name)}?fieldManager=edgefleet-ui`, {
        method: "PATCH",
        contentType: "application/merge-patch+json",
        body: JSON.stringify({ spec: { token: { rotation: new Date().toISOString() } } }),
      });
      setAsking(false);
    } catch (e) {
      setErr((e as Error).message);
    }
  };
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
      {err && (
        <div class="banner error" role="alert">
          {err}
        </div>
      )}
    </>
  );
}

export function RegistrationsPage() {
  const [creating, setCreating] = useState(false);
  const [open, setOpen] = useState("");
  const [filter, setFilter] = useState("");
  const [selector, setSelector] = useState("");
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
        onOpen={(o) => setOpen(o.metadata.uid)}
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
          </dl>
        </Detail>
      )}
    </>
  );
}

// ---------------------------------------------------------------- Inventory

const DEFAULT_LABEL_COLUMNS = ["machines.edgefleet.io/manufacturer", "machines.edgefleet.io/product-name", "machines.edgefleet.io/arch"];

export function InventoryPage() {
  const [filter, setFilter] = useState("");
  const [selector, setSelector] = useState("");
  const [open, setOpen] = useState("");
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
      ...labelCols.map((k) => ({ title: k.replace(/^machines\.edgefleet\.io\//, ""), value: (o: KObject) => o.metadata.labels?.[k] ?? "" })),
      { title: "Last seen", value: (o) => o.status?.lastSeen ?? "", cell: (o) => age(o.status?.lastSeen) },
    ],
    [labelCols],
  );
  const sel = open ? coll.items.get(open) : undefined;
  return (
    <>
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
        selected={open}
        onOpen={(o) => setOpen(o.metadata.uid)}
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
            <dt>Plan</dt>
            <dd>{sel.status?.plan?.state || "—"}</dd>
            <dt>Labels</dt>
            <dd>
              <Labels labels={sel.metadata.labels} />
            </dd>
          </dl>
        </Detail>
      )}
    </>
  );
}
