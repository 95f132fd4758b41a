// Create cluster: a ProvisionedCluster built from the inventory (pools,
// a selector builder with a live "which machines match" preview answered by
// the manager with formation's own matching, distro and version), created
// as the signed-in user; then the cluster's formation progress, live.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { age, ApiError, condition, createObject, KObject, requestAt } from "./api";
import { Badge, byName, Column, Conditions, DetailHead, Freshness, ListTable, StateCell, Submit, submitWith, Table, Toolbar, useAction, useCollection, usePermission } from "./table";
import { qname, ready } from "./model";
import {
  clusterObject,
  ClusterForm,
  CLUSTER_LABEL,
  CONTROL_PLANE,
  DISTROS,
  labelCatalog,
  machineWhy,
  objectYAML,
  Operator,
  PoolForm,
  poolProgress,
  PROVISIONING,
  Requirement,
  VERSION_EXAMPLE,
} from "./formation";
import { go, useParam } from "./route";
import { Events } from "./pages";

const MACHINES = "/apis/machines.edgefleet.io/v1alpha1";

interface PoolPreview {
  name: string;
  selector: string;
  replicas: number;
  matching: number;
  adopted: string[];
  wouldAdopt: string[];
  alsoAvailable: string[];
  notReady: string[];
  taken: { name: string; by: string }[];
  missing: number;
  message?: string;
}

interface Releases {
  configured: boolean;
  versions: Record<string, string[]>;
}

const OPS: [Operator, string][] = [
  ["=", "is"],
  ["In", "is one of"],
  ["NotIn", "is none of"],
  ["Exists", "exists"],
  ["DoesNotExist", "does not exist"],
];

function SelectorBuilder({ id, reqs, onChange, catalog }: { id: string; reqs: Requirement[]; onChange: (r: Requirement[]) => void; catalog: Map<string, string[]> }) {
  const set = (i: number, r: Partial<Requirement>) => onChange(reqs.map((x, j) => (j === i ? { ...x, ...r } : x)));
  return (
    <fieldset class="builder">
      <legend>Machines: every requirement must hold</legend>
      {reqs.length === 0 && <p class="muted">No requirement: every machine of the namespace matches.</p>}
      {reqs.map((r, i) => {
        const rid = `${id}-r${i}`;
        const needsValues = r.op !== "Exists" && r.op !== "DoesNotExist";
        return (
          <div class="req" role="group" aria-label={`Requirement ${i + 1}`}>
            <div>
              <label for={rid + "-key"}>Label</label>
              <input id={rid + "-key"} list={`${id}-keys`} value={r.key} onInput={(e) => set(i, { key: (e.target as HTMLInputElement).value })} />
            </div>
            <div>
              <label for={rid + "-op"}>Operator</label>
              <select id={rid + "-op"} value={r.op} onChange={(e) => set(i, { op: (e.target as HTMLSelectElement).value as Operator })}>
                {OPS.map(([op, text]) => (
                  <option value={op} selected={op === r.op}>
                    {text}
                  </option>
                ))}
              </select>
            </div>
            {needsValues && (
              <div>
                <label for={rid + "-values"}>{r.op === "=" ? "Value" : "Values (comma-separated)"}</label>
                <input id={rid + "-values"} list={rid + "-seen"} value={r.values} onInput={(e) => set(i, { values: (e.target as HTMLInputElement).value })} />
                <datalist id={rid + "-seen"}>
                  {(catalog.get(r.key.trim()) ?? []).map((v) => (
                    <option value={v} />
                  ))}
                </datalist>
              </div>
            )}
            <button type="button" aria-label={`Remove requirement ${i + 1}`} onClick={() => onChange(reqs.filter((_, j) => j !== i))}>
              Remove
            </button>
          </div>
        );
      })}
      <datalist id={`${id}-keys`}>
        {[...catalog.keys()].map((k) => (
          <option value={k} />
        ))}
      </datalist>
      <button type="button" onClick={() => onChange([...reqs, { key: "", op: "=", values: "" }])}>
        Add requirement
      </button>
    </fieldset>
  );
}

function Names({ what, names }: { what: string; names: string[] }) {
  if (names.length === 0) return null;
  const shown = names.slice(0, 20);
  return (
    <li>
      {what} ({names.length}): {shown.join(", ")}
      {names.length > shown.length ? ` and ${names.length - shown.length} more` : ""}
    </li>
  );
}

