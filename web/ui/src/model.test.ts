// Table-driven unit tests of the pages' logic; run by `node test/unit.mjs`
// (esbuild bundles this file, node:test runs it).
import { test } from "node:test";
import assert from "node:assert/strict";
import { KObject } from "./api";
import { bdWhy, kubeconfigYAML, NAME_RE, parseLabels, parseSelector, registrationYAML, rolloutText, seedImageName, stateTone } from "./model";

function obj(conds: { type: string; status: string; reason?: string; message?: string }[], status: Record<string, unknown> = {}): KObject {
  return { metadata: { name: "x", namespace: "ns", uid: "u" }, status: { ...status, conditions: conds } };
}

test("stateTone: green only when Ready, waiting is amber, failures red", () => {
  const cases: [string, KObject, string | undefined, string, string][] = [
    ["ready", obj([{ type: "Ready", status: "True" }]), "Ready", "ok", "Ready"],
    ["ready, no state word", obj([{ type: "Ready", status: "True" }]), undefined, "ok", "Ready"],
    ["ready but waiting for check-in", obj([{ type: "Ready", status: "True" }]), "WaitCheckIn", "warn", "WaitCheckIn"],
    ["not ready, waiting for agents", obj([{ type: "Ready", status: "False", reason: "TargetsNotReady" }]), "WaitApplied", "warn", "WaitApplied"],
    ["not ready, error", obj([{ type: "Ready", status: "False", reason: "ErrApplied" }]), "ErrApplied", "bad", "ErrApplied"],
    ["not ready, waiting reason as word", obj([{ type: "Ready", status: "False", reason: "WaitingForRegistration" }]), undefined, "warn", "WaitingForRegistration"],
    ["not ready, failure reason as word", obj([{ type: "Ready", status: "False", reason: "ForeignObjects" }]), undefined, "bad", "ForeignObjects"],
    ["not reconciled yet", obj([]), undefined, "warn", "Pending"],
    ["a rollout under way", obj([{ type: "Ready", status: "False", reason: "RolloutProgressing" }]), undefined, "warn", "RolloutProgressing"],
    ["a build under way", obj([{ type: "Ready", status: "False", reason: "BuildOngoing" }]), undefined, "warn", "BuildOngoing"],
    ["a failed channel sync", obj([{ type: "Ready", status: "False", reason: "SyncFailed" }]), undefined, "bad", "SyncFailed"],
  ];
  for (const [name, o, state, tone, text] of cases) {
    assert.deepEqual(stateTone(o, state), { tone, text }, name);
  }
});

test("parseLabels", () => {
  const cases: [string, Record<string, string>, string][] = [
    ["", {}, ""],
    ["site=lab\n\n rack = 1 ", { site: "lab", rack: "1" }, ""],
    ["a=b=c", { a: "b=c" }, ""],
    ["novalue", {}, "“novalue” is not key=value"],
    ["=x", {}, "“=x” is not key=value"],
    ["k=" + "v".repeat(64), {}, "label k: keys are at most 253+63 characters and values 63"],
  ];
  for (const [text, labels, error] of cases) {
    const got = parseLabels(text);
    assert.equal(got.error, error, JSON.stringify(text));
    if (!error) assert.deepEqual(got.labels, labels, JSON.stringify(text));
  }
});

test("NAME_RE accepts DNS subdomains only", () => {
  for (const [name, ok] of [["rack-1", true], ["a.b-c", true], ["Rack", false], ["-a", false], ["a_b", false], ["a.", false]] as [string, boolean][]) {
    assert.equal(NAME_RE.test(name), ok, name);
  }
});

test("registrationYAML quotes every user value", () => {
  assert.equal(
    registrationYAML("r", "ns", "", {}),
    'apiVersion: machines.edgefleet.io/v1alpha1\nkind: MachineRegistration\nmetadata:\n  name: "r"\n  namespace: "ns"\nspec: {}\n',
  );
  const y = registrationYAML("r", "ns", "m-${System Information/UUID}", { "site": "a: b\nc" });
  assert.match(y, /\n  machineName: "m-\$\{System Information\/UUID\}"\n/);
  assert.match(y, /\n  machineInventoryLabels:\n    "site": "a: b\\nc"\n$/);
});

test("bdWhy: the Ready message, else non-ready resources, else the agent has not reported", () => {
  assert.equal(bdWhy(obj([{ type: "Ready", status: "False", message: "deployment web: 0/1 ready" }])), "deployment web: 0/1 ready");
  assert.equal(
    bdWhy(obj([], { nonReadyStatus: [{ kind: "Deployment", name: "web", summary: { message: ["0/1 ready", "ImagePullBackOff"] } }] })),
    "Deployment web: 0/1 ready; ImagePullBackOff",
  );
  assert.match(bdWhy(obj([])), /agent has not reported/);
});

test("parseSelector", () => {
  const cases: [string, unknown, boolean][] = [
    ["", {}, false],
    ["site=lab", { matchLabels: { site: "lab" } }, false],
    ["site==lab, rack != 2", { matchLabels: { site: "lab" }, matchExpressions: [{ key: "rack", operator: "NotIn", values: ["2"] }] }, false],
    ["env in (dev, prod),tier notin (db)", { matchExpressions: [{ key: "env", operator: "In", values: ["dev", "prod"] }, { key: "tier", operator: "NotIn", values: ["db"] }] }, false],
    ["gpu,!legacy", { matchExpressions: [{ key: "gpu", operator: "Exists" }, { key: "legacy", operator: "DoesNotExist" }] }, false],
    ["env in ()", {}, true],
    ["a b", {}, true],
  ];
  for (const [text, want, bad] of cases) {
    const got = parseSelector(text);
    assert.equal(!!got.error, bad, `${text}: ${got.error}`);
    if (!bad) assert.deepEqual(got.selector, want, text);
  }
});

test("kubeconfigYAML carries the signed-in user's token, or none", () => {
  const withToken = kubeconfigYAML({ name: "ns.c", server: "https://m/k8s/clusters/ns.c", caPEM: "PEM", user: "alice", token: "tok" });
  assert.match(withToken, /server: "https:\/\/m\/k8s\/clusters\/ns.c"/);
  assert.match(withToken, /token: "tok"/);
  assert.match(withToken, /certificate-authority-data: UEVN/);
  const withCert = kubeconfigYAML({ name: "ns.c", server: "https://m/k8s/clusters/ns.c", caPEM: "PEM", user: "alice", token: "" });
  assert.doesNotMatch(withCert, /token:/);
  assert.match(withCert, /user: \{\}/);
});

test("rolloutText and seedImageName", () => {
  const mk = (status: Record<string, number>): KObject => ({ metadata: { name: "x", uid: "u" }, status });
  assert.equal(rolloutText(mk({})), "no machines selected");
  assert.equal(rolloutText(mk({ total: 5, upgraded: 2, upgrading: 1 })), "2/5 upgraded, 1 upgrading");
  assert.equal(rolloutText(mk({ total: 2, upgraded: 0, failed: 1 })), "0/2 upgraded, 1 failed");
  assert.equal(seedImageName("rack-1", "abcde"), "media-rack-1-abcde");
  assert.equal(seedImageName("x".repeat(300), "abcde").length, 253);
});
