package managedosversionchannel

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
)

// DefaultChannelPath is where Elemental's channel images keep the list.
const DefaultChannelPath = "/channel.json"

func channelPath(ch *machinesv1.ManagedOSVersionChannel) string {
	if ch.Spec.Options.Path == "" {
		return DefaultChannelPath
	}
	return "/" + strings.TrimPrefix(path.Clean("/"+ch.Spec.Options.Path), "/")
}

// fetchImage reads the channel list from a file of an OCI channel image
// (Elemental's `custom` channel images copy /channel.json out of
// themselves; the manager reads the file instead of running the image).
// The image is pulled anonymously through r.HTTP's transport, so registries
// are under the same address and scheme rules as json URLs, and only the
// one file is read, at most MaxChannelBytes of it.
func (r *Reconciler) fetchImage(ctx context.Context, ch *machinesv1.ManagedOSVersionChannel) ([]byte, error) {
	ref, err := name.ParseReference(ch.Spec.Options.Image)
	if err != nil {
		return nil, &invalidError{fmt.Errorf("spec.options.image %q is not an image reference: %v", ch.Spec.Options.Image, err)}
	}
	want := channelPath(ch)
	img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithAuth(authn.Anonymous), remote.WithTransport(r.HTTP.Transport))
	if err != nil {
		return nil, fmt.Errorf("pulling channel image: %w", err)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, &invalidError{fmt.Errorf("the image holds no file %s (set spec.options.path to where its list is)", want)}
		}
		if err != nil {
			return nil, fmt.Errorf("reading the channel image's layers: %w", err)
		}
		if "/"+strings.TrimPrefix(path.Clean("/"+h.Name), "/") != want {
			continue
		}
		if h.Typeflag != tar.TypeReg {
			return nil, &invalidError{fmt.Errorf("%s in the image is not a regular file", want)}
		}
		if h.Size > MaxChannelBytes {
			return nil, &invalidError{fmt.Errorf("%s in the image is %d bytes, more than %d", want, h.Size, MaxChannelBytes)}
		}
		body, err := io.ReadAll(io.LimitReader(tr, MaxChannelBytes+1))
		if err != nil {
			return nil, fmt.Errorf("reading %s from the channel image: %w", want, err)
		}
		return body, nil
	}
}