function PreviewView({ title, p, error, busy }: { title: string; p?: PoolPreview; error: string; busy: boolean }) {
  return (
    <div class="preview" role="status" aria-label={`Machines matching ${title}`} aria-busy={busy}>
      {error ? (
        <p class="hint">{error}</p>
      ) : !p ? (
        <p class="muted">Checking which machines match…</p>
      ) : (
        <>
          <p>
            <strong>
              Matches {p.matching} machine{p.matching === 1 ? "" : "s"}
            </strong>
            {": "}
            {p.wouldAdopt.length} would be adopted, {p.alsoAvailable.length} more available, {p.notReady.length} not Ready, {p.taken.length} held by another cluster
            {p.adopted.length ? `, ${p.adopted.length} adopted already` : ""}.{" "}
            {p.missing > 0 ? <Badge ok={false} text={`${p.missing} missing`} /> : <Badge ok text="enough machines" />}
          </p>
          <ul class="names">
            <Names what="Would adopt" names={p.wouldAdopt} />
            <Names what="Also available" names={p.alsoAvailable} />
            <Names what="Not Ready yet" names={p.notReady} />
            <Names what="Held by another cluster" names={p.taken.map((t) => `${t.name} (${t.by})`)} />
          </ul>
          {p.message && <p class="hint">The pool would wait: {p.message}</p>}
        </>
      )}
    </div>
  );
}

function PoolEditor(props: {
  id: string;
  title: string;
  pool: PoolForm;
  worker: boolean;
  onChange: (p: PoolForm) => void;
  onRemove?: () => void;
  catalog: Map<string, string[]>;
  preview?: PoolPreview;
  previewError: string;
  busy: boolean;
}) {
  const { id, pool, onChange } = props;
  const set = (c: Partial<PoolForm>) => onChange({ ...pool, ...c });
  return (
    <section class="pool" aria-labelledby={id + "-h"}>
      <div class="section-head">
        <h2 id={id + "-h"}>{props.title}</h2>
        {props.onRemove && (
          <button type="button" onClick={props.onRemove}>
            Remove {props.title.toLowerCase()}
          </button>
        )}
      </div>
      <div class="pool-grid">
        <div>
          {props.worker && (
            <>
              <label for={id + "-name"}>Pool name</label>
              <input id={id + "-name"} value={pool.name} onInput={(e) => set({ name: (e.target as HTMLInputElement).value })} />
            </>
          )}
          <label for={id + "-replicas"}>Replicas</label>
          <input id={id + "-replicas"} inputMode="numeric" value={pool.replicas} onInput={(e) => set({ replicas: (e.target as HTMLInputElement).value })} />
          <SelectorBuilder id={id} reqs={pool.reqs} catalog={props.catalog} onChange={(reqs) => set({ reqs })} />
          <details>
            <summary>Node labels and taints</summary>
            <label for={id + "-labels"}>Node labels (key=value, one a line)</label>
            <textarea id={id + "-labels"} class="code" rows={2} value={pool.nodeLabels} onInput={(e) => set({ nodeLabels: (e.target as HTMLTextAreaElement).value })} />
            <label for={id + "-taints"}>Node taints (key=value:Effect, one a line)</label>
            <textarea id={id + "-taints"} class="code" rows={2} value={pool.taints} placeholder="dedicated=gpu:NoSchedule" onInput={(e) => set({ taints: (e.target as HTMLTextAreaElement).value })} />
          </details>
        </div>
        <PreviewView title={props.title} p={props.preview} error={props.previewError} busy={props.busy} />
      </div>
    </section>
  );
}

function useReleases(): Releases | null {
  const [r, setR] = useState<Releases | null>(null);
  useEffect(() => {
    requestAt<Releases>("/ui/api/provisioning/releases")
      .then(setR)
      .catch(() => setR({ configured: false, versions: {} }));
  }, []);
  return r;
}

const emptyPool = (name = ""): PoolForm => ({ name, replicas: "1", reqs: [], nodeLabels: "", taints: "" });

function NoMachines() {
  return (
    <div class="empty">
      <p>
        <strong>No machines in the inventory yet.</strong> A cluster is formed from registered machines:
      </p>
      <ol>
        <li>
          <a href="#/registrations">Create a machine registration</a> (the endpoint machines register at);
        </li>
        <li>
          <a href="#/media">build installation media</a> with its URL and boot your machines from it;
        </li>
        <li>
          they appear in the <a href="#/inventory">inventory of machines</a>, and here, ready to be chosen by label.
        </li>
      </ol>
    </div>
  );
}

