// OS upgrades: ManagedOSImages (a rollout of an OS image to the machines a
// selector picks) with per-machine progress, the ManagedOSVersions they can
// install, and the channels that sync those versions.
import { useEffect, useMemo, useState } from "preact/hooks";
import { age, createObject, KObject, patchObject } from "./api";
import { Badge, byName, Column, Conditions, DetailHead, ErrorBanner, Freshness, ListTable, StateCell, Submit, submitWith, Table, useAction, useCollection, usePermission } from "./table";
import { NAME_RE, parseSelector, qname, ready, rolloutText } from "./model";
import { useParam } from "./route";
import { Events } from "./pages";

const MACHINES = "/apis/machines.edgefleet.io/v1alpha1";
const CHANNEL_LABEL = "machines.edgefleet.io/channel";

function selectorText(sel?: { matchLabels?: Record<string, string>; matchExpressions?: { key: string; operator: string; values?: string[] }[] }): string {
  if (!sel) return "";
  const parts = Object.entries(sel.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of sel.matchExpressions ?? []) {
    if (e.operator === "Exists") parts.push(e.key);
    else if (e.operator === "DoesNotExist") parts.push("!" + e.key);
    else parts.push(`${e.key} ${e.operator.toLowerCase()} (${(e.values ?? []).join(",")})`);
  }
  return parts.join(",") || "every machine";
}

function CreateUpgrade({ versions, initial, onDone }: { versions: KObject[]; initial: string; onDone: (qn: string) => void }) {
  const [ns, setNs] = useState(initial ? initial.split("/")[0] : "fleet-default");
  const [name, setName] = useState("");
  const [from, setFrom] = useState<"version" | "image">("version");
  const [version, setVersion] = useState(initial ? initial.split("/")[1] : "");
  const [image, setImage] = useState("");
  const [selText, setSelText] = useState("");
  const [concurrency, setConcurrency] = useState("1");
  const { busy, err, run } = useAction();
  const perm = usePermission("create", "machines.edgefleet.io", "managedosimages", ns);
  const inNs = versions.filter((v) => v.metadata.namespace === ns);
  useEffect(() => {
    if (from === "version" && !inNs.some((v) => v.metadata.name === version) && inNs.length) setVersion(inNs[0].metadata.name);
  }, [ns, inNs.length]);
  const sel = parseSelector(selText);
  const validation = !name
    ? "Give the upgrade a name."
    : !NAME_RE.test(name)
      ? "The name must be lowercase letters, digits, '-' and '.'."
      : from === "version" && !version
        ? `There is no ManagedOSVersion in “${ns}” to choose: add one or a channel, or give an image.`
        : from === "image" && !image.trim()
          ? "Give the OS image to install."
          : sel.error || (!/^\d+$/.test(concurrency) || Number(concurrency) < 1 || Number(concurrency) > 1000 ? "Concurrency is a number from 1 to 1000." : "");
  const submit = () =>
    run(async () => {
      const spec: Record<string, unknown> = { targets: { selector: sel.selector }, concurrency: Number(concurrency) };
      if (from === "version") spec.managedOSVersionName = version;
      else spec.osImage = image.trim();
      const created = await createObject(MACHINES, "managedosimages", ns, JSON.stringify({ apiVersion: "machines.edgefleet.io/v1alpha1", kind: "ManagedOSImage", metadata: { name, namespace: ns }, spec }));
      onDone(qname(created));
    });
  const denied = perm && !perm.allowed;
  return (
    <section class="detail" aria-labelledby="upgrade-title">
      <h2 id="upgrade-title">New OS upgrade</h2>
      <form onSubmit={submitWith(submit)}>
        <label for="up-ns">Namespace</label>
        <input id="up-ns" value={ns} onInput={(e) => setNs((e.target as HTMLInputElement).value)} />
        <label for="up-name">Name</label>
        <input id="up-name" value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        <fieldset>
          <legend>Install</legend>
          <label class="check">
            <input type="radio" name="up-from" checked={from === "version"} onChange={() => setFrom("version")} /> A managed OS version
          </label>
          <label class="check">
            <input type="radio" name="up-from" checked={from === "image"} onChange={() => setFrom("image")} /> An OS image from a registry
          </label>
        </fieldset>
        {from === "version" ? (
          <>
            <label for="up-version">OS version</label>
            <select id="up-version" value={version} onChange={(e) => setVersion((e.target as HTMLSelectElement).value)}>
              {inNs.length === 0 && <option value="">none in this namespace</option>}
              {inNs.map((v) => (
                <option value={v.metadata.name} selected={v.metadata.name === version}>
                  {v.spec?.metadata?.displayName || v.metadata.name} {v.spec?.version}
                  {v.metadata.labels?.[CHANNEL_LABEL] ? ` – channel ${v.metadata.labels[CHANNEL_LABEL]}` : ""}
                </option>
              ))}
            </select>
          </>
        ) : (
          <>
            <label for="up-image">OS image</label>
            <input id="up-image" value={image} placeholder="registry.example.com/edgefleet/os:v2" onInput={(e) => setImage((e.target as HTMLInputElement).value)} />
          </>
        )}
        <label for="up-selector">Machines (a label selector over the inventory; empty: every machine of the namespace)</label>
        <input id="up-selector" value={selText} placeholder="site=lab,rack in (1,2)" onInput={(e) => setSelText((e.target as HTMLInputElement).value)} />
        <label for="up-concurrency">Machines upgrading at the same time</label>
        <input id="up-concurrency" inputMode="numeric" value={concurrency} onInput={(e) => setConcurrency((e.target as HTMLInputElement).value)} />
        {validation && <p class="hint">{validation}</p>}
        {denied && (
          <div class="banner warn" role="note">
            You cannot start OS upgrades in namespace “{ns}”: the manager's RBAC does not allow your user to <code>create</code>{" "}
            <code>managedosimages.machines.edgefleet.io</code> there{perm!.reason ? ` (${perm!.reason})` : ""}.
          </div>
        )}
        <Submit text="Start upgrade" busyText="Creating…" busy={busy} disabled={!!denied || !!validation} err={err} />
      </form>
    </section>
  );
}

