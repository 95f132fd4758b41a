package machinereg

// SMBIOSFields are the SMBIOS values a node sends in Inventory.Data: the
// template path (dmidecode's section and key names, as Elemental writes
// them) → the file under /sys/class/dmi/id the node reads it from. The
// manager's label preview (`edgefleet machine labels`) keeps exactly these
// keys of a dmidecode dump, so a template that works in the preview works
// on the machine.
var SMBIOSFields = map[string]string{
	"System Information/Manufacturer":      "sys_vendor",
	"System Information/Product Name":      "product_name",
	"System Information/Version":           "product_version",
	"System Information/Serial Number":     "product_serial",
	"System Information/UUID":              "product_uuid",
	"System Information/SKU Number":        "product_sku",
	"System Information/Family":            "product_family",
	"BIOS Information/Vendor":              "bios_vendor",
	"BIOS Information/Version":             "bios_version",
	"BIOS Information/Release Date":        "bios_date",
	"Base Board Information/Manufacturer":  "board_vendor",
	"Base Board Information/Product Name":  "board_name",
	"Base Board Information/Version":       "board_version",
	"Base Board Information/Serial Number": "board_serial",
	"Base Board Information/Asset Tag":     "board_asset_tag",
	"Chassis Information/Manufacturer":     "chassis_vendor",
	"Chassis Information/Type":             "chassis_type",
	"Chassis Information/Serial Number":    "chassis_serial",
	"Chassis Information/Asset Tag":        "chassis_asset_tag",
}
