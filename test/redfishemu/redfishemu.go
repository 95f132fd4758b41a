// Package redfishemu is a Redfish BMC emulator: a fake of hardware we
// cannot have in tests (a baseboard management controller), serving the
// subset of DSP0266 edgefleet uses over HTTPS on loopback with its own CA.
//
// Resources: the service root (no auth), SessionService with Sessions
// (POST login → 201, X-Auth-Token and Location; DELETE logout), one
// ComputerSystem with facts, PowerState, Boot (BootSourceOverrideTarget and
// BootSourceOverrideEnabled with their AllowableValues; PATCH honours
// If-Match and answers 412 on a stale ETag) and the ComputerSystem.Reset
// action (On, ForceOff, GracefulShutdown, ForceRestart), one Manager (the
// BMC) with a VirtualMedia collection holding CD1 with the InsertMedia
// (downloads the image URL into a directory, then inserts the file; refused
// while an image is inserted) and EjectMedia actions. Everything but the
// root, /redfish and /redfish/v1/odata needs HTTP Basic or a session token.
// Errors are Redfish error bodies with Base message IDs.
//
// Power and media are carried out on a Machine: a VM of the test rig
// (VMMachine) or a SimulatedMachine.
package redfishemu

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure one emulated BMC.
type Options struct {
	// Username and Password are the BMC's account.
	Username, Password string
	// Machine is what the BMC controls; nil means a SimulatedMachine.
	Machine Machine
	// System facts.
	Manufacturer, Model, SerialNumber, UUID string
	// MediaDir is where InsertMedia downloads images (default: a
	// temporary directory made at the first insert, removed by Close).
	MediaDir string
	// MediaClient downloads images (default: one that trusts the system
	// roots). Real BMCs often skip verification; tests give a client that
	// trusts the image server's CA.
	MediaClient *http.Client
	// CA signs the BMC's certificate (default: a new CA per BMC).
	CA *CA
	// Addr to listen on (default 127.0.0.1:0).
	Addr string
}

// BMC is one running emulated BMC.
type BMC struct {
	// URL is the service's address, https://127.0.0.1:<port>.
	URL string
	// CA is the CA that signed the BMC's certificate.
	CA *CA
	// CertSHA256 is the hex SHA-256 of the serving certificate's DER.
	CertSHA256 string
	// Machine is what the BMC controls.
	Machine Machine

	opts     Options
	srv      *http.Server
	ln       net.Listener
	tmpDir   string
	requests atomic.Int64
	// downloads in flight: Close waits for them before removing tmpDir
	// (http.Server.Close does not wait for handlers).
	downloads sync.WaitGroup
	closed    bool

	mu       sync.Mutex
	sessions map[string]string // token → session id
	nextID   int
	boot     bootOverride
	image    string // URL of the inserted image
	imgFile  string
	etagSeq  int
}

type bootOverride struct {
	Target, Enabled string
}

// Start serves a new emulated BMC on loopback until Close.
func Start(opts Options) (*BMC, error) {
	if opts.Machine == nil {
		opts.Machine = &SimulatedMachine{}
	}
	if opts.CA == nil {
		ca, err := NewCA()
		if err != nil {
			return nil, err
		}
		opts.CA = ca
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	b := &BMC{CA: opts.CA, Machine: opts.Machine, opts: opts, sessions: map[string]string{}, boot: bootOverride{Target: "None", Enabled: "Disabled"}}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, err
	}
	cert, der, err := opts.CA.ServingCert("127.0.0.1", "localhost")
	if err != nil {
		ln.Close()
		return nil, err
	}
	sum := sha256.Sum256(der)
	b.CertSHA256 = hex.EncodeToString(sum[:])
	b.ln = ln
	b.URL = "https://" + ln.Addr().String()
	b.srv = &http.Server{Handler: b.routes(), ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsConfig(cert),
		// Clients that refuse the certificate are what some tests are about.
		ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = b.srv.ServeTLS(ln, "", "") }()
	return b, nil
}