function PauseButton({ o }: { o: KObject }) {
  const { err, run } = useAction();
  const ns = o.metadata.namespace!;
  const perm = usePermission("patch", "machines.edgefleet.io", "managedosimages", ns);
  const paused = !!o.spec?.paused;
  const toggle = () => run(() => patchObject(MACHINES, "managedosimages", o, { spec: { paused: !paused } }));
  if (perm && !perm.allowed) return <span class="muted">(you may not pause or resume: the manager's RBAC does not allow you to patch managedosimages in “{ns}”)</span>;
  return (
    <>
      <button type="button" disabled={!perm} onClick={() => void toggle()}>
        {paused ? "Resume" : "Pause"}
      </button>
      <ErrorBanner text={err} />
    </>
  );
}

function UpgradeDetail({ o, onClose }: { o: KObject; onClose: () => void }) {
  const machines = (o.status?.machines ?? []) as { name: string; state: string; message?: string }[];
  const s = o.status ?? {};
  return (
    <section class="detail" aria-labelledby="upgrade-detail">
      <DetailHead id="upgrade-detail" title={qname(o)} onClose={onClose} />
      <dl class="facts">
        <dt>Image</dt>
        <dd>
          <code>{s.image || o.spec?.osImage || "—"}</code>
          {o.spec?.managedOSVersionName ? ` (version ${o.spec.managedOSVersionName})` : ""}
        </dd>
        <dt>Machines</dt>
        <dd>{selectorText(o.spec?.targets?.selector)}</dd>
        <dt>Progress</dt>
        <dd>
          <progress max={s.total || 1} value={s.upgraded ?? 0} aria-label="Machines upgraded" /> {rolloutText(o)}
        </dd>
        <dt>Paused</dt>
        <dd>
          {o.spec?.paused ? "yes: no further machine starts" : "no"} <PauseButton o={o} />
        </dd>
        <dt>Concurrency</dt>
        <dd>{o.spec?.concurrency ?? 1}</dd>
        <dt>Status</dt>
        <dd>{ready(o).message || "—"}</dd>
      </dl>
      <h3>Machines not done ({machines.length})</h3>
      {machines.length === 0 ? (
        <p>{s.total ? "Every selected machine runs the image or waits its turn." : "No machine matches the selector yet: the rollout starts when one registers."}</p>
      ) : (
        <ListTable label="Machines in this upgrade" head={["Machine", "State", "Why"]}>
          {machines.slice(0, 500).map((m) => (
            <tr>
              <td>
                <a href={`#/inventory?open=${encodeURIComponent(o.metadata.namespace + "/" + m.name)}`}>{m.name}</a>
              </td>
              <td>
                <Badge ok={m.state === "Upgraded"} warn={m.state === "Waiting" || m.state === "Upgrading" || m.state === "Held"} text={m.state} />
              </td>
              <td class="msg">{m.message}</td>
            </tr>
          ))}
        </ListTable>
      )}
      <h3>Conditions</h3>
      <Conditions o={o} />
      <h3>Events</h3>
      <Events o={o} />
    </section>
  );
}

export function OSUpgradesPage() {
  const [open, setOpen] = useParam("open");
  const [create, setCreate] = useParam("create");
  const [version, setVersion] = useParam("version");
  const images = useCollection(MACHINES + "/managedosimages");
  const versions = useCollection(MACHINES + "/managedosversions");
  const channels = useCollection(MACHINES + "/managedosversionchannels");
  const versionList = useMemo(() => versions.sorted().sort((a, b) => qname(a).localeCompare(qname(b))), [versions.version.value]);
  const imageCols: Column[] = useMemo(
    () => [
      { title: "Name", value: qname },
      { title: "State", value: (o) => ready(o).text, cell: (o) => <StateCell o={o} /> },
      { title: "OS version / image", value: (o) => o.spec?.managedOSVersionName || o.status?.image || o.spec?.osImage || "" },
      { title: "Progress", value: (o) => (o.status?.total ? (o.status.upgraded ?? 0) / o.status.total : -1), cell: (o) => rolloutText(o) },
      { title: "Paused", value: (o) => (o.spec?.paused ? "paused" : ""), cell: (o) => (o.spec?.paused ? <Badge ok={false} warn text="Paused" /> : "") },
      { title: "Machines", value: (o) => selectorText(o.spec?.targets?.selector) },
      { title: "Message", value: (o) => (ready(o).ok ? "" : ready(o).message), width: "25%" },
    ],
    [],
  );
  const versionCols: Column[] = useMemo(
    () => [
      { title: "Name", value: qname },
      { title: "Version", value: (o) => o.spec?.version ?? "" },
      { title: "Display name", value: (o) => o.spec?.metadata?.displayName ?? "" },
      { title: "Image", value: (o) => o.spec?.metadata?.upgradeImage ?? "", width: "30%" },
      { title: "Channel", value: (o) => o.metadata.labels?.[CHANNEL_LABEL] ?? "(by hand)" },
      {
        title: "Upgrade",
        value: () => "",
        cell: (o) => (
          <button type="button" aria-label={`Upgrade machines to ${qname(o)}`} onClick={() => (setVersion(qname(o)), setCreate("1"))}>
            Upgrade machines…
          </button>
        ),
      },
    ],
    [],
  );
  const channelCols: Column[] = useMemo(
    () => [
      { title: "Name", value: qname },
      { title: "State", value: (o) => ready(o).text, cell: (o) => <StateCell o={o} /> },
      { title: "Channel", value: (o) => o.spec?.options?.uri ?? "", width: "25%" },
      { title: "Enabled", value: (o) => (o.spec?.enabled === false ? "no" : "yes") },
      { title: "Versions", value: (o) => o.status?.versions ?? 0 },
      { title: "Last synced", value: (o) => o.status?.lastSyncedTime ?? "", cell: (o) => age(o.status?.lastSyncedTime) },
      { title: "Failed syncs", value: (o) => o.status?.failedSynchronizationAttempts ?? 0 },
      { title: "Message", value: (o) => (ready(o).ok ? "" : ready(o).message), width: "30%" },
    ],
    [],
  );
  const sel = byName(images, open);
  return (
    <>
      <section aria-labelledby="mosi-h">
        <div class="section-head">
          <h2 id="mosi-h">Upgrades (ManagedOSImages)</h2>
          <Freshness state={images.state.value} since={images.since.value} error={images.error.value} />
          <button type="button" class="primary" aria-expanded={!!create} onClick={() => setCreate(create ? "" : "1")}>
            New OS upgrade
          </button>
        </div>
        {create && (
          <CreateUpgrade
            key={version}
            versions={versionList}
            initial={version}
            onDone={(qn) => {
              setCreate("");
              setVersion("");
              setOpen(qn);
            }}
          />
        )}
        <Table
          label="OS upgrades"
          columns={imageCols}
          coll={images}
          height={300}
          urlSort
          selected={sel?.metadata.uid}
          onOpen={(o) => setOpen(qname(o))}
          empty={
            <p>
              <strong>No OS upgrades.</strong> Choose an OS version below and “Upgrade machines…”, or “New OS upgrade” with an image: the machines a label selector picks
              install it a few at a time, each falling back to its old slot if the new one does not boot.
            </p>
          }
        />
      </section>
      {sel && <UpgradeDetail o={sel} onClose={() => setOpen("")} />}
      <section aria-labelledby="mosv-h">
        <div class="section-head">
          <h2 id="mosv-h">OS versions (ManagedOSVersions)</h2>
          <Freshness state={versions.state.value} since={versions.since.value} error={versions.error.value} />
        </div>
        <Table
          label="OS versions"
          columns={versionCols}
          coll={versions}
          height={260}
          empty={
            <p>
              <strong>No OS versions.</strong> Add a version channel (a ManagedOSVersionChannel with the URL of a JSON version list; docs/spec/managedosversionchannel.md) or
              write a ManagedOSVersion with <code>kubectl apply</code>.
            </p>
          }
        />
      </section>
      <section aria-labelledby="mosvc-h">
        <div class="section-head">
          <h2 id="mosvc-h">Version channels (ManagedOSVersionChannels)</h2>
          <Freshness state={channels.state.value} since={channels.since.value} error={channels.error.value} />
        </div>
        <Table
          label="Version channels"
          columns={channelCols}
          coll={channels}
          height={220}
          empty={
            <p>
              <strong>No version channels.</strong> A channel syncs OS versions from a JSON list at an https URL every <code>syncInterval</code>; create one with{" "}
              <code>kubectl apply</code> (docs/spec/managedosversionchannel.md).
            </p>
          }
        />
      </section>
    </>
  );
}
