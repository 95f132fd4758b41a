// Every request the UI makes is a Kubernetes API request sent through the
// manager's /ui/api/k8s proxy, which authenticates the caller (bearer token
// or client certificate) and forwards the request impersonating them, so the
// manager's RBAC decides what each person sees and can do.
import { signal } from "@preact/signals";

export const API = "/ui/api/k8s";

// The token lives in this tab's sessionStorage only: never in a cookie, so
// no other origin (and no other tab) ever sends it.
const TOKEN_KEY = "edgefleet.token";

export const session = signal<{ user: string; groups: string[] } | null>(null);
export const sessionError = signal<string>("");

export function token(): string {
  return sessionStorage.getItem(TOKEN_KEY) ?? "";
}

export interface Status {
  kind?: string;
  message?: string;
  reason?: string;
  code?: number;
}

// ApiError carries the Kubernetes Status message: that is what the UI shows.
export class ApiError extends Error {
  constructor(public code: number, message: string, public reason = "") {
    super(message);
  }
}

function headers(extra?: Record<string, string>): Headers {
  const h = new Headers(extra);
  const t = token();
  if (t) h.set("Authorization", "Bearer " + t);
  // A custom header makes every cross-origin use of this API a CORS
  // preflight the manager never answers: a client certificate the browser
  // sends on its own cannot be used by another site (CSRF).
  h.set("X-Edgefleet-UI", "1");
  return h;
}

async function failure(res: Response): Promise<ApiError> {
  let msg = res.statusText || "request failed";
  let reason = "";
  try {
    const s = (await res.json()) as Status;
    if (s.message) msg = s.message;
    if (s.reason) reason = s.reason;
  } catch {
    /* not a Status */
  }
  if (res.status === 401 && session.value) logout("Your session is no longer accepted by the manager: " + msg);
  return new ApiError(res.status, msg, reason);
}

export async function request<T>(path: string, init: RequestInit & { contentType?: string } = {}): Promise<T> {
  return requestAt<T>(API + path, init);
}

