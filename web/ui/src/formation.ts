// Pure logic of the Create cluster page and the formation progress view,
// unit-tested in formation.test.ts. Which machines a pool would adopt is
// not computed here: the manager answers that with the controller's own
// code (/ui/api/provisioning/preview, as `edgefleet cluster preview`).
import { condition, KObject } from "./api";
import { NAME_RE, parseLabels } from "./model";

export const PROVISIONING = "/apis/provisioning.edgefleet.io/v1alpha1";
export const CLUSTER_LABEL = "provisioning.edgefleet.io/cluster";
export const POOL_LABEL = "provisioning.edgefleet.io/pool";
export const CONTROL_PLANE = "control-plane";
export const DISTROS = ["edgefleet", "k3s", "rke2"] as const;
export const VERSION_EXAMPLE: Record<string, string> = { edgefleet: "v1.37.1", k3s: "v1.33.5+k3s1", rke2: "v1.33.5+rke2r1" };
const VERSION_RE: Record<string, RegExp> = { edgefleet: /^v1\.\d+\.\d+$/, k3s: /^v1\.\d+\.\d+\+k3s\d+$/, rke2: /^v1\.\d+\.\d+\+rke2r\d+$/ };

export type Operator = "=" | "In" | "NotIn" | "Exists" | "DoesNotExist";

// Requirement is one row of the selector builder; values are comma-separated.
export interface Requirement {
  key: string;
  op: Operator;
  values: string;
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

// builderSelector turns the builder's rows into a LabelSelector: "=" rows
// are matchLabels, the rest matchExpressions.
export function builderSelector(reqs: Requirement[]): { selector: LabelSelector; error: string } {
  const matchLabels: Record<string, string> = {};
  const matchExpressions: NonNullable<LabelSelector["matchExpressions"]> = [];
  for (const r of reqs) {
    const key = r.key.trim();
    if (!key) return { selector: {}, error: "Choose a label key for every requirement, or remove the empty one." };
    const values = r.values.split(",").map((v) => v.trim()).filter(Boolean);
    switch (r.op) {
      case "=":
        if (values.length > 1) return { selector: {}, error: `“${key}” is one value: use “in” for several.` };
        if (key in matchLabels && matchLabels[key] !== (values[0] ?? "")) return { selector: {}, error: `“${key}” cannot equal two values: no machine would match.` };
        matchLabels[key] = values[0] ?? "";
        break;
      case "In":
      case "NotIn":
        if (values.length === 0) return { selector: {}, error: `“${key} ${r.op === "In" ? "in" : "not in"}” needs at least one value.` };
        matchExpressions.push({ key, operator: r.op, values });
        break;
      default:
        matchExpressions.push({ key, operator: r.op });
    }
  }
  const selector: LabelSelector = {};
  if (Object.keys(matchLabels).length) selector.matchLabels = matchLabels;
  if (matchExpressions.length) selector.matchExpressions = matchExpressions;
  return { selector, error: "" };
}

// selectorRequirements is the inverse of builderSelector (for a selector
// handed over in the URL, e.g. from the inventory's filter).
export function selectorRequirements(sel: LabelSelector): Requirement[] {
  const out: Requirement[] = Object.entries(sel.matchLabels ?? {}).map(([key, v]) => ({ key, op: "=", values: v }));
  for (const e of sel.matchExpressions ?? []) out.push({ key: e.key, op: e.operator as Operator, values: (e.values ?? []).join(",") });
  return out;
}

export interface Taint {
  key: string;
  value?: string;
  effect: string;
}

const EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

// parseTaints reads one taint a line: key=value:Effect or key:Effect.
export function parseTaints(text: string): { taints: Taint[]; error: string } {
  const taints: Taint[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    const m = /^([^=:\s]+)(?:=([^:\s]*))?:(\S+)$/.exec(line);
    if (!m) return { taints, error: `taint “${line}” is not key=value:Effect or key:Effect` };
    if (!EFFECTS.includes(m[3])) return { taints, error: `taint “${line}”: the effect is one of ${EFFECTS.join(", ")}` };
    taints.push(m[2] ? { key: m[1], value: m[2], effect: m[3] } : { key: m[1], effect: m[3] });
  }
  return { taints, error: "" };
}

export interface PoolForm {
  name: string; // workers only
  replicas: string;
  reqs: Requirement[];
  nodeLabels: string;
  taints: string;
}

export interface ClusterForm {
  namespace: string;
  name: string;
  distro: string;
  version: string;
  binariesImage: string;
  controlPlane: PoolForm;
  workers: PoolForm[];
}

export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

// clusterObject is the ProvisionedCluster the form describes, and the
// first thing wrong with it ("" when it can be created). Pool errors name
// the pool.
export function clusterObject(f: ClusterForm): { object: KObject; error: string; poolErrors: Record<string, string> } {
  const poolErrors: Record<string, string> = {};
  const pool = (p: PoolForm, id: string) => {
    const sel = builderSelector(p.reqs);
    const labels = parseLabels(p.nodeLabels);
    const taints = parseTaints(p.taints);
    const n = Number(p.replicas);
    const err = !/^\d+$/.test(p.replicas.trim()) || n > 1000 ? "Replicas is a number from 0 to 1000." : sel.error || (labels.error && "Node labels: " + labels.error) || taints.error;
    if (err) poolErrors[id] = err;
    const out: Record<string, unknown> = { replicas: Number.isFinite(n) ? n : 0, machineSelector: sel.selector };
    if (Object.keys(labels.labels).length) out.nodeLabels = labels.labels;
    if (taints.taints.length) out.nodeTaints = taints.taints;
    return out;
  };
  const spec: Record<string, unknown> = { distro: f.distro, version: f.version.trim(), controlPlane: pool(f.controlPlane, CONTROL_PLANE) };
  if (f.workers.length) spec.workers = f.workers.map((w, i) => ({ name: w.name, ...pool(w, "worker-" + i) }));
  if (f.binariesImage.trim()) spec.binaries = { image: f.binariesImage.trim() };
  const object: KObject = {
    apiVersion: "provisioning.edgefleet.io/v1alpha1",
    kind: "ProvisionedCluster",
    metadata: { name: f.name, namespace: f.namespace } as KObject["metadata"],
    spec,
  };
  const names = f.workers.map((w) => w.name);
  const badWorker = f.workers.findIndex((w) => !DNS_LABEL.test(w.name) || w.name === CONTROL_PLANE || names.indexOf(w.name) !== names.lastIndexOf(w.name));
  const error = !f.namespace
    ? "Choose the namespace whose machines the cluster takes."
    : !f.name
      ? "Give the cluster a name."
      : !NAME_RE.test(f.name) || f.name.length > 63
        ? "The name must be lowercase letters, digits, '-' and '.' (at most 63)."
        : !f.version.trim()
          ? "Choose the Kubernetes version."
          : VERSION_RE[f.distro] && !VERSION_RE[f.distro].test(f.version.trim())
            ? `“${f.version.trim()}” is not a ${f.distro} version (like ${VERSION_EXAMPLE[f.distro]}).`
            : badWorker >= 0
              ? `Worker pool ${badWorker + 1}: its name must be a unique DNS label (lowercase letters, digits, '-') other than “${CONTROL_PLANE}”.`
              : Object.entries(poolErrors).map(([k, v]) => `${k === CONTROL_PLANE ? "Control plane" : "Worker pool " + (Number(k.slice(7)) + 1)}: ${v}`)[0] ?? "";
  return { object, error, poolErrors };
}

// toYAML writes plain JSON values as YAML; every string is quoted (JSON
// strings are YAML scalars), so no user value changes meaning.
export function toYAML(v: unknown, indent = ""): string {
  if (Array.isArray(v)) {
    if (v.length === 0) return "[]";
    return v.map((x) => `\n${indent}- ` + toYAML(x, indent + "  ").replace(/^\n\s*/, "")).join("");
  }
  if (v && typeof v === "object") {
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
    if (entries.length === 0) return "{}";
    return entries
      .map(([k, x]) => {
        const key = /^[A-Za-z][A-Za-z0-9]*$/.test(k) ? k : JSON.stringify(k);
        // Sequences sit at their key's indent, as kubectl writes them.
        const val = toYAML(x, Array.isArray(x) ? indent : indent + "  ");
        return `\n${indent}${key}:` + (val.startsWith("\n") ? val : " " + val);
      })
      .join("");
  }
  return JSON.stringify(v);
}

export function objectYAML(o: KObject): string {
  return toYAML(o).replace(/^\n/, "") + "\n";
}

// labelCatalog lists the label keys of the inventories and the values seen
// for each (formation's own claim labels left out), for the builder's hints.
export function labelCatalog(invs: KObject[]): Map<string, string[]> {
  const m = new Map<string, Set<string>>();
  for (const o of invs) {
    for (const [k, v] of Object.entries(o.metadata.labels ?? {})) {
      if (k === CLUSTER_LABEL || k === POOL_LABEL) continue;
      if (!m.has(k)) m.set(k, new Set());
      m.get(k)!.add(v);
    }
  }
  return new Map([...m.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, s]) => [k, [...s].sort()]));
}