export function CreateClusterPage() {
  const [nsParam, setNsParam] = useParam("ns");
  const invs = useCollection(MACHINES + "/machineinventories");
  const all = useMemo(() => invs.sorted(), [invs.version.value]);
  const namespaces = useMemo(() => [...new Set(all.map((o) => o.metadata.namespace ?? ""))].sort(), [all]);
  const [form, setForm] = useState<ClusterForm>({
    namespace: nsParam || "fleet-default",
    name: "",
    distro: "edgefleet",
    version: "",
    binariesImage: "",
    controlPlane: emptyPool(),
    workers: [],
  });
  const set = (c: Partial<ClusterForm>) => setForm((f) => ({ ...f, ...c }));
  useEffect(() => {
    // Default to the namespace the machines are in.
    if (!nsParam && namespaces.length && !namespaces.includes(form.namespace)) set({ namespace: namespaces[0] });
  }, [namespaces.join(",")]);
  const releases = useReleases();
  const listed = releases?.versions[form.distro] ?? [];
  // Offer the newest listed version of the distro when the one chosen is
  // not listed (a functional update: never undo a choice made meanwhile).
  const pickVersion = (f: ClusterForm): ClusterForm => {
    const l = releases?.versions[f.distro] ?? [];
    return l.length && !l.includes(f.version) ? { ...f, version: l[l.length - 1] } : f;
  };
  useEffect(() => setForm(pickVersion), [releases]);

  const inNs = useMemo(() => all.filter((o) => o.metadata.namespace === form.namespace), [all, form.namespace]);
  const catalog = useMemo(() => labelCatalog(inNs), [inNs]);
  const built = clusterObject(form);
  const body = JSON.stringify(built.object);

  // What the preview depends on in the inventory: names, labels, Ready
  // and deletion. Other status changes (last seen, plan reports) arrive
  // through the watch all the time and must not cost a new preview each.
  const matchInput = useMemo(() => inNs.map((o) => `${o.metadata.name}${JSON.stringify(o.metadata.labels ?? {})}${ready(o).ok}${"deletionTimestamp" in o.metadata}`).join("|"), [inNs]);

  // The live preview: the manager matches the pools against the
  // namespace's inventories as you, whenever the form or what matching
  // reads of the inventory changes (debounced; a stale answer is dropped).
  const [preview, setPreview] = useState<{ pools: PoolPreview[]; error: string; busy: boolean }>({ pools: [], error: "", busy: true });
  const seq = useRef(0);
  useEffect(() => {
    if (!form.namespace) return;
    const n = ++seq.current;
    setPreview((p) => ({ ...p, busy: true }));
    const t = setTimeout(() => {
      requestAt<{ pools: PoolPreview[] }>("/ui/api/provisioning/preview", { method: "POST", contentType: "application/json", body })
        .then((r) => n === seq.current && setPreview({ pools: r.pools, error: "", busy: false }))
        .catch((e) => n === seq.current && setPreview({ pools: [], error: (e as ApiError).message, busy: false }));
    }, 250);
    return () => clearTimeout(t);
  }, [body, matchInput]);

  const perm = usePermission("create", "provisioning.edgefleet.io", "provisionedclusters", form.namespace);

  const { busy, err, run } = useAction();
  const submit = () =>
    run(async () => {
      const created = await createObject(PROVISIONING, "provisionedclusters", form.namespace, body);
      go("provisioned", { open: qname(created) });
    });

  const poolPreview = (name: string) => preview.pools.find((p) => p.name === name);
  const poolError = (id: string) => built.poolErrors[id] || preview.error;
  if (invs.state.value !== "loading" && invs.state.value !== "error" && all.length === 0) return <NoMachines />;
  const otherNs = namespaces.filter((n) => n !== form.namespace);
  return (
    <form class="create-cluster" onSubmit={submitWith(submit)}>
      <p>
        Choose machines from the inventory by label for a control plane and worker pools. The preview beside each pool is the manager's own answer (as{" "}
        <code>edgefleet cluster preview</code>), live as machines register or are taken. <Freshness state={invs.state.value} since={invs.since.value} error={invs.error.value} />
      </p>
      {invs.state.value === "error" && (
        <div class="banner warn" role="note">
          The inventory cannot be listed across namespaces ({invs.error.value}): label suggestions are off; the preview still asks the manager for the namespace you choose.
        </div>
      )}
      <div class="pool-grid">
        <div>
          <label for="pc-ns">Namespace (where the machines are)</label>
          <input
            id="pc-ns"
            list="pc-namespaces"
            value={form.namespace}
            onInput={(e) => {
              set({ namespace: (e.target as HTMLInputElement).value.trim() });
              setNsParam((e.target as HTMLInputElement).value.trim());
            }}
          />
          <datalist id="pc-namespaces">
            {namespaces.map((n) => (
              <option value={n} />
            ))}
          </datalist>
          {form.namespace && inNs.length === 0 && invs.state.value === "live" && (
            <p class="hint">
              No machines in “{form.namespace}”{otherNs.length ? `; machines are in ${otherNs.join(", ")}` : ""}.
            </p>
          )}
          <label for="pc-name">Cluster name</label>
          <input id="pc-name" value={form.name} onInput={(e) => set({ name: (e.target as HTMLInputElement).value })} />
        </div>
        <div>
          <label for="pc-distro">Distribution</label>
          <select id="pc-distro" value={form.distro} onChange={(e) => setForm((f) => pickVersion({ ...f, distro: (e.target as HTMLSelectElement).value, version: "" }))}>
            {DISTROS.map((d) => (
              <option value={d} selected={d === form.distro}>
                {d === "edgefleet" ? "edgefleet (built in: upstream Kubernetes)" : d}
              </option>
            ))}
          </select>
          <label for="pc-version">Kubernetes version</label>
          {listed.length > 0 ? (
            <select id="pc-version" value={form.version} onChange={(e) => set({ version: (e.target as HTMLSelectElement).value })}>
              {listed.map((v) => (
                <option value={v} selected={v === form.version}>
                  {v}
                </option>
              ))}
            </select>
          ) : (
            <input id="pc-version" value={form.version} placeholder={VERSION_EXAMPLE[form.distro]} onInput={(e) => set({ version: (e.target as HTMLInputElement).value })} />
          )}
          {releases && listed.length === 0 && (
            <p class="muted" id="pc-version-note">
              {releases.configured
                ? `This manager lists no ${form.distro} versions (edgefleet server --kubernetes-releases): any version in ${form.distro}'s spelling goes, e.g. ${VERSION_EXAMPLE[form.distro]}.`
                : `This manager has no list of Kubernetes releases (edgefleet server --kubernetes-releases), so it cannot offer versions: any version in ${form.distro}'s spelling goes, e.g. ${VERSION_EXAMPLE[form.distro]}.`}
              {form.distro === "edgefleet"
                ? " The edgefleet distribution then needs the image with its binaries:"
                : " The machines then run the distribution's install script from the internet."}
            </p>
          )}
          {releases && listed.length > 0 && <p class="muted">The versions this manager can install for {form.distro}.</p>}
          {listed.length === 0 && form.distro === "edgefleet" && (
            <>
              <label for="pc-binaries">Binaries image (OCI)</label>
              <input id="pc-binaries" value={form.binariesImage} placeholder="registry.example.com/edgefleet/kubernetes:v1.37.1" onInput={(e) => set({ binariesImage: (e.target as HTMLInputElement).value })} />
            </>
          )}
        </div>
      </div>

      <PoolEditor
        id="pool-cp"
        title="Control plane"
        pool={form.controlPlane}
        worker={false}
        catalog={catalog}
        onChange={(controlPlane) => set({ controlPlane })}
        preview={poolPreview(CONTROL_PLANE)}
        previewError={poolError(CONTROL_PLANE)}
        busy={preview.busy}
      />
      {form.distro === "edgefleet" && !["1", "3"].includes(form.controlPlane.replicas.trim()) && (
        <p class="hint">The edgefleet distribution runs 1 or 3 servers (an etcd majority).</p>
      )}
      {form.workers.map((w, i) => (
        <PoolEditor
          id={`pool-w${i}`}
          title={`Worker pool ${i + 1}`}
          pool={w}
          worker
          catalog={catalog}
          onChange={(p) => set({ workers: form.workers.map((x, j) => (j === i ? p : x)) })}
          onRemove={() => set({ workers: form.workers.filter((_, j) => j !== i) })}
          preview={poolPreview(w.name)}
          previewError={poolError("worker-" + i)}
          busy={preview.busy}
        />
      ))}
      <div class="actions">
        <button
          type="button"
          onClick={() => {
            const names = new Set(form.workers.map((w) => w.name));
            let n = form.workers.length ? "pool-" + (form.workers.length + 1) : "default";
            while (names.has(n)) n += "-x";
            set({ workers: [...form.workers, emptyPool(n)] });
          }}
        >
          Add worker pool
        </button>
      </div>

      <h2 id="yaml-h">What will be created</h2>
      <pre class="output yaml" aria-labelledby="yaml-h" tabIndex={0}>
        {objectYAML(built.object)}
      </pre>
      {built.error && <p class="hint">{built.error}</p>}
      {perm && !perm.allowed && (
        <div class="banner warn" role="note">
          The manager's RBAC does not allow your user to <code>create</code> <code>provisionedclusters.provisioning.edgefleet.io</code> in “{form.namespace}”
          {perm.reason ? ` (${perm.reason})` : ""}: the API will refuse it. Ask an administrator for a Role that allows it.
        </div>
      )}
      <Submit text="Create cluster" busyText="Creating…" busy={busy} disabled={!!built.error} err={err} />
    </form>
  );
}