// Close stops the server and removes downloaded media it owns.
func (b *BMC) Close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	_ = b.srv.Close()
	b.downloads.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tmpDir != "" {
		os.RemoveAll(b.tmpDir)
		b.tmpDir = ""
	}
}

// mediaDir is where a download goes; the default folder is made at the
// first insert, so the many BMCs of a benchmark leave nothing on disk.
// The caller calls b.downloads.Done when its download ends.
func (b *BMC) mediaDir() (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return "", errors.New("the BMC is shutting down")
	}
	if b.opts.MediaDir == "" && b.tmpDir == "" {
		dir, err := os.MkdirTemp("", "redfishemu-")
		if err != nil {
			return "", err
		}
		b.tmpDir = dir
	}
	b.downloads.Add(1)
	if b.opts.MediaDir != "" {
		return b.opts.MediaDir, nil
	}
	return b.tmpDir, nil
}

// Requests is how many HTTP requests the BMC has served.
func (b *BMC) Requests() int64 { return b.requests.Load() }

// Sessions is how many sessions are open.
func (b *BMC) Sessions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sessions)
}

// ExpireSessions ends every session, as a BMC's idle SessionTimeout or a
// reboot of the BMC does: clients get 401 until they log in again.
func (b *BMC) ExpireSessions() {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.sessions)
}

// BootOverride is the current boot override (target, enabled).
func (b *BMC) BootOverride() (target, enabled string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.boot.Target, b.boot.Enabled
}

// Image is the URL of the inserted virtual media ("" when none).
func (b *BMC) Image() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.image
}

const (
	root       = "/redfish/v1/"
	sessionsP  = "/redfish/v1/SessionService/Sessions"
	systemP    = "/redfish/v1/Systems/1"
	managerP   = "/redfish/v1/Managers/BMC"
	vmediaP    = managerP + "/VirtualMedia"
	cdP        = vmediaP + "/CD1"
	resetP     = systemP + "/Actions/ComputerSystem.Reset"
	insertP    = cdP + "/Actions/VirtualMedia.InsertMedia"
	ejectP     = cdP + "/Actions/VirtualMedia.EjectMedia"
	odataJSON  = "application/json;charset=utf-8"
	maxBody    = 64 << 10
	copyrightN = "Emulated by edgefleet test/redfishemu"
)

