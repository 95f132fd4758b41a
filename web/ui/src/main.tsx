import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, login, logout, session, sessionError, token } from "./api";
import { ClustersPage, FleetPage, InventoryPage, RegistrationsPage } from "./pages";
import { MediaPage } from "./media";
import { OSUpgradesPage } from "./osupgrades";
import { CreateClusterPage, ProvisionedPage } from "./create";
import { route } from "./route";
import { ErrorBanner, submitWith } from "./table";
import "./app.css";

const pages = [
  { path: "clusters", title: "Clusters", view: ClustersPage },
  { path: "fleet", title: "Fleet", view: FleetPage },
  { path: "registrations", title: "Machine registrations", view: RegistrationsPage },
  { path: "media", title: "Build media", view: MediaPage },
  { path: "inventory", title: "Inventory of machines", view: InventoryPage },
  { path: "create", title: "Create cluster", view: CreateClusterPage },
  { path: "provisioned", title: "Provisioned clusters", view: ProvisionedPage },
  { path: "os", title: "OS upgrades", view: OSUpgradesPage },
];

function Login() {
  const [tok, setTok] = useState("");
  const [err, setErr] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (t: string) => {
    setBusy(true);
    setErr("");
    try {
      await login(t);
    } catch (e) {
      const a = e as ApiError;
      setErr(a.code === 401 ? "The manager did not accept this credential: " + a.message : a.message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login" id="main">
      <h1>edgefleet</h1>
      <p>
        Sign in with a Kubernetes bearer token of the manager (for example <code>kubectl -n NAMESPACE create token SERVICEACCOUNT</code>) or with the client
        certificate your browser presents. Everything you do here is a Kubernetes request made as you: the manager's RBAC decides what you see and can change.
      </p>
      <ErrorBanner text={sessionError.value} />
      <form onSubmit={submitWith(() => submit(tok))}>
        <label for="token">Bearer token</label>
        <textarea id="token" rows={4} value={tok} autocomplete="off" spellcheck={false} onInput={(e) => setTok((e.target as HTMLTextAreaElement).value)} />
        <div class="actions">
          <button type="submit" class="primary" disabled={busy || !tok.trim()}>
            Sign in
          </button>
          <button type="button" disabled={busy} onClick={() => void submit("")}>
            Use my client certificate
          </button>
        </div>
      </form>
      <ErrorBanner text={err} />
    </main>
  );
}

function Shell() {
  const page = pages.find((p) => p.path === route.value.page) ?? pages[0];
  const View = page.view;
  useEffect(() => {
    document.title = page.title + " · edgefleet";
  }, [page]);
  return (
    <div class="shell">
      <header>
        <span class="brand">edgefleet</span>
        <nav aria-label="Main">
          <ul>
            {pages.map((p) => (
              <li>
                <a href={"#/" + p.path} aria-current={p.path === page.path ? "page" : undefined}>
                  {p.title}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <span class="who">
          Signed in as <strong>{session.value?.user}</strong>
          <button type="button" onClick={() => logout()}>
            Sign out
          </button>
        </span>
      </header>
      <main id="main">
        <h1>{page.title}</h1>
        <View />
      </main>
    </div>
  );
}

function App() {
  const [checking, setChecking] = useState(true);
  useEffect(() => {
    // A token from earlier in this tab, or a client certificate.
    login(token())
      .catch(() => {})
      .finally(() => setChecking(false));
  }, []);
  if (checking) return <p class="loading">Loading…</p>;
  return session.value ? <Shell /> : <Login />;
}

render(<App />, document.getElementById("app")!);
