// Pure logic of the pages, unit-tested in model.test.ts.
import { condition, KObject } from "./api";

export function qname(o: KObject): string {
  return (o.metadata.namespace ? o.metadata.namespace + "/" : "") + o.metadata.name;
}

export function ready(o: KObject): { ok: boolean; text: string; message: string } {
  const c = condition(o, "Ready");
  if (!c) return { ok: false, text: "Pending", message: "Not reconciled yet." };
  return { ok: c.status === "True", text: c.status === "True" ? "Ready" : c.reason || "NotReady", message: c.message ?? "" };
}

// stateTone colours a state word: green only when Ready, red when the Ready
// condition is False for a reason that is not waiting, amber otherwise
// (waiting for an agent, a dependency or a check-in, or a rollout or build
// under way, is not an error).
export function stateTone(o: KObject, state?: string): { tone: "ok" | "warn" | "bad"; text: string } {
  const r = ready(o);
  const text = state || r.text;
  if (r.ok && (text === "Ready" || !state)) return { tone: "ok", text };
  // In progress (kstatus Reconciling without Stalled) is not a failure either.
  const waiting = /^(Wait|Pending)|Progress|Ongoing/.test(text);
  if (condition(o, "Ready") && !r.ok && !waiting) return { tone: "bad", text };
  return { tone: "warn", text };
}

export function bdWhy(o: KObject): string {
  const c = condition(o, "Ready");
  if (c?.message) return c.message;
  const nr = (o.status?.nonReadyStatus ?? []) as { kind?: string; name?: string; summary?: { message?: string[] } }[];
  if (nr.length) return nr.map((r) => `${r.kind} ${r.name}: ${(r.summary?.message ?? []).join("; ")}`).join(" · ");
  return "The cluster's agent has not reported this deployment yet (is the cluster connected?).";
}

export const NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function parseLabels(text: string): { labels: Record<string, string>; error: string } {
  const labels: Record<string, string> = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    const i = line.indexOf("=");
    if (i <= 0) return { labels, error: `“${line}” is not key=value` };
    const k = line.slice(0, i).trim();
    const v = line.slice(i + 1).trim();
    if (k.length > 316 || v.length > 63) return { labels, error: `label ${k}: keys are at most 253+63 characters and values 63` };
    labels[k] = v;
  }
  return { labels, error: "" };
}

export function yamlString(s: string): string {
  return JSON.stringify(s); // JSON strings are valid YAML scalars
}

export function registrationYAML(name: string, ns: string, machineName: string, labels: Record<string, string>): string {
  const spec: string[] = [];
  if (machineName) spec.push(`  machineName: ${yamlString(machineName)}`);
  const ls = Object.entries(labels);
  if (ls.length) spec.push("  machineInventoryLabels:", ...ls.map(([k, v]) => `    ${yamlString(k)}: ${yamlString(v)}`));
  const head = `apiVersion: machines.edgefleet.io/v1alpha1\nkind: MachineRegistration\nmetadata:\n  name: ${yamlString(name)}\n  namespace: ${yamlString(ns)}\n`;
  return head + (spec.length ? "spec:\n" + spec.join("\n") + "\n" : "spec: {}\n");
}


// kubeconfigYAML is a kubeconfig for a downstream cluster reached through
// the manager's proxy, as the signed-in user: with their bearer token, or
// (client-certificate sign-in) a user entry for their own certificate.
export function kubeconfigYAML(o: { name: string; server: string; caPEM: string; user: string; token: string }): string {
  const ca = btoa(o.caPEM);
  const user = o.token
    ? `  user:\n    token: ${yamlString(o.token)}\n`
    : `  user: {}\n  # You signed in with a client certificate, which the browser keeps to itself: add it here\n  # (kubectl --kubeconfig THIS-FILE config set-credentials ${o.name} --client-certificate=CERT --client-key=KEY --embed-certs).\n`;
  return (
    `# ${o.name} through the edgefleet manager's tunnel proxy, as ${o.user}.\n` +
    `apiVersion: v1\nkind: Config\nclusters:\n- name: ${yamlString(o.name)}\n  cluster:\n    server: ${yamlString(o.server)}\n    certificate-authority-data: ${ca}\n` +
    `users:\n- name: ${yamlString(o.name)}\n${user}` +
    `contexts:\n- name: ${yamlString(o.name)}\n  context:\n    cluster: ${yamlString(o.name)}\n    user: ${yamlString(o.name)}\ncurrent-context: ${yamlString(o.name)}\n`
  );
}