func (b *BMC) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /redfish", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"v1": root})
	})
	mux.HandleFunc("GET /redfish/v1", b.serviceRoot)
	mux.HandleFunc("GET /redfish/v1/{$}", b.serviceRoot)
	mux.HandleFunc("GET /redfish/v1/odata", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"@odata.context": "/redfish/v1/$metadata", "value": []any{
			map[string]any{"name": "Service", "kind": "Singleton", "url": root},
			map[string]any{"name": "Systems", "kind": "Singleton", "url": "/redfish/v1/Systems"},
			map[string]any{"name": "Managers", "kind": "Singleton", "url": "/redfish/v1/Managers"},
			map[string]any{"name": "SessionService", "kind": "Singleton", "url": "/redfish/v1/SessionService"},
		}})
	})
	mux.HandleFunc("POST "+sessionsP, b.login)
	auth := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, b.authenticated(h)) }
	auth("GET /redfish/v1/SessionService", b.sessionService)
	auth("GET "+sessionsP, b.sessionList)
	auth("GET "+sessionsP+"/{id}", b.session)
	auth("DELETE "+sessionsP+"/{id}", b.logout)
	auth("GET /redfish/v1/Systems", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, collection("/redfish/v1/Systems", "#ComputerSystemCollection.ComputerSystemCollection", "Computer System Collection", systemP))
	})
	auth("GET "+systemP, b.system)
	auth("PATCH "+systemP, b.patchSystem)
	auth("POST "+resetP, b.reset)
	auth("GET /redfish/v1/Managers", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, collection("/redfish/v1/Managers", "#ManagerCollection.ManagerCollection", "Manager Collection", managerP))
	})
	auth("GET "+managerP, b.manager)
	auth("GET "+vmediaP, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, collection(vmediaP, "#VirtualMediaCollection.VirtualMediaCollection", "Virtual Media Services", cdP))
	})
	auth("GET "+cdP, b.virtualMedia)
	auth("POST "+insertP, b.insert)
	auth("POST "+ejectP, b.eject)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.requests.Add(1)
		defer func() {
			// A bug in the emulator is an answer, not a dropped connection.
			if p := recover(); p != nil {
				redfishError(w, http.StatusInternalServerError, "Base.1.18.InternalError", fmt.Sprintf("redfishemu panicked: %v", p))
			}
		}()
		w.Header().Set("OData-Version", "4.0")
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if _, pattern := mux.Handler(r); pattern == "" {
			redfishError(w, http.StatusNotFound, "Base.1.18.ResourceNotFound", "The requested resource of type "+r.URL.Path+" was not found.")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func collection(id, typ, name string, members ...string) map[string]any {
	m := make([]any, 0, len(members))
	for _, s := range members {
		m = append(m, map[string]any{"@odata.id": s})
	}
	return map[string]any{"@odata.id": id, "@odata.type": typ, "Name": name, "Members": m, "Members@odata.count": len(m)}
}

func (b *BMC) serviceRoot(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id":      root,
		"@odata.type":    "#ServiceRoot.v1_17_0.ServiceRoot",
		"Id":             "RootService",
		"Name":           "Root Service",
		"RedfishVersion": "1.18.0",
		"UUID":           b.opts.UUID,
		"Product":        "edgefleet Redfish emulator",
		"Systems":        map[string]any{"@odata.id": "/redfish/v1/Systems"},
		"Managers":       map[string]any{"@odata.id": "/redfish/v1/Managers"},
		"SessionService": map[string]any{"@odata.id": "/redfish/v1/SessionService"},
		"Links":          map[string]any{"Sessions": map[string]any{"@odata.id": sessionsP}},
	})
}

