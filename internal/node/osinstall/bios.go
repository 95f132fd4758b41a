package osinstall

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
)

// BIOS boot (GRUB i386-pc on a GPT disk). The GPT's partition 6, EF_BIOS
// (type EF02), fills sectors 34–2047, the gap before the first 1 MiB-aligned
// partition; GRUB's core.img is written there and boot.img to the MBR's
// code area, as grub-bios-setup would do it: the MBR's partition table
// (GPT's protective entry) stays, boot.img learns core.img's first sector,
// and core.img's first sector (diskboot.img) learns where the rest is.
// core.img's embedded config is the EFI binary's, so BIOS machines load the
// same grub.cfg with the same boot assessment.
const (
	LabelBIOSBoot = "EF_BIOS"
	BIOSBootNum   = 6
	biosBootFirst = 34
	biosBootLast  = 2047

	// Offsets in boot.img (GRUB's include/grub/i386/pc/boot.h).
	bootBPBStart     = 0x03
	bootBPBEnd       = 0x5a
	bootKernelSector = 0x5c
	bootDriveCheck   = 0x66
	bootNTMagic      = 0x1b8
	bootPartEnd      = 0x1fe
	// diskboot.img's blocklist: the last 12 bytes of core.img's first
	// sector (start LBA u64, sector count u16, load segment u16).
	blocklistOffset = sectorSize - 12
)

// WriteBIOSBoot makes the installed disk at path bootable by BIOS
// firmware. Install calls it last, with the EFI binary: a disk whose
// install was cut short has no boot code.
func WriteBIOSBoot(path string, boot, core []byte) error {
	if len(boot) != sectorSize || !bytes.Equal(boot[510:], []byte{0x55, 0xaa}) {
		return fmt.Errorf("%s is not GRUB's boot.img: want one 512-byte boot sector", ImageGrubBIOSBoot)
	}
	sectors := (len(core) + sectorSize - 1) / sectorSize
	if sectors < 2 || sectors > biosBootLast-biosBootFirst+1 {
		return fmt.Errorf("%s has %d bytes; the BIOS boot partition holds %d sectors of 512 bytes", ImageGrubBIOSCore, len(core), biosBootLast-biosBootFirst+1)
	}
	core = append([]byte(nil), core...)
	core = append(core, make([]byte, sectors*sectorSize-len(core))...)
	if n := binary.LittleEndian.Uint16(core[blocklistOffset+8:]); int(n) != sectors-1 {
		return fmt.Errorf("%s is not an i386-pc core.img made by grub-mkimage (its blocklist says %d sectors, it has %d)", ImageGrubBIOSCore, n, sectors-1)
	}
	binary.LittleEndian.PutUint64(core[blocklistOffset:], biosBootFirst+1)

	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(core, biosBootFirst*sectorSize); err != nil {
		return fmt.Errorf("writing core.img: %w", err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	mbr := make([]byte, sectorSize)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		return fmt.Errorf("reading the MBR: %w", err)
	}
	code := append([]byte(nil), boot...)
	copy(code[bootBPBStart:bootBPBEnd], mbr[bootBPBStart:bootBPBEnd])
	copy(code[bootNTMagic:bootPartEnd], mbr[bootNTMagic:bootPartEnd])
	binary.LittleEndian.PutUint64(code[bootKernelSector:], biosBootFirst)
	// A hard disk: skip boot.img's check of the drive number the BIOS
	// passed (buggy BIOSes pass 0 or 1), as grub-bios-setup does.
	code[bootDriveCheck], code[bootDriveCheck+1] = 0x90, 0x90
	if _, err := f.WriteAt(code, 0); err != nil {
		return fmt.Errorf("writing the MBR: %w", err)
	}
	return f.Sync()
}