// parseSelector turns "a=b,c!=d,e in (x,y),f notin (z),g,!h" into a
// Kubernetes LabelSelector ({} for "": every object).
export function parseSelector(text: string): { selector: { matchLabels?: Record<string, string>; matchExpressions?: { key: string; operator: string; values?: string[] }[] }; error: string } {
  const matchLabels: Record<string, string> = {};
  const matchExpressions: { key: string; operator: string; values?: string[] }[] = [];
  // Split on commas outside parentheses.
  const parts: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of text) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      parts.push(cur);
      cur = "";
    } else cur += ch;
  }
  parts.push(cur);
  for (const raw of parts) {
    const t = raw.trim();
    if (!t) continue;
    let m: RegExpExecArray | null;
    if ((m = /^([^\s=!(),]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(t))) {
      const values = m[3].split(",").map((v) => v.trim()).filter(Boolean);
      if (values.length === 0) return { selector: {}, error: `“${t}”: give at least one value in the parentheses` };
      matchExpressions.push({ key: m[1], operator: m[2] === "in" ? "In" : "NotIn", values });
    } else if ((m = /^([^\s=!(),]+)\s*!=\s*([^\s=!(),]*)$/.exec(t))) {
      matchExpressions.push({ key: m[1], operator: "NotIn", values: [m[2]] });
    } else if ((m = /^([^\s=!(),]+)\s*==?\s*([^\s=!(),]*)$/.exec(t))) {
      matchLabels[m[1]] = m[2];
    } else if ((m = /^!([^\s=!(),]+)$/.exec(t))) {
      matchExpressions.push({ key: m[1], operator: "DoesNotExist" });
    } else if ((m = /^([^\s=!(),]+)$/.exec(t))) {
      matchExpressions.push({ key: m[1], operator: "Exists" });
    } else {
      return { selector: {}, error: `“${t}” is not a label requirement (key=value, key!=value, key in (a,b), key notin (a), key, !key)` };
    }
  }
  const selector: ReturnType<typeof parseSelector>["selector"] = {};
  if (Object.keys(matchLabels).length) selector.matchLabels = matchLabels;
  if (matchExpressions.length) selector.matchExpressions = matchExpressions;
  return { selector, error: "" };
}

// rolloutText summarises a ManagedOSImage's status counts.
export function rolloutText(o: KObject): string {
  const s = o.status ?? {};
  const total = s.total ?? 0;
  if (!total) return "no machines selected";
  const parts = [`${s.upgraded ?? 0}/${total} upgraded`];
  if (s.upgrading) parts.push(`${s.upgrading} upgrading`);
  if (s.failed) parts.push(`${s.failed} failed`);
  return parts.join(", ");
}

// seedImageSource says what a SeedImage builds from.
export function seedImageSource(o: KObject): string {
  if (o.spec?.osImage) return "OS image " + o.spec.osImage;
  if (o.spec?.baseImage) return "base image " + o.spec.baseImage;
  return "configuration only";
}

// seedImageName is the name the UI gives new media: media-<registration>-<suffix>,
// cut to a valid object name.
export function seedImageName(registration: string, suffix: string): string {
  return ("media-" + registration).slice(0, 253 - suffix.length - 1).replace(/[-.]+$/, "") + "-" + suffix;
}
