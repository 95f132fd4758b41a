// The page and its view state (filters, sort, the open object) live in the
// URL's fragment, e.g. #/clusters?selector=env%3Dprod&q=edge&sort=last-seen&dir=desc,
// so a view can be bookmarked or shared and survives a reload. The fragment
// never reaches the server (nor its logs).
import { signal } from "@preact/signals";

export interface Route {
  page: string;
  params: URLSearchParams;
}

export function parseHash(hash: string): Route {
  const h = hash.replace(/^#\/?/, "");
  const i = h.indexOf("?");
  const path = i < 0 ? h : h.slice(0, i);
  return { page: path.split("/")[0], params: new URLSearchParams(i < 0 ? "" : h.slice(i + 1)) };
}

export function formatHash(page: string, params: URLSearchParams): string {
  const q = params.toString();
  return "#/" + page + (q ? "?" + q : "");
}

export const route = signal<Route>(parseHash(location.hash));
window.addEventListener("hashchange", () => (route.value = parseHash(location.hash)));

// setParams changes view state in place (no history entry per keystroke).
export function setParams(change: Record<string, string>): void {
  const p = new URLSearchParams(route.value.params);
  for (const [k, v] of Object.entries(change)) {
    if (v) p.set(k, v);
    else p.delete(k);
  }
  history.replaceState(history.state, "", formatHash(route.value.page, p));
  route.value = { page: route.value.page, params: p };
}

// useParam is one piece of view state kept in the URL ("" when absent).
export function useParam(key: string): [string, (v: string) => void] {
  return [route.value.params.get(key) ?? "", (v: string) => setParams({ [key]: v })];
}

// go opens a page with the given view state (a new history entry).
export function go(page: string, params: Record<string, string> = {}): void {
  location.hash = formatHash(page, new URLSearchParams(Object.entries(params).filter(([, v]) => v)));
}