// authenticated accepts a session token or HTTP Basic (DSP0266 13.3).
func (b *BMC) authenticated(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok := r.Header.Get("X-Auth-Token"); tok != "" {
			b.mu.Lock()
			_, ok := b.sessions[tok]
			b.mu.Unlock()
			if ok {
				h(w, r)
				return
			}
		} else if u, p, ok := r.BasicAuth(); ok && b.credentialsOK(u, p) {
			h(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="edgefleet redfishemu"`)
		redfishError(w, http.StatusUnauthorized, "Base.1.18.NoValidSession", "There is no valid session established with the implementation.")
	})
}

func (b *BMC) credentialsOK(u, p string) bool {
	uok := subtle.ConstantTimeCompare([]byte(u), []byte(b.opts.Username)) == 1
	pok := subtle.ConstantTimeCompare([]byte(p), []byte(b.opts.Password)) == 1
	return uok && pok
}

func (b *BMC) login(w http.ResponseWriter, r *http.Request) {
	var in struct{ UserName, Password string }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.UserName == "" {
		redfishError(w, http.StatusBadRequest, "Base.1.18.MalformedJSON", "The request body submitted was malformed JSON or lacked UserName and Password.")
		return
	}
	if !b.credentialsOK(in.UserName, in.Password) {
		redfishError(w, http.StatusUnauthorized, "Base.1.18.ResourceAtUriUnauthorized", "While accessing the resource at "+sessionsP+", the service received an authorization error.")
		return
	}
	tok := randomHex(16)
	b.mu.Lock()
	b.nextID++
	id := fmt.Sprint(b.nextID)
	b.sessions[tok] = id
	b.mu.Unlock()
	w.Header().Set("X-Auth-Token", tok)
	w.Header().Set("Location", sessionsP+"/"+id)
	writeJSON(w, http.StatusCreated, b.sessionBody(id, in.UserName))
}

func (b *BMC) sessionBody(id, user string) map[string]any {
	return map[string]any{"@odata.id": sessionsP + "/" + id, "@odata.type": "#Session.v1_7_0.Session", "Id": id, "Name": "User Session", "UserName": user, "Password": nil}
}

func (b *BMC) sessionService(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"@odata.id": "/redfish/v1/SessionService", "@odata.type": "#SessionService.v1_1_9.SessionService",
		"Id": "SessionService", "Name": "Session Service", "ServiceEnabled": true, "SessionTimeout": 1800,
		"Sessions": map[string]any{"@odata.id": sessionsP}})
}

func (b *BMC) sessionIDs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ids []string
	for _, id := range b.sessions {
		ids = append(ids, sessionsP+"/"+id)
	}
	return ids
}

func (b *BMC) sessionList(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, collection(sessionsP, "#SessionCollection.SessionCollection", "Session Collection", b.sessionIDs()...))
}

func (b *BMC) findSession(id string) (string, bool) {
	for tok, sid := range b.sessions {
		if sid == id {
			return tok, true
		}
	}
	return "", false
}

func (b *BMC) session(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	_, ok := b.findSession(r.PathValue("id"))
	b.mu.Unlock()
	if !ok {
		redfishError(w, http.StatusNotFound, "Base.1.18.ResourceNotFound", "The session was not found.")
		return
	}
	writeJSON(w, http.StatusOK, b.sessionBody(r.PathValue("id"), b.opts.Username))
}

func (b *BMC) logout(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	tok, ok := b.findSession(r.PathValue("id"))
	delete(b.sessions, tok)
	b.mu.Unlock()
	if !ok {
		redfishError(w, http.StatusNotFound, "Base.1.18.ResourceNotFound", "The session was not found.")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// state is the system's ETag input: power and boot override.
func (b *BMC) systemETag(on bool) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return fmt.Sprintf(`"%d-%t-%s-%s"`, b.etagSeq, on, b.boot.Target, b.boot.Enabled)
}

func (b *BMC) system(w http.ResponseWriter, _ *http.Request) {
	on := b.Machine.PoweredOn()
	power := "Off"
	if on {
		power = "On"
	}
	target, enabled := b.BootOverride()
	w.Header().Set("ETag", b.systemETag(on))
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id":    systemP,
		"@odata.type":  "#ComputerSystem.v1_20_0.ComputerSystem",
		"Id":           "1",
		"Name":         "System",
		"SystemType":   "Physical",
		"Manufacturer": b.opts.Manufacturer,
		"Model":        b.opts.Model,
		"SerialNumber": b.opts.SerialNumber,
		"UUID":         b.opts.UUID,
		"PowerState":   power,
		"Status":       map[string]any{"State": "Enabled", "Health": "OK"},
		"Boot": map[string]any{
			"BootSourceOverrideTarget":                          target,
			"BootSourceOverrideTarget@Redfish.AllowableValues":  []string{"None", "Pxe", "Cd", "Hdd"},
			"BootSourceOverrideEnabled":                         enabled,
			"BootSourceOverrideEnabled@Redfish.AllowableValues": []string{"Disabled", "Once", "Continuous"},
		},
		"Links": map[string]any{"ManagedBy": []any{map[string]any{"@odata.id": managerP}}},
		"Actions": map[string]any{"#ComputerSystem.Reset": map[string]any{
			"target":                            resetP,
			"ResetType@Redfish.AllowableValues": []string{"On", "ForceOff", "GracefulShutdown", "ForceRestart"},
		}},
	})
}

func (b *BMC) patchSystem(w http.ResponseWriter, r *http.Request) {
	if m := r.Header.Get("If-Match"); m != "" && m != "*" && m != b.systemETag(b.Machine.PoweredOn()) {
		redfishError(w, http.StatusPreconditionFailed, "Base.1.18.PreconditionFailed", "The ETag supplied did not match the ETag required to change this resource.")
		return
	}
	var in map[string]json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		redfishError(w, http.StatusBadRequest, "Base.1.18.MalformedJSON", "The request body submitted was malformed JSON.")
		return
	}
	for k := range in {
		if k != "Boot" {
			redfishError(w, http.StatusBadRequest, "Base.1.18.PropertyNotWritable", "The property "+k+" is a read-only property and cannot be assigned a value.")
			return
		}
	}
	var boot struct {
		BootSourceOverrideTarget  *string
		BootSourceOverrideEnabled *string
		BootSourceOverrideMode    *string
	}
	if err := json.Unmarshal(in["Boot"], &boot); err != nil {
		redfishError(w, http.StatusBadRequest, "Base.1.18.PropertyValueTypeError", "The value for the property Boot is of a different type than the property can accept.")
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	next := b.boot
	if v := boot.BootSourceOverrideTarget; v != nil {
		if !oneOf(*v, "None", "Pxe", "Cd", "Hdd") {
			redfishError(w, http.StatusBadRequest, "Base.1.18.PropertyValueNotInList", "The value "+*v+" for the property BootSourceOverrideTarget is not in the list of acceptable values.")
			return
		}
		next.Target = *v
	}
	if v := boot.BootSourceOverrideEnabled; v != nil {
		if !oneOf(*v, "Disabled", "Once", "Continuous") {
			redfishError(w, http.StatusBadRequest, "Base.1.18.PropertyValueNotInList", "The value "+*v+" for the property BootSourceOverrideEnabled is not in the list of acceptable values.")
			return
		}
		next.Enabled = *v
	}
	b.boot = next
	b.etagSeq++
	w.WriteHeader(http.StatusNoContent)
}

func (b *BMC) reset(w http.ResponseWriter, r *http.Request) {
	var in struct{ ResetType string }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		redfishError(w, http.StatusBadRequest, "Base.1.18.MalformedJSON", "The request body submitted was malformed JSON.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	var err error
	switch in.ResetType {
	case "On":
		if b.Machine.PoweredOn() {
			// DSP0266 7.11: a no-op answers 200 with NoOperation.
			writeJSON(w, http.StatusOK, messageBody("Base.1.18.NoOperation", "The requested operation will not perform any changes on the service."))
			return
		}
		err = b.Machine.PowerOn(ctx, b.consumeBootOnce())
	case "ForceOff":
		err = b.Machine.ForceOff(ctx)
	case "GracefulShutdown":
		err = b.Machine.GracefulShutdown(ctx)
	case "ForceRestart":
		err = b.Machine.ForceRestart(ctx)
	default:
		redfishError(w, http.StatusBadRequest, "Base.1.18.ActionParameterValueNotInList", "The value "+in.ResetType+" for the parameter ResetType in the action ComputerSystem.Reset is not in the list of acceptable values.")
		return
	}
	if err != nil {
		redfishError(w, http.StatusInternalServerError, "Base.1.18.InternalError", "The request failed due to an internal service error: "+err.Error())
		return
	}
	b.mu.Lock()
	b.etagSeq++
	b.mu.Unlock()
	writeJSON(w, http.StatusOK, messageBody("Base.1.18.Success", "The request completed successfully."))
}

// consumeBootOnce returns the one-time override target and disables it
// (BootSourceOverrideEnabled Once reverts to Disabled once used).
func (b *BMC) consumeBootOnce() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.boot.Enabled {
	case "Once":
		t := b.boot.Target
		b.boot = bootOverride{Target: "None", Enabled: "Disabled"}
		return t
	case "Continuous":
		return b.boot.Target
	}
	return ""
}

func (b *BMC) manager(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id": managerP, "@odata.type": "#Manager.v1_19_0.Manager", "Id": "BMC", "Name": "Manager",
		"ManagerType": "BMC", "FirmwareVersion": "redfishemu-1", "Model": "edgefleet emulated BMC",
		"Status":       map[string]any{"State": "Enabled", "Health": "OK"},
		"VirtualMedia": map[string]any{"@odata.id": vmediaP},
		"Links":        map[string]any{"ManagerForServers": []any{map[string]any{"@odata.id": systemP}}},
	})
}

func (b *BMC) virtualMedia(w http.ResponseWriter, _ *http.Request) {
	img := b.Image()
	var image, name any
	if img != "" {
		image, name = img, path.Base(img)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id": cdP, "@odata.type": "#VirtualMedia.v1_6_0.VirtualMedia", "Id": "CD1", "Name": "Virtual CD",
		"MediaTypes": []string{"CD", "DVD"}, "Image": image, "ImageName": name, "Inserted": img != "",
		"WriteProtected": true, "ConnectedVia": connectedVia(img),
		"Actions": map[string]any{
			"#VirtualMedia.InsertMedia": map[string]any{"target": insertP},
			"#VirtualMedia.EjectMedia":  map[string]any{"target": ejectP},
		},
	})
}

func connectedVia(img string) string {
	if img == "" {
		return "NotConnected"
	}
	return "URI"
}

func (b *BMC) insert(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Image    string
		Inserted *bool
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Image == "" {
		redfishError(w, http.StatusBadRequest, "Base.1.18.ActionParameterMissing", "The action VirtualMedia.InsertMedia requires the parameter Image to be present in the request body.")
		return
	}
	if b.Image() != "" {
		// The schema says a service should reject an insert while Image is
		// set: eject first.
		redfishError(w, http.StatusConflict, "Base.1.18.ResourceInUse", "The change to the requested resource failed because the resource is in use or in transition: eject the inserted media first.")
		return
	}
	u, err := url.Parse(in.Image)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		redfishError(w, http.StatusBadRequest, "Base.1.18.ActionParameterValueFormatError", "The value for the parameter Image in the action VirtualMedia.InsertMedia is of a different format than the parameter can accept.")
		return
	}
	file, err := b.download(r.Context(), in.Image)
	if err != nil {
		redfishError(w, http.StatusBadRequest, "Base.1.18.ResourceAtUriUnauthorized", "While accessing the resource at "+u.Redacted()+", the service received an error: "+err.Error())
		return
	}
	if err := b.Machine.InsertMedia(r.Context(), file); err != nil {
		os.Remove(file)
		redfishError(w, http.StatusInternalServerError, "Base.1.18.InternalError", "The request failed due to an internal service error: "+err.Error())
		return
	}
	b.mu.Lock()
	b.image, b.imgFile = in.Image, file
	b.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (b *BMC) download(ctx context.Context, image string) (string, error) {
	c := b.opts.MediaClient
	if c == nil {
		c = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, image, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %s", resp.Status)
	}
	dir, err := b.mediaDir()
	if err != nil {
		return "", err
	}
	defer b.downloads.Done()
	f, err := os.CreateTemp(dir, "media-*.iso")
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return filepath.Clean(f.Name()), nil
}

func (b *BMC) eject(w http.ResponseWriter, r *http.Request) {
	if err := b.Machine.EjectMedia(r.Context()); err != nil {
		redfishError(w, http.StatusInternalServerError, "Base.1.18.InternalError", "The request failed due to an internal service error: "+err.Error())
		return
	}
	b.mu.Lock()
	file := b.imgFile
	b.image, b.imgFile = "", ""
	b.mu.Unlock()
	if file != "" {
		os.Remove(file)
	}
	w.WriteHeader(http.StatusNoContent)
}

func oneOf(v string, allowed ...string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	return false
}

func messageBody(id, msg string) map[string]any {
	return map[string]any{"@Message.ExtendedInfo": []any{map[string]any{
		"@odata.type": "#Message.v1_1_2.Message", "MessageId": id, "Message": msg, "Severity": "OK", "MessageSeverity": "OK", "Resolution": "None"}}}
}

// redfishError writes DSP0266 8.6's error body.
func redfishError(w http.ResponseWriter, status int, id, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"code": id, "message": msg,
		"@Message.ExtendedInfo": []any{map[string]any{
			"@odata.type": "#Message.v1_1_2.Message", "MessageId": id, "Message": msg, "MessageSeverity": "Critical", "Severity": "Critical", "Resolution": "See the message."}},
	}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", odataJSON)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randomHex(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	return hex.EncodeToString(buf)
}
