package osinstall

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
)

// InventoryOS maps the disk's state to MachineInventory status.os and the
// OSReady and RolledBack conditions.
func InventoryOS(st *Status) (machinesv1.OSStatus, []metav1.Condition) {
	slot := st.Booted()
	os := machinesv1.OSStatus{Image: slot.Image, Digest: slot.Digest, Name: slot.Name, Version: slot.Version,
		ActiveSlot: machinesv1.OSSlot(st.ActiveSlot), BootedSlot: machinesv1.OSSlot(st.BootedSlot), TrySlot: machinesv1.OSSlot(st.TrySlot)}
	ready := metav1.Condition{Type: machinesv1.OSReadyCondition, Status: metav1.ConditionTrue, Reason: machinesv1.OSInstalledReason,
		Message: fmt.Sprintf("running %s %s from confirmed slot %s", slot.Name, slot.Version, st.ActiveSlot)}
	rolled := metav1.Condition{Type: machinesv1.RolledBackCondition, Status: metav1.ConditionFalse, Reason: machinesv1.NoRollbackReason, Message: "the last upgrade was not rolled back"}
	if lu := st.LastUpgrade; lu != nil {
		os.LastUpgrade = &machinesv1.OSUpgradeStatus{Image: lu.Image, Version: lu.Version, Slot: machinesv1.OSSlot(lu.Slot), Result: machinesv1.OSUpgradeResult(lu.Result), Time: metav1.NewTime(lu.Time), Message: lu.Message}
		switch lu.Result {
		case UpgradePending:
			ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, machinesv1.UpgradePendingReason, lu.Message
		case UpgradeFailed:
			ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, machinesv1.UpgradeFailedReason, "upgrade to "+lu.Image+" failed: "+lu.Message
		case UpgradeRolledBack:
			ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, machinesv1.UpgradeRolledBackReason, lu.Message
			rolled.Status, rolled.Reason, rolled.Message = metav1.ConditionTrue, machinesv1.UpgradeRolledBackReason, lu.Message
		}
	}
	if st.BootedSlot == SlotRecovery {
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, machinesv1.RecoveryBootedReason, "the machine runs its recovery image"
	}
	return os, []metav1.Condition{ready, rolled}
}

// ReportStatus writes status.os and the OS conditions of the machine's own
// MachineInventory with the machine's credential (kubeconfig from
// registration). It sends a merge patch of only those fields, guarded by the
// resourceVersion it read, so it never overwrites other writers' fields or
// conditions (status.plan, Ready, Registered); a conflict reads again.
func ReportStatus(ctx context.Context, kubeconfig []byte, namespace, name string, st *Status) error {
	c, err := newKubeClient(kubeconfig)
	if err != nil {
		return err
	}
	path := fmt.Sprintf("/apis/%s/%s/namespaces/%s/machineinventories/%s", machinesv1.GroupVersion.Group, machinesv1.GroupVersion.Version, url.PathEscape(namespace), url.PathEscape(name))
	osStatus, conds := InventoryOS(st)
	var last error
	for range 5 {
		inv := &machinesv1.MachineInventory{}
		if err := c.do(ctx, http.MethodGet, path, "", nil, inv); err != nil {
			return err
		}
		for _, cond := range conds {
			cond.ObservedGeneration = inv.Generation
			meta.SetStatusCondition(&inv.Status.Conditions, cond)
		}
		patch := map[string]any{
			"metadata": map[string]any{"resourceVersion": inv.ResourceVersion},
			"status":   map[string]any{"os": mergePatchOS(osStatus), "conditions": inv.Status.Conditions},
		}
		body, _ := json.Marshal(patch)
		last = c.do(ctx, http.MethodPatch, path+"/status", "application/merge-patch+json", body, nil)
		var se *statusError
		if errors.As(last, &se) && se.code == http.StatusConflict {
			continue
		}
		return last
	}
	return last
}

// mergePatchOS is status.os as a JSON merge patch: fields that are empty now
// are sent as null, or the patch would keep their old values (a cleared
// trySlot, an old upgrade's message).
func mergePatchOS(o machinesv1.OSStatus) map[string]any {
	m := map[string]any{"image": nil, "digest": nil, "name": nil, "version": nil, "activeSlot": nil, "bootedSlot": nil, "trySlot": nil, "lastUpgrade": nil}
	b, _ := json.Marshal(o)
	_ = json.Unmarshal(b, &m)
	if o.LastUpgrade != nil {
		lu := map[string]any{"image": nil, "version": nil, "slot": nil, "result": nil, "time": nil, "message": nil}
		b, _ := json.Marshal(o.LastUpgrade)
		_ = json.Unmarshal(b, &lu)
		m["lastUpgrade"] = lu
	}
	return m
}

type kubeClient struct {
	server, token string
	http          *http.Client
}

type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("the manager answered %d: %s", e.code, e.msg)
}

// newKubeClient reads the kubeconfig the manager issued at registration
// (one cluster with CA data, one bearer token).
func newKubeClient(kubeconfig []byte) (*kubeClient, error) {
	var kc struct {
		Clusters []struct {
			Cluster struct {
				Server string `json:"server"`
				CAData []byte `json:"certificate-authority-data"`
			} `json:"cluster"`
		} `json:"clusters"`
		Users []struct {
			User struct {
				Token string `json:"token"`
			} `json:"user"`
		} `json:"users"`
	}
	if err := yaml.Unmarshal(kubeconfig, &kc); err != nil {
		return nil, fmt.Errorf("the machine's kubeconfig: %w", err)
	}
	if len(kc.Clusters) != 1 || len(kc.Users) != 1 || kc.Users[0].User.Token == "" {
		return nil, errors.New("the machine's kubeconfig has no cluster or token: register again")
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if ca := kc.Clusters[0].Cluster.CAData; len(ca) > 0 {
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(ca) {
			return nil, errors.New("the machine's kubeconfig has unusable CA data")
		}
	}
	return &kubeClient{server: strings.TrimSuffix(kc.Clusters[0].Cluster.Server, "/"), token: kc.Users[0].User.Token,
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}}, nil
}

func (c *kubeClient) do(ctx context.Context, method, path, contentType string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.server+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("reaching the manager: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var st metav1.Status
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &st) == nil && st.Message != "" {
			msg = st.Message
		}
		return &statusError{code: resp.StatusCode, msg: msg}
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}
