package bmc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stmcginnis/gofish/schemas"
)

// System is what the BMC says about the machine.
type System struct {
	ID, Manufacturer, Model, SerialNumber, UUID string
	// PowerState is On, Off, PoweringOn or PoweringOff as reported.
	PowerState string
	sys        *schemas.ComputerSystem
}

// System reads the managed system: the one at the address's path, or the
// only one of the service.
func (c *Conn) System() (*System, error) {
	var cs *schemas.ComputerSystem
	if c.system != "" {
		s, err := schemas.GetComputerSystem(c.api, c.system)
		if err != nil {
			e := classify(err, c.tr, "reading "+c.system)
			if be, ok := e.(*Error); ok && be.Status == 404 {
				be.Kind = KindSystemNotFound
			}
			return nil, e
		}
		cs = s
	} else {
		all, err := c.api.Service.Systems()
		if err != nil {
			return nil, classify(err, c.tr, "listing systems")
		}
		if len(all) != 1 {
			ids := make([]string, 0, len(all))
			for _, s := range all {
				ids = append(ids, s.ODataID)
			}
			return nil, &Error{Kind: KindSystemNotFound, Msg: fmt.Sprintf("the BMC manages %d systems (%s): add the system's path to the address, e.g. https://host/redfish/v1/Systems/<id>", len(all), strings.Join(ids, ", "))}
		}
		cs = all[0]
		c.system = cs.ODataID
		if c.remember != nil {
			c.remember(cs.ODataID)
		}
	}
	return &System{ID: cs.ODataID, Manufacturer: cs.Manufacturer, Model: cs.Model, SerialNumber: strings.TrimSpace(cs.SerialNumber),
		UUID: strings.ToLower(strings.TrimSpace(cs.UUID)), PowerState: string(cs.PowerState), sys: cs}, nil
}

// Reset sends ComputerSystem.Reset with typ (On, ForceOff,
// GracefulShutdown, ForceRestart).
func (c *Conn) Reset(s *System, typ string) error {
	_, err := s.sys.Reset(schemas.ResetType(typ))
	return classify(err, c.tr, "ComputerSystem.Reset "+typ)
}

// WaitPower re-reads the system until its power state is want, or ctx or
// timeout ends (a 2xx is not the physical effect).
func (c *Conn) WaitPower(ctx context.Context, want string, timeout time.Duration) (*System, error) {
	deadline := time.Now().Add(timeout)
	for {
		s, err := c.System()
		if err != nil {
			return nil, err
		}
		if s.PowerState == want {
			return s, nil
		}
		if time.Now().After(deadline) {
			return s, &Error{Kind: KindRefused, Msg: fmt.Sprintf("the power state is still %s %s after the action", s.PowerState, timeout)}
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// cd finds the virtual CD: under the system (newer services) or under its
// managers (older ones), the first slot whose MediaTypes has CD or DVD.
func (c *Conn) cd(s *System) (*schemas.VirtualMedia, error) {
	media, err := s.sys.VirtualMedia()
	if err != nil {
		return nil, classify(err, c.tr, "listing the system's virtual media")
	}
	if len(media) == 0 {
		managers, err := s.sys.ManagedBy()
		if err != nil {
			return nil, classify(err, c.tr, "reading the system's managers")
		}
		for _, m := range managers {
			vm, err := m.VirtualMedia()
			if err != nil {
				return nil, classify(err, c.tr, "listing the manager's virtual media")
			}
			media = append(media, vm...)
		}
	}
	for _, m := range media {
		if slices.Contains(m.MediaTypes, schemas.CDVirtualMediaType) || slices.Contains(m.MediaTypes, schemas.DVDVirtualMediaType) {
			return m, nil
		}
	}
	return nil, &Error{Kind: KindRefused, Msg: "the BMC has no virtual CD (no VirtualMedia with MediaTypes CD or DVD)"}
}

// MediaImage is the URL in the virtual CD ("" when none is inserted).
func (c *Conn) MediaImage(s *System) (string, error) {
	m, err := c.cd(s)
	if err != nil {
		return "", err
	}
	if m.Inserted != nil && !*m.Inserted {
		return "", nil
	}
	return m.Image, nil
}

// InsertCD ejects whatever the virtual CD holds, inserts image and checks
// it is there.
func (c *Conn) InsertCD(s *System, image string) (ejected bool, err error) {
	m, err := c.cd(s)
	if err != nil {
		return false, err
	}
	if (m.Inserted != nil && *m.Inserted) || m.Image != "" {
		// Services should refuse an insert while Image is set.
		if _, err := m.EjectMedia(); err != nil {
			return false, classify(err, c.tr, "VirtualMedia.EjectMedia")
		}
		ejected = true
	}
	inserted, wp := true, true
	if _, err := m.InsertMedia(&schemas.VirtualMediaInsertMediaParameters{Image: image, Inserted: &inserted, WriteProtected: &wp}); err != nil {
		return ejected, classify(err, c.tr, "VirtualMedia.InsertMedia")
	}
	got, err := c.MediaImage(s)
	if err != nil {
		return ejected, err
	}
	if got != image {
		return ejected, &Error{Kind: KindRefused, Msg: "VirtualMedia.InsertMedia was accepted but the virtual CD does not hold the image"}
	}
	return ejected, nil
}

// BootOnce sets the boot override to target (Cd or Pxe) for the next
// boot only, on a freshly read system (its ETag).
func (c *Conn) BootOnce(s *System, target string) error {
	fresh, err := c.System()
	if err != nil {
		return err
	}
	err = fresh.sys.SetBoot(&schemas.Boot{BootSourceOverrideTarget: schemas.BootSource(target), BootSourceOverrideEnabled: schemas.OnceBootSourceOverrideEnabled})
	if schemas.Is412PreconditionFailed(err) {
		if fresh, err = c.System(); err == nil {
			err = fresh.sys.SetBoot(&schemas.Boot{BootSourceOverrideTarget: schemas.BootSource(target), BootSourceOverrideEnabled: schemas.OnceBootSourceOverrideEnabled})
		}
	}
	if err != nil {
		return classify(err, c.tr, "setting the one-time boot override to "+target)
	}
	after, err := c.System()
	if err != nil {
		return err
	}
	if string(after.sys.Boot.BootSourceOverrideTarget) != target || after.sys.Boot.BootSourceOverrideEnabled != schemas.OnceBootSourceOverrideEnabled {
		return &Error{Kind: KindRefused, Msg: fmt.Sprintf("the boot override reads %s/%s after setting %s/Once", after.sys.Boot.BootSourceOverrideTarget, after.sys.Boot.BootSourceOverrideEnabled, target)}
	}
	*s = *after
	return nil
}

// IsAuth reports whether err is a refused login or session.
func IsAuth(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == KindAuthentication
}
