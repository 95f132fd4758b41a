// Build media: SeedImages (installation media with a registration baked in),
// created from a MachineRegistration, followed while they build, and
// downloaded through the manager as the signed-in user.
import { useEffect, useMemo, useState } from "preact/hooks";
import { age, condition, createObject, fetchAuthorized, KObject, patchObject, saveFile, sha256Hex } from "./api";
import { Badge, byName, Column, Conditions, DetailHead, ErrorBanner, Submit, submitWith, Table, Toolbar, useAction, useCollection, usePermission } from "./table";
import { NAME_RE, qname, ready, seedImageName, seedImageSource } from "./model";
import { useParam } from "./route";
import { Events } from "./pages";

const MACHINES = "/apis/machines.edgefleet.io/v1alpha1";
const STEPS = ["Pending", "Building", "Ready"];

function stateBadge(o: KObject) {
  const s = o.status?.state || "Pending";
  return <Badge ok={s === "Ready"} warn={s === "Pending" || s === "Building" || s === "Expired"} text={s} />;
}

function randomSuffix(): string {
  const a = "abcdefghijklmnopqrstuvwxyz";
  return Array.from(crypto.getRandomValues(new Uint8Array(5)), (b) => a[b % 26]).join("");
}

function BuildForm({ registrations, initial, onDone }: { registrations: KObject[]; initial: string; onDone: (qn: string) => void }) {
  const [reg, setReg] = useState(initial);
  const [type, setType] = useState<"iso" | "raw">("iso");
  const [source, setSource] = useState<"config" | "base" | "os">("config");
  const [baseImage, setBaseImage] = useState("");
  const [baseSHA, setBaseSHA] = useState("");
  const [osImage, setOsImage] = useState("");
  const [minutes, setMinutes] = useState("60");
  const [suffix] = useState(randomSuffix);
  const { busy, err, run } = useAction();
  useEffect(() => {
    if (!reg && registrations.length) setReg(qname(registrations[0]));
  }, [registrations.length]);
  const [ns, regName] = reg.split("/");
  const perm = usePermission("create", "machines.edgefleet.io", "seedimages", ns);
  const name = regName ? seedImageName(regName, suffix) : "";
  const validation = !reg
    ? "Choose the registration whose URL the media carry."
    : source === "base" && !baseImage.trim()
      ? "Give the base image: an https URL (with its SHA-256), oci://registry/repository:tag, or a file name in the manager's base image directory."
      : source === "base" && /^https?:/.test(baseImage.trim()) && !/^[a-f0-9]{64}$/.test(baseSHA.trim())
        ? "An http(s) base image needs its SHA-256 (64 lowercase hex digits)."
        : source === "os" && !osImage.trim()
          ? "Give the edgefleet OS image, e.g. registry.example.com/edgefleet/os:v1."
          : !/^\d+$/.test(minutes)
            ? "Keep the image downloadable for a whole number of minutes (0: until deleted)."
            : !NAME_RE.test(name)
              ? "The registration's name does not make a valid media name."
              : "";
  const submit = () =>
    run(async () => {
      const spec: Record<string, unknown> = { type, registrationRef: { name: regName }, cleanupAfterMinutes: Number(minutes) };
      if (source === "base") {
        spec.baseImage = baseImage.trim();
        if (baseSHA.trim()) spec.baseImageSHA256 = baseSHA.trim();
      }
      if (source === "os") spec.osImage = osImage.trim();
      const created = await createObject(MACHINES, "seedimages", ns, JSON.stringify({ apiVersion: "machines.edgefleet.io/v1alpha1", kind: "SeedImage", metadata: { name, namespace: ns }, spec }));
      onDone(qname(created));
    });
  const denied = perm && !perm.allowed;
  return (
    <section class="detail" aria-labelledby="build-title">
      <h2 id="build-title">Build media</h2>
      <form onSubmit={submitWith(submit)}>
        <label for="media-reg">Registration</label>
        <select id="media-reg" value={reg} onChange={(e) => setReg((e.target as HTMLSelectElement).value)}>
          {!reg && <option value="">—</option>}
          {registrations.map((r) => (
            <option value={qname(r)} selected={qname(r) === reg}>
              {qname(r)}
              {ready(r).ok ? "" : ` (${ready(r).text})`}
            </option>
          ))}
        </select>
        <fieldset>
          <legend>Media type</legend>
          <label class="check">
            <input type="radio" name="media-type" checked={type === "iso"} onChange={() => setType("iso")} /> ISO (USB stick, CD, virtual media; boots BIOS and UEFI)
          </label>
          <label class="check">
            <input type="radio" name="media-type" checked={type === "raw"} onChange={() => setType("raw")} /> Raw disk image (write to a disk; boots UEFI)
          </label>
        </fieldset>
        <fieldset>
          <legend>Build from</legend>
          <label class="check">
            <input type="radio" name="media-source" checked={source === "config"} onChange={() => setSource("config")} /> Configuration only (a small volume with the
            registration, for machines that already run an OS with edgefleet-node)
          </label>
          <label class="check">
            <input type="radio" name="media-source" checked={source === "os"} onChange={() => setSource("os")} /> An edgefleet OS image (bootable live media)
          </label>
          <label class="check">
            <input type="radio" name="media-source" checked={source === "base"} onChange={() => setSource("base")} /> A base image (an ISO or disk image to add the
            registration to)
          </label>
        </fieldset>
        {source === "os" && (
          <>
            <label for="media-os">OS image</label>
            <input id="media-os" value={osImage} placeholder="registry.example.com/edgefleet/os:v1" onInput={(e) => setOsImage((e.target as HTMLInputElement).value)} />
          </>
        )}
        {source === "base" && (
          <>
            <label for="media-base">Base image</label>
            <input id="media-base" value={baseImage} placeholder="https://images.example.com/os.iso" onInput={(e) => setBaseImage((e.target as HTMLInputElement).value)} />
            <label for="media-sha">Base image SHA-256 (required for http(s))</label>
            <input id="media-sha" value={baseSHA} onInput={(e) => setBaseSHA((e.target as HTMLInputElement).value)} />
          </>
        )}
        <label for="media-minutes">Keep downloadable for (minutes; 0 until deleted)</label>
        <input id="media-minutes" inputMode="numeric" value={minutes} onInput={(e) => setMinutes((e.target as HTMLInputElement).value)} />
        <p class="muted">
          Creates SeedImage <code>{name ? `${ns}/${name}` : "—"}</code>.
        </p>
        {validation && <p class="hint">{validation}</p>}
        {denied && (
          <div class="banner warn" role="note">
            You cannot build media in namespace “{ns}”: the manager's RBAC does not allow your user to <code>create</code> <code>seedimages.machines.edgefleet.io</code> there
            {perm!.reason ? ` (${perm!.reason})` : ""}.
          </div>
        )}
        <Submit text="Build media" busyText="Starting…" busy={busy} disabled={!!denied || !!validation} err={err} />
      </form>
    </section>
  );
}

