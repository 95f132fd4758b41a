// Table-driven tests of the Create cluster page's logic (node test/unit.mjs).
import { test } from "node:test";
import assert from "node:assert/strict";
import { KObject } from "./api";
import { builderSelector, clusterObject, ClusterForm, labelCatalog, machineWhy, objectYAML, parseTaints, poolProgress, Requirement, selectorRequirements } from "./formation";

test("builderSelector: = rows are matchLabels, the rest matchExpressions", () => {
  const r = (key: string, op: Requirement["op"], values = ""): Requirement => ({ key, op, values });
  const cases: [string, Requirement[], unknown, string][] = [
    ["nothing: every machine", [], {}, ""],
    ["equals", [r("role", "=", "server"), r("site", "=", " shop ")], { matchLabels: { role: "server", site: "shop" } }, ""],
    ["in, not in, exists", [r("role", "In", "worker, gpu"), r("legacy", "DoesNotExist"), r("rack", "NotIn", "9"), r("ssd", "Exists")],
      { matchExpressions: [{ key: "role", operator: "In", values: ["worker", "gpu"] }, { key: "legacy", operator: "DoesNotExist" }, { key: "rack", operator: "NotIn", values: ["9"] }, { key: "ssd", operator: "Exists" }] }, ""],
    ["an empty key", [r(" ", "=", "x")], {}, "Choose a label key"],
    ["in without values", [r("role", "In", " , ")], {}, "needs at least one value"],
    ["= with two values", [r("role", "=", "a,b")], {}, "use “in” for several"],
    ["one key equal to two values", [r("role", "=", "a"), r("role", "=", "b")], {}, "no machine would match"],
  ];
  for (const [name, reqs, want, err] of cases) {
    const got = builderSelector(reqs);
    if (err) assert.match(got.error, new RegExp(err), name);
    else {
      assert.equal(got.error, "", name);
      assert.deepEqual(got.selector, want, name);
      assert.deepEqual(builderSelector(selectorRequirements(got.selector)).selector, want, name + " (round trip)");
    }
  }
});

test("parseTaints", () => {
  const cases: [string, unknown, string][] = [
    ["", [], ""],
    ["gpu=true:NoSchedule\n\n dedicated:NoExecute ", [{ key: "gpu", value: "true", effect: "NoSchedule" }, { key: "dedicated", effect: "NoExecute" }], ""],
    ["gpu=true", [], "is not key=value:Effect"],
    ["gpu:Never", [], "the effect is one of NoSchedule, PreferNoSchedule, NoExecute"],
  ];
  for (const [text, want, err] of cases) {
    const got = parseTaints(text);
    if (err) assert.match(got.error, new RegExp(err), text);
    else assert.deepEqual(got.taints, want, text);
  }
});

const pool = (over: Partial<ClusterForm["controlPlane"]> = {}) => ({ name: "", replicas: "1", reqs: [], nodeLabels: "", taints: "", ...over });
const form = (over: Partial<ClusterForm> = {}): ClusterForm => ({
  namespace: "fleet-default",
  name: "shop",
  distro: "k3s",
  version: "v1.33.5+k3s1",
  binariesImage: "",
  controlPlane: pool({ reqs: [{ key: "role", op: "=", values: "server" }] }),
  workers: [pool({ name: "default", replicas: "2", reqs: [{ key: "role", op: "In", values: "worker" }], nodeLabels: "tier=edge", taints: "gpu=true:NoSchedule" })],
  ...over,
});