export interface PoolProgress {
  name: string;
  wanted: number;
  adopted: number;
  bootstrapped: number;
  nodeReady: number;
  matchingAvailable: number;
  message: string;
}

const isTrue = (o: KObject, t: string) => condition(o, t)?.status === "True";

// poolProgress counts, per pool of a ProvisionedCluster, its ClusterMachines
// that are adopted, bootstrapped (applied their formation plan) and whose
// node is Ready, with the pool's own status message.
export function poolProgress(pc: KObject, machines: KObject[]): PoolProgress[] {
  const pools: { name: string; replicas: number }[] = [
    { name: CONTROL_PLANE, replicas: pc.spec?.controlPlane?.replicas ?? 0 },
    ...((pc.spec?.workers ?? []) as { name: string; replicas?: number }[]).map((w) => ({ name: w.name, replicas: w.replicas ?? 0 })),
  ];
  const statuses = [pc.status?.controlPlane, ...(pc.status?.workers ?? [])].filter(Boolean) as { name?: string; matchingAvailable?: number; message?: string }[];
  return pools.map((p) => {
    const mine = machines.filter((m) => m.spec?.pool === p.name);
    const st = statuses.find((s) => (s.name ?? CONTROL_PLANE) === p.name) ?? {};
    return {
      name: p.name,
      wanted: p.replicas,
      adopted: mine.filter((m) => isTrue(m, "Adopted")).length,
      bootstrapped: mine.filter((m) => isTrue(m, "Bootstrapped")).length,
      nodeReady: mine.filter((m) => isTrue(m, "NodeReady")).length,
      matchingAvailable: st.matchingAvailable ?? 0,
      message: st.message ?? "",
    };
  });
}

// machineWhy is the first thing a ClusterMachine waits for, in formation's
// order, or "" when it is Ready.
export function machineWhy(cm: KObject): string {
  for (const t of ["Adopted", "Bootstrapped", "NodeReady", "Upgraded", "Ready"]) {
    const c = condition(cm, t);
    if (c && c.status !== "True") return `${t}: ${c.reason ?? ""}${c.message ? " — " + c.message : ""}`;
  }
  return condition(cm, "Ready") ? "" : "Not reconciled yet.";
}