// Progress shows the build's steps from status.state.
function Progress({ o }: { o: KObject }) {
  const s = o.status?.state || "Pending";
  const at = STEPS.indexOf(s);
  if (at < 0) {
    const c = condition(o, "Ready");
    return (
      <div class={"banner " + (s === "Failed" ? "error" : "warn")} role={s === "Failed" ? "alert" : "note"}>
        <strong>{s === "Failed" ? "The build failed" : "The image expired"}</strong> ({c?.reason}): {c?.message}
      </div>
    );
  }
  return (
    <ol class="steps" aria-label="Build progress">
      {STEPS.map((step, i) => (
        <li class={i < at || s === "Ready" ? "done" : i === at ? "current" : ""} aria-current={i === at ? "step" : undefined}>
          {step === "Pending" ? "Waiting for the registration" : step === "Building" ? "Building" : "Ready to download"}
        </li>
      ))}
    </ol>
  );
}

function Download({ o }: { o: KObject }) {
  const { busy, err, run } = useAction();
  const [verified, setVerified] = useState("");
  const base = `/ui/api/seedimages/${encodeURIComponent(o.metadata.namespace!)}/${encodeURIComponent(o.metadata.name)}/`;
  const ext = o.spec?.type === "raw" ? ".img" : ".iso";
  const get = (file: "image" | "checksum") =>
    run(async () => {
      setVerified("");
      const blob = await (await fetchAuthorized(base + file)).blob();
      if (file === "image" && o.status?.checksum) {
        // Verify before saving: what lands on disk is what the manager built.
        if (blob.size <= 1 << 30) {
          const sum = await sha256Hex(blob);
          if (sum !== o.status.checksum) throw new Error(`the download's SHA-256 is ${sum}, not ${o.status.checksum}: try again`);
          setVerified("SHA-256 verified in your browser: it matches the checksum above.");
        } else {
          setVerified("Too large to verify in the browser: check it with sha256sum against the checksum above.");
        }
      }
      saveFile(blob, o.metadata.name + (file === "image" ? ext : ".sha256"));
    });
  return (
    <>
      <div class="actions">
        <button type="button" class="primary" disabled={busy} onClick={() => void get("image")}>
          {busy ? "Downloading…" : `Download ${ext.slice(1).toUpperCase()}`}
        </button>
        <button type="button" disabled={busy} onClick={() => void get("checksum")}>
          Download checksum file
        </button>
      </div>
      <span role="status">{verified}</span>
      <ErrorBanner text={err} />
    </>
  );
}