test("clusterObject: the ProvisionedCluster the form describes, or what is wrong", () => {
  const ok = clusterObject(form());
  assert.equal(ok.error, "");
  assert.deepEqual(ok.object.spec, {
    distro: "k3s",
    version: "v1.33.5+k3s1",
    controlPlane: { replicas: 1, machineSelector: { matchLabels: { role: "server" } } },
    workers: [{ name: "default", replicas: 2, machineSelector: { matchExpressions: [{ key: "role", operator: "In", values: ["worker"] }] }, nodeLabels: { tier: "edge" }, nodeTaints: [{ key: "gpu", value: "true", effect: "NoSchedule" }] }],
  });
  const cases: [string, Partial<ClusterForm>, string][] = [
    ["no name", { name: "" }, "Give the cluster a name"],
    ["bad name", { name: "Shop" }, "lowercase"],
    ["no version", { version: " " }, "Choose the Kubernetes version"],
    ["version of another distro", { distro: "rke2" }, "is not a rke2 version \\(like v1.33.5\\+rke2r1\\)"],
    ["worker named control-plane", { workers: [pool({ name: "control-plane" })] }, "Worker pool 1: its name"],
    ["two workers of one name", { workers: [pool({ name: "a" }), pool({ name: "a" })] }, "Worker pool 1: its name"],
    ["bad replicas", { controlPlane: pool({ replicas: "x" }) }, "Control plane: Replicas is a number"],
    ["bad taint in a worker", { workers: [pool({ name: "a", taints: "x" })] }, "Worker pool 1: taint “x”"],
    ["bad node label", { workers: [pool({ name: "a" }), pool({ name: "b", nodeLabels: "novalue" })] }, "Worker pool 2: Node labels"],
  ];
  for (const [name, over, err] of cases) assert.match(clusterObject(form(over)).error, new RegExp(err), name);
  assert.equal(clusterObject(form({ workers: [pool({ name: "a", taints: "x" })] })).poolErrors["worker-0"], "taint “x” is not key=value:Effect or key:Effect");
  assert.deepEqual(clusterObject(form({ distro: "edgefleet", version: "v1.37.1", binariesImage: " r.example/k:1 " })).object.spec.binaries, { image: "r.example/k:1" });
});

test("objectYAML quotes every user value", () => {
  const y = objectYAML(clusterObject(form({ name: "shop", workers: [pool({ name: "w", nodeLabels: "note=a: b", reqs: [{ key: "example.com/role", op: "In", values: "x,y" }] })] })).object);
  assert.equal(
    y,
    `apiVersion: "provisioning.edgefleet.io/v1alpha1"
kind: "ProvisionedCluster"
metadata:
  name: "shop"
  namespace: "fleet-default"
spec:
  distro: "k3s"
  version: "v1.33.5+k3s1"
  controlPlane:
    replicas: 1
    machineSelector:
      matchLabels:
        role: "server"
  workers:
  - name: "w"
    replicas: 1
    machineSelector:
      matchExpressions:
      - key: "example.com/role"
        operator: "In"
        values:
        - "x"
        - "y"
    nodeLabels:
      note: "a: b"
`,
  );
});

const mk = (name: string, labels: Record<string, string>, spec: Record<string, unknown> = {}, conds: [string, string, string?][] = []): KObject => ({
  metadata: { name, namespace: "ns", uid: name, labels },
  spec,
  status: { conditions: conds.map(([type, status, message]) => ({ type, status, reason: "R", message })) },
});

test("labelCatalog: keys and values seen, claims left out", () => {
  const cat = labelCatalog([mk("a", { site: "shop", role: "server" }), mk("b", { site: "lab", role: "worker", "provisioning.edgefleet.io/cluster": "x" }), mk("c", { role: "worker" })]);
  assert.deepEqual([...cat.entries()], [["role", ["server", "worker"]], ["site", ["lab", "shop"]]]);
});

test("poolProgress and machineWhy", () => {
  const pc: KObject = {
    metadata: { name: "shop", uid: "p" },
    spec: { controlPlane: { replicas: 1 }, workers: [{ name: "default", replicas: 2 }] },
    status: { controlPlane: { name: "control-plane", matchingAvailable: 0 }, workers: [{ name: "default", matchingAvailable: 1, message: "pool default needs 1 more machine(s)" }] },
  };
  const cms = [
    mk("s", {}, { pool: "control-plane" }, [["Adopted", "True"], ["Bootstrapped", "True"], ["NodeReady", "True"], ["Ready", "True"]]),
    mk("w1", {}, { pool: "default" }, [["Adopted", "True"], ["Bootstrapped", "False", "plan written, not applied"], ["Ready", "False"]]),
  ];
  assert.deepEqual(poolProgress(pc, cms), [
    { name: "control-plane", wanted: 1, adopted: 1, bootstrapped: 1, nodeReady: 1, matchingAvailable: 0, message: "" },
    { name: "default", wanted: 2, adopted: 1, bootstrapped: 0, nodeReady: 0, matchingAvailable: 1, message: "pool default needs 1 more machine(s)" },
  ]);
  assert.equal(machineWhy(cms[0]), "");
  assert.equal(machineWhy(cms[1]), "Bootstrapped: R — plan written, not applied");
  assert.equal(machineWhy(mk("x", {})), "Not reconciled yet.");
});