// requestAt is request for the manager's own UI routes (/ui/api/…) outside
// the Kubernetes API proxy.
export async function requestAt<T>(url: string, init: RequestInit & { contentType?: string } = {}): Promise<T> {
  const h = headers(init.contentType ? { "Content-Type": init.contentType } : undefined);
  const res = await fetch(url, { ...init, headers: h, credentials: "same-origin", cache: "no-store" });
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

// fetchAuthorized GETs a route of the manager's UI API as the signed-in
// user (for files, not JSON): the credential goes in a header, never in a
// URL that a proxy or the browser history would keep.
export async function fetchAuthorized(path: string): Promise<Response> {
  const res = await fetch(path, { headers: headers(), credentials: "same-origin", cache: "no-store" });
  if (!res.ok) throw await failure(res);
  return res;
}

// saveFile hands data to the browser's download manager under name.
export function saveFile(data: Blob, name: string): void {
  const url = URL.createObjectURL(data);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

export async function sha256Hex(data: Blob): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", await data.arrayBuffer());
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// login checks a credential by asking the API who it belongs to
// (SelfSubjectReview, allowed to every authenticated user).
export async function login(tok: string): Promise<void> {
  if (tok) sessionStorage.setItem(TOKEN_KEY, tok.trim());
  else sessionStorage.removeItem(TOKEN_KEY);
  try {
    const r = await request<{ status: { userInfo: { username: string; groups?: string[] } } }>(
      "/apis/authentication.k8s.io/v1/selfsubjectreviews",
      { method: "POST", contentType: "application/json", body: JSON.stringify({ apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" }) },
    );
    session.value = { user: r.status.userInfo.username, groups: r.status.userInfo.groups ?? [] };
    sessionError.value = "";
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    session.value = null;
    throw e;
  }
}

export function logout(reason = ""): void {
  sessionStorage.removeItem(TOKEN_KEY);
  session.value = null;
  sessionError.value = reason;
}

// createObject POSTs an object (JSON, or YAML with that content type) to
// resource in namespace as the UI's field manager; it returns the object
// the API server created.
export function createObject(group: string, resource: string, namespace: string, body: string, contentType = "application/json"): Promise<KObject> {
  return request<KObject>(`${group}/namespaces/${encodeURIComponent(namespace)}/${resource}?fieldManager=edgefleet-ui`, { method: "POST", contentType, body });
}

// patchObject merge-patches o (of resource under group path, e.g.
// "/apis/machines.edgefleet.io/v1alpha1") as the UI's field manager.
export async function patchObject(group: string, resource: string, o: KObject, patch: unknown): Promise<void> {
  await request(`${group}/namespaces/${encodeURIComponent(o.metadata.namespace!)}/${resource}/${encodeURIComponent(o.metadata.name)}?fieldManager=edgefleet-ui`, {
    method: "PATCH",
    contentType: "application/merge-patch+json",
    body: JSON.stringify(patch),
  });
}

// can asks whether the current user may do verb on a resource
// (SelfSubjectAccessReview); reason explains a refusal.
export async function can(verb: string, group: string, resource: string, namespace: string, subresource = "", name = ""): Promise<{ allowed: boolean; reason: string }> {
  const r = await request<{ status: { allowed: boolean; denied?: boolean; reason?: string } }>(
    "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
    {
      method: "POST",
      contentType: "application/json",
      body: JSON.stringify({
        apiVersion: "authorization.k8s.io/v1",
        kind: "SelfSubjectAccessReview",
        spec: { resourceAttributes: { verb, group, resource, namespace, subresource, name } },
      }),
    },
  );
  return { allowed: r.status.allowed && !r.status.denied, reason: r.status.reason ?? "" };
}

export interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
}

export interface KObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    creationTimestamp?: string;
    managedFields?: unknown;
  };
  spec?: any;
  status?: any;
}

export function condition(o: KObject, type: string): Condition | undefined {
  return (o.status?.conditions as Condition[] | undefined)?.find((c) => c.type === type);
}

export type StreamState = "loading" | "live" | "reconnecting" | "error";

// Collection is one live query: a list followed by a watch from the list's
// resourceVersion, re-listing when the watch expires (410) and backing off
// on network errors. Updates are coalesced to one render per frame.
export class Collection {
  readonly items = new Map<string, KObject>();
  readonly version = signal(0);
  readonly state = signal<StreamState>("loading");
  readonly error = signal("");
  readonly since = signal<Date | null>(null);
  private abort = new AbortController();
  private rv = "";
  private backoff = 500;
  private healthySince = 0;
  private pending = false;

  constructor(readonly path: string, readonly labelSelector = "", readonly fieldSelector = "") {
    void this.run();
  }

  close(): void {
    this.abort.abort();
  }

  private changed(): void {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.version.value++;
    });
  }

  private query(extra: Record<string, string>): string {
    const q = new URLSearchParams(extra);
    if (this.labelSelector) q.set("labelSelector", this.labelSelector);
    if (this.fieldSelector) q.set("fieldSelector", this.fieldSelector);
    return this.path + "?" + q.toString();
  }

  private async list(): Promise<void> {
    const fresh = new Map<string, KObject>();
    let cont = "";
    do {
      const page = await request<{ metadata: { resourceVersion: string; continue?: string }; items: KObject[] }>(
        this.query(cont ? { limit: "500", continue: cont } : { limit: "500" }),
        { signal: this.abort.signal },
      );
      for (const o of page.items) {
        delete o.metadata.managedFields;
        fresh.set(o.metadata.uid, o);
      }
      cont = page.metadata.continue ?? "";
      this.rv = page.metadata.resourceVersion;
    } while (cont);
    this.items.clear();
    for (const [k, v] of fresh) this.items.set(k, v);
    this.changed();
  }

  // watch returns true when the watch expired and a new list is needed.
  private async watch(): Promise<boolean> {
    const timeout = String(240 + Math.floor(Math.random() * 120));
    // A stream over a lost network can stay silent for minutes: when the
    // browser says it is offline, end it, so the page says "Reconnecting"
    // instead of looking live.
    const wc = new AbortController();
    const stop = () => wc.abort();
    this.abort.signal.addEventListener("abort", stop);
    window.addEventListener("offline", stop);
    try {
      return await this.stream(wc.signal, timeout);
    } finally {
      this.abort.signal.removeEventListener("abort", stop);
      window.removeEventListener("offline", stop);
    }
  }

  private async stream(signal: AbortSignal, timeout: string): Promise<boolean> {
    const res = await fetch(API + this.query({ watch: "1", allowWatchBookmarks: "true", resourceVersion: this.rv, timeoutSeconds: timeout }), {
      headers: headers(),
      signal,
      credentials: "same-origin",
      cache: "no-store",
    });
    if (!res.ok) throw await failure(res);
    this.state.value = "live";
    this.error.value = "";
    this.since.value = new Date();
    this.healthySince = Date.now();
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return false;
      buf += value;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!line.trim()) continue;
        const ev = JSON.parse(line) as { type: string; object: KObject & Status };
        const o = ev.object;
        switch (ev.type) {
          case "ADDED":
          case "MODIFIED":
            delete o.metadata.managedFields;
            this.items.set(o.metadata.uid, o);
            this.rv = o.metadata.resourceVersion ?? this.rv;
            this.changed();
            break;
          case "DELETED":
            this.items.delete(o.metadata.uid);
            this.rv = o.metadata.resourceVersion ?? this.rv;
            this.changed();
            break;
          case "BOOKMARK":
            this.rv = o.metadata.resourceVersion ?? this.rv;
            break;
          case "ERROR":
            if (o.code === 410) return true;
            throw new ApiError(o.code ?? 500, o.message ?? "watch failed");
        }
      }
    }
  }

  private async run(): Promise<void> {
    let relist = true;
    while (!this.abort.signal.aborted) {
      try {
        if (relist) {
          await this.list();
          relist = false;
        }
        relist = await this.watch();
        if (Date.now() - this.healthySince > 60_000) this.backoff = 500;
      } catch (e) {
        if (this.abort.signal.aborted) return;
        const err = e as ApiError;
        this.error.value = navigator.onLine ? err.message : "the browser is offline";
        // Refusals do not get better by retrying: show them and stop
        // (a 401 has already sent the user back to the login form).
        if (err.code === 401 || err.code === 403 || err.code === 404) {
          this.state.value = "error";
          this.changed();
          return;
        }
        this.state.value = "reconnecting";
        relist = err.code === 410 || relist;
        const wait = this.backoff * (0.5 + Math.random());
        this.backoff = Math.min(this.backoff * 2, 30_000);
        // Retry at the end of the backoff, or at once when the network
        // comes back or the tab is shown again.
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer);
            window.removeEventListener("online", done);
            document.removeEventListener("visibilitychange", visible);
            resolve();
          };
          const visible = () => document.visibilityState === "visible" && done();
          const timer = setTimeout(done, wait);
          window.addEventListener("online", done);
          document.addEventListener("visibilitychange", visible);
        });
      }
    }
  }

  sorted(): KObject[] {
    return [...this.items.values()];
  }
}

export function age(ts?: string): string {
  if (!ts) return "—";
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(ts)) / 1000));
  if (s < 60) return s + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m ago";
  if (s < 86400) return Math.floor(s / 3600) + "h ago";
  return Math.floor(s / 86400) + "d ago";
}
