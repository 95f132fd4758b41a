package seedimage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

// Files on config-only media, and the names images are downloaded as.
const (
	CloudConfigFile = "cloud-config.yaml"
	ImageFile       = "seed.iso"
	RawImageFile    = "seed.img"
)

// ImageFileName is the download name of an image of kind (KindISO or KindRaw).
func ImageFileName(kind string) string {
	if kind == KindRaw {
		return RawImageFile
	}
	return ImageFile
}

// fileExts are the extensions an image is stored under in Dir
// (<token>.<ext>, with <token>.<ext>.sha256 next to it).
var fileExts = map[string]string{ImageFile: "iso", RawImageFile: "img"}

// StoredPath is where in dir the image file built under token is kept.
func StoredPath(dir, token, file string) string {
	return filepath.Join(dir, token+"."+fileExts[file])
}

// ErrNotReady: the MachineRegistration or its token Secret is not there
// yet; building waits for them.
var ErrNotReady = errors.New("waiting for the MachineRegistration and its registration token Secret")

// InvalidSpecError is a spec that cannot be built as written.
type InvalidSpecError struct{ Msg string }

func (e InvalidSpecError) Error() string { return e.Msg }

// MediaFiles are the node config (registration URL, CA, auth policy) and the
// SeedImage's cloud-config.
func MediaFiles(ctx context.Context, c client.Reader, caPEM []byte, si *machinesv1.SeedImage) (map[string][]byte, error) {
	ref := si.Spec.RegistrationRef
	ns := si.Namespace
	// Namespaces are tenants and the media carries the registration's URL,
	// which is its credential: a SeedImage may only use a registration of
	// its own namespace. Refused before any read, so the message says
	// nothing about the other namespace.
	if ref.Namespace != "" && ref.Namespace != si.Namespace {
		return nil, InvalidSpecError{fmt.Sprintf("spec.registrationRef.namespace %q is not the SeedImage's namespace %q: a SeedImage can only use a MachineRegistration in its own namespace; leave registrationRef.namespace empty and create the SeedImage in the registration's namespace", ref.Namespace, si.Namespace)}
	}
	mr := &machinesv1.MachineRegistration{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, mr); err != nil {
		return nil, fmt.Errorf("%w: MachineRegistration %s/%s: %v", ErrNotReady, ns, ref.Name, err)
	}
	// The URL carries the registration token, which lives in the
	// registration's Secret only.
	regURL, err := machineregistration.RegistrationURLFromSecret(ctx, c, mr)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotReady, err)
	}
	files, err := NodeConfigFiles(mr, regURL, caPEM)
	if err != nil {
		return nil, err
	}
	if cc := si.Spec.CloudConfig; cc != nil && len(cc.Raw) > 0 {
		y, err := yaml.JSONToYAML(cc.Raw)
		if err != nil {
			return nil, fmt.Errorf("spec.cloud-config: %w", err)
		}
		files[CloudConfigFile] = append([]byte("#cloud-config\n"), y...)
	}
	return files, nil
}

// NodeConfigFiles is the edgefleet-node config for machines of mr, which
// register at regURL.
func NodeConfigFiles(mr *machinesv1.MachineRegistration, regURL string, caPEM []byte) (map[string][]byte, error) {
	reg := machinereg.NodeRegistration{URL: regURL, CACert: string(caPEM)}
	norm, err := mr.Spec.Config.Normalized()
	if err != nil {
		return nil, err
	}
	if rc := norm.Registration; rc != nil {
		reg.Auth = string(rc.Auth)
		for _, f := range rc.Fallback {
			reg.Fallback = append(reg.Fallback, string(f))
		}
		reg.EmulateTPM, reg.EmulatedTPMSeed, reg.NoSMBIOS = rc.EmulateTPM, rc.EmulatedTPMSeed, rc.NoSMBIOS
	}
	data, err := yaml.Marshal(&machinereg.NodeConfig{Registration: reg})
	if err != nil {
		return nil, err
	}
	return map[string][]byte{machinereg.SeedConfigFile: data}, nil
}

// DownloadURL is where the image file built under token is served.
func DownloadURL(external *url.URL, token, file string) string {
	u := *external
	u.Path = DownloadPathPrefix + token + "/" + file
	return u.String()
}

// StoredFile is the path in dir of the image named by the status URL ("" when
// none).
func StoredFile(dir string, si *machinesv1.SeedImage) string {
	rest := si.Status.DownloadURL
	i := strings.Index(rest, DownloadPathPrefix)
	if i < 0 {
		return ""
	}
	tok, file, _ := strings.Cut(rest[i+len(DownloadPathPrefix):], "/")
	ext, ok := fileExts[file]
	if !validToken(tok) || !ok {
		return ""
	}
	return filepath.Join(dir, tok+"."+ext)
}

// NewDownloadToken names a build: the only credential of its download URL.
func NewDownloadToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func validToken(s string) bool {
	if len(s) != 48 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
