package osinstall

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// GRUB environment keys (contract §4).
const (
	EnvActiveSlot = "active_slot"
	EnvTrySlot    = "try_slot"
	EnvTryCount   = "try_count"
	EnvRolledBack = "rolled_back"
	// EnvNextEntry boots a menu entry once (reset boots recovery with it).
	EnvNextEntry = "next_entry"
)

// Slots and files on EF_STATE / EF_RECOVERY.
const (
	SlotA        = "a"
	SlotB        = "b"
	SlotRecovery = "recovery"

	// DefaultTries is how many boots a new slot gets before GRUB falls
	// back to the active one.
	DefaultTries = 3
	maxTries     = 9

	GrubDir  = "grub"
	GrubCfg  = "grub/grub.cfg"
	GrubEnv  = "grub/grubenv"
	EFIBoot  = "EFI/BOOT/BOOTX64.EFI"
	slotMeta = "images/%s.json"
)

// SlotImage is where a slot's root image lives on its partition.
func SlotImage(slot string) string { return "images/" + slot + ".squashfs" }

// SlotBootDir holds a slot's kernel and initrd.
func SlotBootDir(slot string) string { return "boot/" + slot }

// KernelArgs are the boot arguments of a slot (contract §3).
func KernelArgs(slot string) string {
	label, mode := LabelState, "disk"
	if slot == SlotRecovery {
		label, mode = LabelRecovery, "recovery"
	}
	// panic=5: a kernel that cannot mount its root reboots, so a broken slot
	// uses up its tries instead of hanging.
	return fmt.Sprintf("edgefleet.root=%s:/%s edgefleet.mode=%s edgefleet.slot=%s console=tty1 console=ttyS0 panic=5 no_timer_check", label, SlotImage(slot), mode, slot)
}

// GrubConfig is grub/grub.cfg on EF_STATE. The EFI binary's embedded config
// sets $root to EF_STATE before loading it. GRUB has no arithmetic, so
// try_count counts down through string comparisons.
func GrubConfig() string {
	var b strings.Builder
	b.WriteString(`# Written by edgefleet-node install; boot assessment per docs/os/install.md.
set timeout=1
set env=($root)/grub/grubenv
load_env --file $env
if [ "$active_slot" != "b" ]; then set active_slot=a; fi
set boot_slot=$active_slot
if [ -n "$next_entry" ]; then
  set boot_slot=$next_entry
  set next_entry=
  save_env --file $env next_entry
elif [ -n "$try_slot" ]; then
`)
	for i := maxTries; i >= 1; i-- {
		kw := "  elif"
		if i == maxTries {
			kw = "  if"
		}
		fmt.Fprintf(&b, "%s [ \"$try_count\" = \"%d\" ]; then set try_count=%d; set boot_slot=$try_slot\n", kw, i, i-1)
	}
	b.WriteString(`  else
    set rolled_back=$try_slot
    set try_slot=
    set try_count=
  fi
  save_env --file $env try_slot try_count rolled_back
fi
echo "edgefleet-grub: booting slot $boot_slot"
set default=$boot_slot
set fallback=recovery
`)
	for _, s := range []string{SlotA, SlotB} {
		fmt.Fprintf(&b, `menuentry "edgefleet slot %[1]s" --id %[1]s {
  linux ($root)/%[2]s/vmlinuz %[3]s
  initrd ($root)/%[2]s/initrd
}
`, s, SlotBootDir(s), KernelArgs(s))
	}
	fmt.Fprintf(&b, `menuentry "edgefleet recovery" --id recovery {
  search --no-floppy --label %s --set=root
  linux ($root)/%[2]s/vmlinuz %[3]s
  initrd ($root)/%[2]s/initrd
}
`, LabelRecovery, SlotBootDir(SlotRecovery), KernelArgs(SlotRecovery))
	return b.String()
}

// Env is the GRUB environment block.
type Env map[string]string

// ReadEnv reads a grubenv file.
func ReadEnv(ctx context.Context, file string) (Env, error) {
	ed, err := lookTool("grub-editenv", "grub-common")
	if err != nil {
		return nil, err
	}
	out, err := runTool(ctx, ed, file, "list")
	if err != nil {
		return nil, err
	}
	env := Env{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env, nil
}

// WriteEnv replaces a grubenv file: written beside it and renamed, so a
// power cut leaves the old block or the new one, never a torn one.
func WriteEnv(ctx context.Context, file string, env Env) error {
	ed, err := lookTool("grub-editenv", "grub-common")
	if err != nil {
		return err
	}
	tmp := file + ".new"
	os.Remove(tmp)
	if _, err := runTool(ctx, ed, tmp, "create"); err != nil {
		return err
	}
	var kv []string
	for _, k := range []string{EnvActiveSlot, EnvTrySlot, EnvTryCount, EnvRolledBack, EnvNextEntry} {
		kv = append(kv, k+"="+env[k])
	}
	for k, v := range env {
		switch k {
		case EnvActiveSlot, EnvTrySlot, EnvTryCount, EnvRolledBack, EnvNextEntry:
		default:
			kv = append(kv, k+"="+v)
		}
	}
	if _, err := runTool(ctx, ed, append([]string{tmp, "set"}, kv...)...); err != nil {
		return err
	}
	if err := fsyncFile(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, file); err != nil {
		return err
	}
	return fsyncDir(filepath.Dir(file))
}

// UpdateEnv reads, changes and writes the environment.
func UpdateEnv(ctx context.Context, file string, f func(Env)) (Env, error) {
	env, err := ReadEnv(ctx, file)
	if err != nil {
		return nil, err
	}
	f(env)
	return env, WriteEnv(ctx, file, env)
}

func fsyncFile(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func fsyncDir(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// OtherSlot is the passive slot of active.
func OtherSlot(active string) string {
	if active == SlotB {
		return SlotA
	}
	return SlotB
}
