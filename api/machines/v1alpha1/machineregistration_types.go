/*
Copyright 2026 The edgefleet Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// RegistrationAuth is how a machine proves its identity when it registers.
// +kubebuilder:validation:Enum=tpm;tpm-or-fallback;mac;sys-uuid
type RegistrationAuth string

const (
	// AuthTPM identifies machines by their TPM endorsement key, proved by a
	// credential-activation challenge. This is the default.
	AuthTPM RegistrationAuth = "tpm"
	// AuthTPMOrFallback uses the TPM when the machine has one and otherwise
	// the first available method listed in fallback.
	AuthTPMOrFallback RegistrationAuth = "tpm-or-fallback"
	// AuthMAC identifies machines by the MAC address of their first network
	// interface. It proves nothing; use only on trusted networks.
	AuthMAC RegistrationAuth = "mac"
	// AuthSysUUID identifies machines by their SMBIOS system UUID. It proves
	// nothing; use only on trusted networks.
	AuthSysUUID RegistrationAuth = "sys-uuid"
)

// FallbackAuth is an identity method used by tpm-or-fallback on machines
// without a TPM.
// +kubebuilder:validation:Enum=emulated-tpm;mac;sys-uuid
type FallbackAuth string

const (
	// FallbackEmulatedTPM uses a software TPM seeded per machine.
	FallbackEmulatedTPM FallbackAuth = "emulated-tpm"
	// FallbackMAC uses the MAC address of the first network interface.
	FallbackMAC FallbackAuth = "mac"
	// FallbackSysUUID uses the SMBIOS system UUID.
	FallbackSysUUID FallbackAuth = "sys-uuid"
)

// MachineRegistration is a registration endpoint for machines. Boot a machine
// from media that carries the registration URL (see SeedImage): it registers,
// gets a MachineInventory named after machineName and labelled from
// machineInventoryLabels, then installs the OS as set in config.install.
// The layout of config follows Rancher Elemental's MachineRegistration.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=mreg,categories={edgefleet,machines}
// +kubebuilder:printcolumn:name="Token Secret",type=string,JSONPath=`.status.tokenSecretName`
// +kubebuilder:printcolumn:name="Token Expires",type=date,JSONPath=`.status.tokenExpiresAt`,priority=10
// +kubebuilder:printcolumn:name="Max Machines",type=integer,JSONPath=`.spec.maxMachines`,priority=10
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=10
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MachineRegistration struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec describes how registering machines are named, labelled, installed
	// and authenticated.
	// +optional
	Spec MachineRegistrationSpec `json:"spec,omitzero"`

	// status publishes the registration URL.
	// +optional
	Status MachineRegistrationStatus `json:"status,omitzero"`
}

// MachineRegistrationSpec is the desired state of a MachineRegistration.
type MachineRegistrationSpec struct {
	// machineName is a template for the name of each registered machine's
	// MachineInventory (and its hostname). ${Section/Key} is replaced by the
	// machine's SMBIOS data, e.g. "m-${System Information/UUID}". The result
	// is lowercased, characters other than [0-9a-z.-] become "-", and it is
	// truncated to 58 characters. Defaults to "m-${System Information/UUID}".
	// +optional
	// +kubebuilder:validation:MaxLength=253
	MachineName string `json:"machineName,omitempty"`

	// machineInventoryLabels are set on each registered machine's
	// MachineInventory. Values are templates like machineName, e.g.
	// "${System Information/Manufacturer}"; a label whose template cannot be
	// resolved is skipped.
	// +optional
	MachineInventoryLabels map[string]string `json:"machineInventoryLabels,omitempty"`

	// machineInventoryAnnotations are set on each registered machine's
	// MachineInventory. Values are templates like machineName.
	// +optional
	MachineInventoryAnnotations map[string]string `json:"machineInventoryAnnotations,omitempty"`

	// config is handed to the registered machines: the cloud-config applied
	// on the installed system, and the install and registration settings.
	// +optional
	Config MachineRegistrationConfig `json:"config,omitzero"`

	// token configures the registration token (the secret part of the
	// registration URL): its lifetime and rotation.
	// +optional
	Token RegistrationTokenSpec `json:"token,omitzero"`

	// tpm sets which TPMs are trusted when machines register with auth tpm.
	// +optional
	TPM TPMTrustPolicy `json:"tpm,omitzero"`

	// maxMachines is the most MachineInventories this registration creates;
	// a new machine beyond it is refused (machines already registered keep
	// re-registering). Defaults to 1000.
	// +optional
	// +kubebuilder:default=1000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	MaxMachines int32 `json:"maxMachines,omitempty"`
}

// DefaultMaxMachines is spec.maxMachines when unset.
const DefaultMaxMachines = 1000

// RegistrationTokenSpec configures a registration token.
type RegistrationTokenSpec struct {
	// ttl is how long a token is valid for new machines after it is issued,
	// e.g. "720h". Unset: it does not expire. Machines already registered
	// through it with a TPM or emulated TPM keep re-registering after expiry
	// (they prove their identity); new machines, and mac/sys-uuid machines,
	// are refused.
	// +optional
	TTL *metav1.Duration `json:"ttl,omitempty"`

	// rotation: setting it to a new value replaces the token. The old token
	// stops working at once, for every machine; machines must be given the
	// new URL (new seed media, or registration.url in their config).
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Rotation string `json:"rotation,omitempty"`
}

// TPMTrustPolicy sets which TPM endorsement keys (EKs) are trusted.
type TPMTrustPolicy struct {
	// trustOnFirstUse accepts a TPM that is not known yet and has no EK
	// certificate chaining to the namespace's tpm-ca Secret: any TPM that
	// holds the registration URL becomes a machine. Without it (the default),
	// a TPM is accepted only when its EK certificate chains to the CAs in
	// Secret tpm-ca, or when a MachineInventory with its tpmHash exists
	// (pre-created by an admin, or registered earlier).
	// +optional
	TrustOnFirstUse bool `json:"trustOnFirstUse,omitempty"`
}

// MachineRegistrationConfig is the configuration handed to registered
// machines.
type MachineRegistrationConfig struct {
	// cloud-config is applied on the installed system at boot, in cloud-init
	// or yip syntax, e.g. {users: [{name: root, passwd: ...}]}. It is not
	// applied during installation.
	// +optional
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	CloudConfig *runtime.RawExtension `json:"cloud-config,omitempty"`

	// install configures the OS installation on registered machines.
	// +optional
	Install *InstallConfig `json:"install,omitempty"`

	// registration configures how machines authenticate when they register.
	// +optional
	Registration *RegistrationConfig `json:"registration,omitempty"`

	// reset configures what deleting a machine's MachineInventory does to
	// the machine.
	// +optional
	Reset *ResetConfig `json:"reset,omitempty"`

	// elemental holds the same settings in Rancher Elemental's layout
	// (config.elemental.install, .registration, .reset, .system-agent), so
	// an Elemental MachineRegistration works unchanged. Each section may be
	// set here or at the top of config; when both are set they must be
	// equal, or the registration is not Ready (InvalidSpec) and machines get
	// neither.
	// +optional
	Elemental *ElementalConfig `json:"elemental,omitempty"`
}

// ElementalConfig is config.elemental of an Elemental MachineRegistration.
type ElementalConfig struct {
	// install: see config.install.
	// +optional
	Install *InstallConfig `json:"install,omitempty"`

	// registration: see config.registration.
	// +optional
	Registration *RegistrationConfig `json:"registration,omitempty"`

	// reset: see config.reset.
	// +optional
	Reset *ResetConfig `json:"reset,omitempty"`

	// system-agent is filled in by Elemental's server, not by users. It is
	// accepted so Elemental registrations apply unchanged, and ignored:
	// each edgefleet machine gets its own credential at registration.
	// +optional
	SystemAgent *SystemAgentConfig `json:"system-agent,omitempty"`
}

// SystemAgentConfig is Elemental's config.elemental.system-agent, accepted
// and ignored.
type SystemAgentConfig struct {
	// url of Rancher's API for elemental-system-agent.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	URL string `json:"url,omitempty"`
	// token of the registration's ServiceAccount.
	// +optional
	// +kubebuilder:validation:MaxLength=8192
	Token string `json:"token,omitempty"`
	// secret-name of the machine's plan Secret.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	SecretName string `json:"secret-name,omitempty"`
	// secret-namespace of the machine's plan Secret.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	SecretNamespace string `json:"secret-namespace,omitempty"`
	// strictTLSMode makes the agent refuse a server without CA data.
	// +optional
	StrictTLSMode bool `json:"strictTLSMode,omitempty"`
}

// ResetConfig configures a machine reset (Elemental's reset settings): when
// the MachineInventory of a machine that allows reset is deleted, the machine
// boots its recovery image, rebuilds its OS from it, wipes what is
// configured and registers again as a new machine.
type ResetConfig struct {
	// enabled allows the reset; without it deleting the MachineInventory
	// only removes the machine from the manager (it must re-register by
	// hand).
	// +optional
	Enabled bool `json:"enabled,omitempty"`

	// reset-persistent wipes the persistent partition (/var/lib, /home,
	// /etc changes). Defaults to true. When false only the node's own state
	// is removed.
	// +optional
	ResetPersistent *bool `json:"reset-persistent,omitempty"`

	// reset-oem removes the cloud-config files from the OEM partition
	// (the node config with the registration URL stays). Defaults to true.
	// +optional
	ResetOEM *bool `json:"reset-oem,omitempty"`

	// reboot reboots the machine when the reset is done. Defaults to true.
	// +optional
	Reboot *bool `json:"reboot,omitempty"`

	// poweroff powers the machine off when the reset is done (instead of
	// rebooting).
	// +optional
	PowerOff bool `json:"poweroff,omitempty"`

	// config-urls are cloud-config files written to the machine after the
	// reset, as install's.
	// +optional
	// +listType=atomic
	ConfigURLs []string `json:"config-urls,omitempty"`

	// system-uri is accepted for Elemental compatibility; the reset always
	// restores the recovery image.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	SystemURI string `json:"system-uri,omitempty"`

	// debug is Elemental's verbose reset; accepted and ignored.
	// +optional
	Debug bool `json:"debug,omitempty"`

	// disable-boot-entry is Elemental's; accepted and ignored.
	// +optional
	DisableBootEntry bool `json:"disable-boot-entry,omitempty"`
}

// InstallConfig configures the OS installation. Field names match Elemental's
// install settings.
type InstallConfig struct {
	// device is the disk to install to, e.g. "/dev/sda". It takes precedence
	// over device-selector.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Device string `json:"device,omitempty"`

	// device-selector picks the disk to install to from the machine's disks.
	// All requirements must match; when several disks match, one of them is
	// used.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	DeviceSelector []DeviceSelectorRequirement `json:"device-selector,omitempty"`

	// reboot reboots the machine after installation.
	// +optional
	Reboot bool `json:"reboot,omitempty"`

	// poweroff powers the machine off after installation.
	// +optional
	PowerOff bool `json:"poweroff,omitempty"`

	// system-uri is the OS image to install, e.g. "oci:registry.example.com/os:v1".
	// Ignored when iso is set.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	SystemURI string `json:"system-uri,omitempty"`

	// iso is the URL of an ISO to install the OS from. It takes precedence
	// over system-uri.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	ISO string `json:"iso,omitempty"`

	// config-urls are URLs or paths of additional cloud-config files copied to
	// the installed system.
	// +optional
	// +listType=atomic
	ConfigURLs []string `json:"config-urls,omitempty"`

	// debug enables verbose installer output.
	// +optional
	Debug bool `json:"debug,omitempty"`

	// firmware is the firmware type to install for, e.g. "efi" (the default).
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Firmware string `json:"firmware,omitempty"`

	// disable-boot-entry skips creating an EFI boot entry.
	// +optional
	DisableBootEntry bool `json:"disable-boot-entry,omitempty"`

	// no-format, tty, eject-cd, config-dir and snapshotter are Elemental
	// install settings, accepted so Elemental registrations apply unchanged
	// and ignored: edgefleet always partitions (A/B squashfs slots, see
	// docs/os/install.md).
	// +optional
	NoFormat bool `json:"no-format,omitempty"`

	// tty is Elemental's console setting; accepted and ignored.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	TTY string `json:"tty,omitempty"`

	// eject-cd is Elemental's eject-after-install; accepted and ignored.
	// +optional
	EjectCD bool `json:"eject-cd,omitempty"`

	// config-dir is Elemental's extra config directory; accepted and
	// ignored.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	ConfigDir string `json:"config-dir,omitempty"`

	// snapshotter is Elemental's snapshotter; accepted and ignored.
	// +optional
	Snapshotter *SnapshotterConfig `json:"snapshotter,omitempty"`
}

// SnapshotterConfig is Elemental's install.snapshotter, accepted and ignored.
type SnapshotterConfig struct {
	// type is loopdevice or btrfs.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Type string `json:"type,omitempty"`
	// maxSnaps is how many snapshots Elemental keeps.
	// +optional
	MaxSnaps int32 `json:"maxSnaps,omitempty"`
}

// DeviceSelectorRequirement is one requirement a disk must meet to be picked
// for installation.
type DeviceSelectorRequirement struct {
	// key is the disk property compared: Name (e.g. "/dev/sda") or Size (in
	// bytes, or with a unit such as "100Gi").
	// +required
	// +kubebuilder:validation:Enum=Name;Size
	Key string `json:"key,omitempty"`

	// operator relates key to values: In and NotIn for Name or Size, Gt and Lt
	// for Size (with a single value).
	// +required
	// +kubebuilder:validation:Enum=In;NotIn;Gt;Lt
	Operator string `json:"operator,omitempty"`

	// values compared against key.
	// +optional
	// +listType=atomic
	Values []string `json:"values,omitempty"`
}

// RegistrationConfig configures how machines authenticate when they register.
// +kubebuilder:validation:XValidation:rule="!has(self.fallback) || (has(self.auth) && self.auth == 'tpm-or-fallback')",message="fallback can only be set when auth is tpm-or-fallback"
// +kubebuilder:validation:XValidation:rule="!has(self.auth) || self.auth != 'tpm-or-fallback' || (has(self.fallback) && size(self.fallback) > 0)",message="auth tpm-or-fallback needs a fallback list, e.g. fallback: [emulated-tpm] or [mac] (machines without a TPM use it); for TPM only, use auth: tpm"
type RegistrationConfig struct {
	// auth is how machines prove their identity: tpm (the default),
	// tpm-or-fallback, mac or sys-uuid. Only tpm proves the machine's identity
	// cryptographically.
	// +optional
	Auth RegistrationAuth `json:"auth,omitempty"`

	// fallback lists, in order of preference, the methods tpm-or-fallback uses
	// on machines without a TPM.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=3
	Fallback []FallbackAuth `json:"fallback,omitempty"`

	// emulate-tpm makes machines use a software TPM instead of a hardware one.
	// For development and testing only.
	// +optional
	EmulateTPM bool `json:"emulate-tpm,omitempty"`

	// emulated-tpm-seed seeds the software TPM. -1 derives a distinct seed per
	// machine; any other value gives every machine the same identity, so only
	// one of them can register.
	// +optional
	// +kubebuilder:validation:Minimum=-1
	EmulatedTPMSeed int64 `json:"emulated-tpm-seed,omitempty"`

	// no-smbios stops machines from sending their SMBIOS data; templates that
	// use it then fall back to defaults.
	// +optional
	NoSMBIOS bool `json:"no-smbios,omitempty"`
}

// MachineRegistrationStatus is the observed state of a MachineRegistration.
type MachineRegistrationStatus struct {
	// tokenSecretName is the Secret (in this namespace) holding the
	// registration token ("token") and the URL machines register at
	// ("url"), which holds the token. Bake it into installation media with a
	// SeedImage. The token is a credential and is never shown in status.
	// +optional
	TokenSecretName string `json:"tokenSecretName,omitempty"`

	// registrationEndpoint is the registration URL without its token:
	// machines register at <registrationEndpoint><token>.
	// +optional
	RegistrationEndpoint string `json:"registrationEndpoint,omitempty"`

	// tokenHash is the hex SHA-256 of the current token, which the manager
	// looks registrations up by; it does not reveal the token.
	// +optional
	TokenHash string `json:"tokenHash,omitempty"`

	// tokenIssuedAt is when the current token was issued.
	// +optional
	TokenIssuedAt *metav1.Time `json:"tokenIssuedAt,omitempty"`

	// tokenExpiresAt is when the current token stops admitting new machines
	// (spec.token.ttl after tokenIssuedAt); unset when it does not expire.
	// +optional
	TokenExpiresAt *metav1.Time `json:"tokenExpiresAt,omitempty"`

	// tokenRotation is the spec.token.rotation the current token was issued
	// for.
	// +optional
	TokenRotation string `json:"tokenRotation,omitempty"`

	// effectiveAuth is the auth policy in force: the node auth methods this
	// registration accepts, in the order a node tries them (tpm,
	// emulated-tpm, mac, sys-uuid), after defaults (auth tpm when unset)
	// and emulate-tpm.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	EffectiveAuth []string `json:"effectiveAuth,omitempty"`

	// conditions describe the registration's current state: Ready, and
	// Reconciling or Stalled while they are True.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec last reconciled
	// successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// ObjectReference refers to an object by name and, optionally, namespace.
type ObjectReference struct {
	// name of the object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`

	// namespace of the object. Defaults to the namespace of the referring
	// object.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
}

// +kubebuilder:object:root=true

// MachineRegistrationList is a list of MachineRegistrations.
type MachineRegistrationList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MachineRegistration `json:"items"`
}

// GetConditions returns the registration's status conditions.
func (in *MachineRegistration) GetConditions() []metav1.Condition {
	return in.Status.Conditions
}

// SetConditions replaces the registration's status conditions.
func (in *MachineRegistration) SetConditions(conditions []metav1.Condition) {
	in.Status.Conditions = conditions
}
