// A virtualised, sortable, accessible table: only the visible rows (plus a
// few above and below) are in the DOM, so 5,000 rows cost what 30 do. Rows
// have a fixed height; the table keeps <table> semantics with aria-rowcount
// and aria-rowindex so screen readers know where they are.
import { ComponentChildren } from "preact";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { can, Collection, KObject, StreamState } from "./api";
import { qname, stateTone } from "./model";
import { useParam } from "./route";

export interface Column {
  title: string;
  // value sorts and, without cell, is shown.
  value: (o: KObject) => string | number;
  cell?: (o: KObject) => ComponentChildren;
  width?: string;
}

const ROW = 36;
const OVERSCAN = 8;

export function Freshness({ state, since, error }: { state: StreamState; since: Date | null; error: string }) {
  const text =
    state === "live"
      ? "Live" + (since ? " since " + since.toLocaleTimeString() : "")
      : state === "loading"
        ? "Loading…"
        : state === "reconnecting"
          ? "Reconnecting… (" + error + ")"
          : "Stopped";
  return <span class={"fresh fresh-" + state}>{text}</span>;
}

export function Table(props: {
  label: string;
  columns: Column[];
  coll: Collection;
  empty: ComponentChildren;
  onOpen?: (o: KObject) => void;
  selected?: string;
  filter?: string;
  height?: number;
  // urlSort keeps the sort order in the URL (sort=<column>&dir=desc).
  urlSort?: boolean;
}) {
  const { columns, coll } = props;
  const version = coll.version.value; // re-render on changes
  const [localSort, setLocalSort] = useState<{ col: number; asc: boolean }>({ col: 0, asc: true });
  const [sortKey, setSortKey] = useParam("sort");
  const [dir, setDir] = useParam("dir");
  const urlCol = columns.findIndex((c) => slug(c.title) === sortKey);
  const sort = props.urlSort ? { col: Math.max(0, urlCol), asc: dir !== "desc" } : localSort;
  const setSort = (s: { col: number; asc: boolean }) => {
    if (!props.urlSort) return setLocalSort(s);
    setSortKey(s.col === 0 ? "" : slug(columns[s.col].title));
    setDir(s.asc ? "" : "desc");
  };
  const [top, setTop] = useState(0);
  const scroller = useRef<HTMLDivElement>(null);
  const height = props.height ?? 480;

  const all = useMemo(() => coll.sorted(), [version, coll]);
  const rows = useMemo(() => {
    const f = (props.filter ?? "").toLowerCase();
    const shown = f ? all.filter((o) => (o.metadata.namespace + "/" + o.metadata.name).toLowerCase().includes(f)) : all.slice();
    const v = columns[sort.col].value;
    shown.sort((a, b) => {
      const x = v(a);
      const y = v(b);
      const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return sort.asc ? c : -c;
    });
    return shown;
  }, [all, sort, props.filter, columns]);

  useEffect(() => {
    if (scroller.current) scroller.current.scrollTop = 0;
    setTop(0);
  }, [props.filter, coll]);

  const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
  const last = Math.min(rows.length, Math.ceil((top + height) / ROW) + OVERSCAN);
  const visible = rows.slice(first, last);

  if (coll.state.value === "error" && all.length === 0) {
    return (
      <div class="banner error" role="alert">
        {coll.error.value}
      </div>
    );
  }
  if (coll.state.value !== "loading" && all.length === 0) {
    return <div class="empty">{props.empty}</div>;
  }
  return (
    <div>
      <p class="count" role="status" aria-live="polite">
        {rows.length === all.length ? `${all.length} shown` : `${rows.length} of ${all.length} shown`}
      </p>
      <div class="scroller" ref={scroller} style={{ maxHeight: height + "px" }} onScroll={(e) => setTop((e.currentTarget as HTMLDivElement).scrollTop)}>
        <table aria-label={props.label} aria-rowcount={rows.length + 1}>
          <thead>
            <tr aria-rowindex={1}>
              {columns.map((c, i) => (
                <th scope="col" style={c.width ? { width: c.width } : undefined} aria-sort={sort.col === i ? (sort.asc ? "ascending" : "descending") : "none"}>
                  <button type="button" class="sort" onClick={() => setSort({ col: i, asc: sort.col === i ? !sort.asc : true })}>
                    {c.title}
                    <span aria-hidden="true">{sort.col === i ? (sort.asc ? " ▲" : " ▼") : ""}</span>
                  </button>
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {first > 0 && (
              <tr class="spacer" aria-hidden="true">
                <td colSpan={columns.length} style={{ height: first * ROW + "px" }} />
              </tr>
            )}
            {visible.map((o, i) => (
              <tr
                key={o.metadata.uid}
                aria-rowindex={first + i + 2}
                class={props.selected === o.metadata.uid ? "selected" : undefined}
                style={{ height: ROW + "px" }}
              >
                {columns.map((c, ci) => (
                  <td title={c.cell ? undefined : String(c.value(o))}>
                    {ci === 0 && props.onOpen ? (
                      <button type="button" class="link" onClick={() => props.onOpen!(o)}>
                        {c.cell ? c.cell(o) : c.value(o)}
                      </button>
                    ) : c.cell ? (
                      c.cell(o)
                    ) : (
                      c.value(o)
                    )}
                  </td>
                ))}
              </tr>
            ))}
            {last < rows.length && (
              <tr class="spacer" aria-hidden="true">
                <td colSpan={columns.length} style={{ height: (rows.length - last) * ROW + "px" }} />
              </tr>
            )}
          </tbody>
        </table>
      </div>
    </div>
  );
}

// useCollection keeps one live query per (path, selector) while mounted.
export function slug(title: string): string {
  return title.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
}

export function useCollection(path: string, labelSelector = "", fieldSelector = ""): Collection {
  const coll = useMemo(() => new Collection(path, labelSelector, fieldSelector), [path, labelSelector, fieldSelector]);
  useEffect(() => () => coll.close(), [coll]);
  // Reading the signal subscribes the calling component: detail panels
  // re-render on watch events just like the table.
  void coll.version.value;
  return coll;
}

// ListTable is a small static table (conditions, events, a plan's
// instructions): a header row of column titles over the rows given.
export function ListTable({ label, head, children }: { label: string; head: string[]; children: ComponentChildren }) {
  return (
    <table class="conditions" aria-label={label}>
      <thead>
        <tr>
          {head.map((h) => (
            <th scope="col">{h}</th>
          ))}
        </tr>
      </thead>
      <tbody>{children}</tbody>
    </table>
  );
}

export function Conditions({ o }: { o: KObject }) {
  const conds = (o.status?.conditions ?? []) as { type: string; status: string; reason?: string; message?: string; lastTransitionTime?: string }[];
  if (conds.length === 0) return <p>No conditions reported yet: the controller has not processed this object.</p>;
  return (
    <ListTable label="Conditions" head={["Type", "Status", "Reason", "Message"]}>
      {conds.map((c) => (
        <tr>
          <td>{c.type}</td>
          <td>
            <Badge ok={c.status === "True"} text={c.status} />
          </td>
          <td>{c.reason}</td>
          <td class="msg">{c.message}</td>
        </tr>
      ))}
    </ListTable>
  );
}

export function Badge({ ok, text, warn }: { ok: boolean; text: string; warn?: boolean }) {
  return <span class={"badge " + (ok ? "ok" : warn ? "warn" : "bad")}>{text || "—"}</span>;
}

// StateCell shows the kind's state word, coloured by stateTone.
export function StateCell({ o, state }: { o: KObject; state?: string }) {
  const { tone, text } = stateTone(o, state);
  return <Badge ok={tone === "ok"} warn={tone === "warn"} text={text} />;
}

// submitWith is a form's onSubmit: the page stays, action runs.
export function submitWith(action: () => unknown) {
  return (e: Event) => {
    e.preventDefault();
    void action();
  };
}

// Submit is a form's submit button, off while busy or disabled, and the
// error of its last try.
export function Submit({ text, busyText, busy, disabled, err }: { text: string; busyText: string; busy: boolean; disabled?: boolean; err: string }) {
  return (
    <>
      <div class="actions">
        <button type="submit" class="primary" disabled={busy || disabled}>
          {busy ? busyText : text}
        </button>
      </div>
      <ErrorBanner text={err} />
    </>
  );
}

// ErrorBanner shows a failed action's error; nothing without one.
export function ErrorBanner({ text }: { text: string }) {
  if (!text) return null;
  return (
    <div class="banner error" role="alert">
      {text}
    </div>
  );
}

// useAction runs a user's action (a create, a patch, a download): busy
// while it runs, and its error kept for an ErrorBanner until the next run.
export function useAction(): { busy: boolean; err: string; run: (action: () => Promise<void>) => Promise<void> } {
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState("");
  const run = async (action: () => Promise<void>) => {
    setBusy(true);
    setErr("");
    try {
      await action();
    } catch (e) {
      setErr((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return { busy, err, run };
}

export interface Permission {
  allowed: boolean;
  reason: string;
}

// usePermission asks the API server whether the signed-in user may do verb
// (SelfSubjectAccessReview): null while it asks and without a namespace, so
// a form neither offers nor refuses what it does not know yet.
export function usePermission(verb: string, group: string, resource: string, namespace: string, subresource = "", name = ""): Permission | null {
  const [perm, setPerm] = useState<Permission | null>(null);
  useEffect(() => {
    let live = true;
    setPerm(null);
    if (!namespace) return;
    can(verb, group, resource, namespace, subresource, name)
      .then((p) => live && setPerm(p))
      .catch((e) => live && setPerm({ allowed: false, reason: (e as Error).message }));
    return () => {
      live = false;
    };
  }, [verb, group, resource, namespace, subresource, name]);
  return perm;
}

// byName finds the object a URL names ("namespace/name").
export function byName(coll: Collection, name: string): KObject | undefined {
  if (!name) return undefined;
  for (const o of coll.items.values()) if (qname(o) === name) return o;
  return undefined;
}

// Toolbar is a list page's filters: by name (in the browser), by label
// selector (by the API server; only where setSelector is given) and how
// fresh the list is.
export function Toolbar(props: { coll: Collection; id: string; filter: string; setFilter: (s: string) => void; selector?: string; setSelector?: (s: string) => void }) {
  const { coll, id } = props;
  return (
    <div class="toolbar">
      <div class="filters">
        <label for={id + "-filter"}>Filter by name</label>
        <input id={id + "-filter"} type="search" value={props.filter} onInput={(e) => props.setFilter((e.target as HTMLInputElement).value)} />
      </div>
      {props.setSelector && <SelectorInput id={id + "-selector"} value={props.selector ?? ""} onChange={props.setSelector} />}
      <Freshness state={coll.state.value} since={coll.since.value} error={coll.error.value} />
    </div>
  );
}

// DetailHead is the title row of a detail panel: the heading (id for
// aria-labelledby), anything given as children, and Close.
export function DetailHead({ id, title, onClose, children }: { id: string; title: string; onClose: () => void; children?: ComponentChildren }) {
  return (
    <div class="detail-head">
      <h2 id={id}>{title}</h2>
      {children}
      <button type="button" onClick={onClose}>
        Close
      </button>
    </div>
  );
}

export function Labels({ labels, hide = [] as string[] }: { labels?: Record<string, string>; hide?: string[] }) {
  const entries = Object.entries(labels ?? {}).filter(([k]) => !hide.some((p) => k.startsWith(p)));
  if (entries.length === 0) return <span class="muted">none</span>;
  return (
    <span class="labels">
      {entries.map(([k, v]) => (
        <span class="label">
          {k}={v}
        </span>
      ))}
    </span>
  );
}

export function SelectorInput({ value, onChange, id }: { value: string; onChange: (v: string) => void; id: string }) {
  const [draft, setDraft] = useState(value);
  useEffect(() => setDraft(value), [value]);
  return (
    <form class="filters" onSubmit={submitWith(() => onChange(draft.trim()))}>
      <label for={id}>Label selector (filtered by the API server)</label>
      <input id={id} value={draft} placeholder="env=prod,region in (eu,us)" onInput={(e) => setDraft((e.target as HTMLInputElement).value)} />
      <button type="submit">Apply</button>
    </form>
  );
}
