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
// (waiting for an agent, a dependency or a check-in is not an error).
export function stateTone(o: KObject, state?: string): { tone: "ok" | "warn" | "bad"; text: string } {
  const r = ready(o);
  const text = state || r.text;
  if (r.ok && (text === "Ready" || !state)) return { tone: "ok", text };
  const waiting = /^(Wait|Pending)/.test(text);
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