function Retrigger({ o }: { o: KObject }) {
  const { err, run } = useAction();
  const again = () => run(() => patchObject(MACHINES, "seedimages", o, { spec: { retriggerBuild: true } }));
  return (
    <>
      <button type="button" onClick={() => void again()}>
        Build again
      </button>
      <ErrorBanner text={err} />
    </>
  );
}

export function MediaPage() {
  const [registration] = useParam("registration");
  const [create, setCreate] = useParam("create");
  const [open, setOpen] = useParam("open");
  const [filter, setFilter] = useParam("q");
  const [selector, setSelector] = useParam("selector");
  const regs = useCollection(MACHINES + "/machineregistrations");
  const coll = useCollection(MACHINES + "/seedimages", selector);
  const registrations = useMemo(() => regs.sorted().sort((a, b) => qname(a).localeCompare(qname(b))), [regs.version.value]);
  const columns: Column[] = useMemo(
    () => [
      { title: "Name", value: qname },
      { title: "State", value: (o) => o.status?.state || "Pending", cell: stateBadge },
      { title: "Registration", value: (o) => o.spec?.registrationRef?.name ?? "" },
      { title: "Type", value: (o) => o.spec?.type || "iso" },
      { title: "Built from", value: seedImageSource, width: "25%" },
      { title: "Expires", value: (o) => o.status?.expiresAt ?? "", cell: (o) => (o.status?.expiresAt ? new Date(o.status.expiresAt).toLocaleString() : "—") },
      { title: "Message", value: (o) => (ready(o).ok ? "" : ready(o).message), width: "25%" },
    ],
    [],
  );
  const sel = byName(coll, open);
  return (
    <>
      <div class="section-head">
        <p>Installation media carry a registration's URL: machines booted from them register and appear in the inventory.</p>
        <button type="button" class="primary" aria-expanded={!!create} onClick={() => setCreate(create ? "" : "1")}>
          Build media
        </button>
      </div>
      {create &&
        (regs.state.value !== "loading" && registrations.length === 0 ? (
          <div class="empty">
            <p>
              <strong>There is no machine registration to build media for.</strong> Create one on <a href="#/registrations">Machine registrations</a> first.
            </p>
          </div>
        ) : (
          <BuildForm
            registrations={registrations}
            initial={registration}
            onDone={(qn) => {
              setCreate("");
              setOpen(qn);
            }}
          />
        ))}
      <Toolbar coll={coll} filter={filter} setFilter={setFilter} id="media" selector={selector} setSelector={setSelector} />
      <Table
        label="Seed images"
        columns={columns}
        coll={coll}
        filter={filter}
        urlSort
        selected={sel?.metadata.uid}
        onOpen={(o) => setOpen(qname(o))}
        empty={
          <p>
            <strong>No media built yet.</strong> Use “Build media”: choose a registration and ISO or raw; download the result once it is built and boot machines from it.
          </p>
        }
      />
      {sel && (
        <section class="detail" aria-labelledby="media-title">
          <DetailHead id="media-title" title={qname(sel)} onClose={() => setOpen("")} />
          <Progress o={sel} />
          <dl class="facts">
            <dt>Registration</dt>
            <dd>{sel.spec?.registrationRef?.name}</dd>
            <dt>Type</dt>
            <dd>{sel.spec?.type || "iso"}</dd>
            <dt>Built from</dt>
            <dd>
              {seedImageSource(sel)}
              {sel.status?.osImageDigest ? ` (${sel.status.osImageDigest})` : ""}
            </dd>
            <dt>SHA-256</dt>
            <dd>
              <code class="url" id="media-sha256">
                {sel.status?.checksum || "—"}
              </code>
            </dd>
            <dt>Downloadable until</dt>
            <dd>{sel.status?.expiresAt ? `${new Date(sel.status.expiresAt).toLocaleString()}` : sel.status?.state === "Ready" ? "the SeedImage is deleted" : "—"}</dd>
            <dt>Created</dt>
            <dd>{age(sel.metadata.creationTimestamp)}</dd>
          </dl>
          {sel.status?.state === "Ready" && <Download o={sel} />}
          {(sel.status?.state === "Failed" || sel.status?.state === "Expired") && <Retrigger o={sel} />}
          <h3>Conditions</h3>
          <Conditions o={sel} />
          <h3>Events</h3>
          <Events o={sel} />
        </section>
      )}
    </>
  );
}