// ---------------------------------------------------------------- progress

function Steps({ pc, machines }: { pc: KObject; machines: KObject[] }) {
  const pools = poolProgress(pc, machines);
  const sum = (k: "wanted" | "adopted" | "bootstrapped" | "nodeReady") => pools.reduce((n, p) => n + p[k], 0);
  const wanted = sum("wanted");
  const steps: [string, boolean][] = [
    [`Machines adopted ${sum("adopted")}/${wanted}`, sum("adopted") >= wanted],
    [`Bootstrapped ${sum("bootstrapped")}/${wanted}`, sum("bootstrapped") >= wanted],
    [`Nodes Ready ${sum("nodeReady")}/${wanted}`, sum("nodeReady") >= wanted],
    ["Joined the fleet", condition(pc, "FleetJoined")?.status === "True"],
    ["Ready", ready(pc).ok],
  ];
  const current = steps.findIndex(([, done]) => !done);
  return (
    <ol class="steps" aria-label="Formation progress">
      {steps.map(([text, done], i) => (
        <li class={done ? "done" : i === current ? "current" : undefined} aria-current={i === current ? "step" : undefined}>
          {text}
        </li>
      ))}
    </ol>
  );
}

function Progress({ pc, onClose }: { pc: KObject; onClose: () => void }) {
  const ns = pc.metadata.namespace!;
  const cms = useCollection(`${PROVISIONING}/namespaces/${encodeURIComponent(ns)}/clustermachines`, `${CLUSTER_LABEL}=${pc.metadata.name}`);
  const machines = useMemo(() => cms.sorted().sort((a, b) => a.metadata.name.localeCompare(b.metadata.name)), [cms.version.value]);
  const pools = poolProgress(pc, machines);
  const stalled = condition(pc, "Stalled");
  const fleet = pc.status?.fleetClusterRef?.name;
  return (
    <section class="detail" aria-labelledby="pc-title">
      <DetailHead id="pc-title" title={qname(pc)} onClose={onClose}>
        <Freshness state={cms.state.value} since={cms.since.value} error={cms.error.value} />
      </DetailHead>
      <Steps pc={pc} machines={machines} />
      <dl class="facts">
        <dt>Distribution</dt>
        <dd>
          {pc.spec?.distro} {pc.spec?.version}
        </dd>
        <dt>Status</dt>
        <dd>
          <StateCell o={pc} /> {ready(pc).message}
        </dd>
        {stalled?.status === "True" && (
          <>
            <dt>Stalled</dt>
            <dd class="msg">
              {stalled.reason}: {stalled.message}
            </dd>
          </>
        )}
        <dt>API server</dt>
        <dd>
          <code>{pc.status?.server || "—"}</code>
        </dd>
        <dt>Fleet cluster</dt>
        <dd>
          {fleet ? (
            <a href={`#/clusters?open=${encodeURIComponent(ns + "/" + fleet)}`}>{ns + "/" + fleet}</a>
          ) : (
            "not yet: the init server's fleet agent registers it"
          )}
        </dd>
      </dl>
      <h3>Pools</h3>
      <ListTable label="Pools" head={["Pool", "Wanted", "Adopted", "Bootstrapped", "Node Ready", "Free matching", "Waiting for"]}>
        {pools.map((p) => (
          <tr>
            <td>{p.name}</td>
            <td>{p.wanted}</td>
            <td>{p.adopted}</td>
            <td>{p.bootstrapped}</td>
            <td>{p.nodeReady}</td>
            <td>{p.matchingAvailable}</td>
            <td class="msg">{p.message}</td>
          </tr>
        ))}
      </ListTable>
      <h3>Machines ({machines.length})</h3>
      {machines.length === 0 ? (
        <p>{cms.state.value === "loading" ? "Loading…" : "No machine adopted yet: see the pools' messages above for what formation waits for."}</p>
      ) : (
        <ListTable label="Machines of this cluster" head={["Machine", "Pool", "Role", "Adopted", "Bootstrapped", "Node Ready", "Waiting for"]}>
          {machines.map((m) => {
            const c = (t: string) => {
              const x = condition(m, t);
              return <Badge ok={x?.status === "True"} warn={!x || x.status === "Unknown"} text={x ? (x.status === "True" ? "Yes" : x.reason || "No") : "—"} />;
            };
            return (
              <tr>
                <td>
                  <a href={`#/inventory?open=${encodeURIComponent(ns + "/" + (m.spec?.inventoryName ?? m.metadata.name))}`}>{m.metadata.name}</a>
                </td>
                <td>{m.spec?.pool}</td>
                <td>
                  {m.spec?.role}
                  {m.spec?.init ? " (init)" : ""}
                </td>
                <td>{c("Adopted")}</td>
                <td>{c("Bootstrapped")}</td>
                <td>{c("NodeReady")}</td>
                <td class="msg">{machineWhy(m)}</td>
              </tr>
            );
          })}
        </ListTable>
      )}
      <h3>Conditions</h3>
      <Conditions o={pc} />
      <h3>Events</h3>
      <Events o={pc} />
    </section>
  );
}

export function ProvisionedPage() {
  const [open, setOpen] = useParam("open");
  const [filter, setFilter] = useParam("q");
  const coll = useCollection(PROVISIONING + "/provisionedclusters");
  const columns: Column[] = useMemo(
    () => [
      { title: "Name", value: qname },
      {
        title: "Ready",
        value: (o) => ready(o).text,
        cell: (o) => <StateCell o={o} />,
      },
      { title: "Distribution", value: (o) => `${o.spec?.distro ?? ""} ${o.spec?.version ?? ""}` },
      { title: "Control plane ready", value: (o) => `${o.status?.controlPlane?.ready ?? 0}/${o.spec?.controlPlane?.replicas ?? 0}` },
      {
        title: "Workers ready",
        value: (o) => `${o.status?.workersReady ?? 0}/${((o.spec?.workers ?? []) as { replicas?: number }[]).reduce((n, w) => n + (w.replicas ?? 0), 0)}`,
      },
      { title: "Fleet cluster", value: (o) => o.status?.fleetClusterRef?.name ?? "—" },
      { title: "Message", value: (o) => (ready(o).ok ? "" : ready(o).message), width: "35%" },
      { title: "Age", value: (o) => o.metadata.creationTimestamp ?? "", cell: (o) => age(o.metadata.creationTimestamp) },
    ],
    [],
  );
  const sel = byName(coll, open);
  return (
    <>
      <div class="section-head">
        <p>Clusters formed from machines of the inventory, with their formation progress. Each joins the fleet as a Cluster once its agent runs.</p>
        <button type="button" class="primary" onClick={() => go("create")}>
          Create cluster
        </button>
      </div>
      <Toolbar coll={coll} filter={filter} setFilter={setFilter} id="pcs" />
      <Table
        label="Provisioned clusters"
        columns={columns}
        coll={coll}
        filter={filter}
        urlSort
        selected={sel?.metadata.uid}
        onOpen={(o) => setOpen(qname(o))}
        empty={
          <p>
            <strong>No provisioned clusters yet.</strong> <a href="#/create">Create a cluster</a> from the machines of your inventory: choose them by label, see which match,
            and follow their adoption and bootstrap here.
          </p>
        }
      />
      {open && !sel && coll.state.value === "live" && <p class="hint">There is no provisioned cluster “{open}” (deleted, or you may not see it).</p>}
      {sel && <Progress pc={sel} onClose={() => setOpen("")} />}
    </>
  );
}
