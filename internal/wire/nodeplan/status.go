package nodeplan

import "time"

// Status is what the node agent reports in its MachineInventory's
// status.plan: the node's fields of machines.edgefleet.io/v1alpha1
// PlanStatus, with the same JSON names (a test in internal/node/agent checks
// that it decodes strictly into the API type). The node builds it here
// rather than from the API package so the node binary does not link
// apimachinery. Times are UTC, whole seconds.
type Status struct {
	AppliedChecksum      string           `json:"appliedChecksum,omitempty"`
	FailedChecksum       string           `json:"failedChecksum,omitempty"`
	Failure              *Failure         `json:"failure,omitempty"`
	Attempts             int32            `json:"attempts,omitempty"`
	NextRetryTime        *time.Time       `json:"nextRetryTime,omitempty"`
	LastAppliedTime      *time.Time       `json:"lastAppliedTime,omitempty"`
	Instructions         []InstructionRun `json:"instructions,omitempty"`
	PeriodicInstructions []PeriodicRun    `json:"periodicInstructions,omitempty"`
	Probes               []ProbeState     `json:"probes,omitempty"`
}

// Failure is why a plan failed on the machine.
type Failure struct {
	Instruction string     `json:"instruction,omitempty"`
	ExitCode    int32      `json:"exitCode,omitempty"`
	Message     string     `json:"message"`
	Output      string     `json:"output,omitempty"`
	Time        *time.Time `json:"time,omitempty"`
}

// InstructionRun is the last run of a one-time instruction.
type InstructionRun struct {
	Name                 string     `json:"name"`
	ExitCode             int32      `json:"exitCode"`
	Output               string     `json:"output,omitempty"`
	FinishedTime         *time.Time `json:"finishedTime,omitempty"`
	DurationMilliseconds int64      `json:"durationMilliseconds,omitempty"`
}

// PeriodicRun is the last run of a periodic instruction.
type PeriodicRun struct {
	Name            string     `json:"name"`
	ExitCode        int32      `json:"exitCode"`
	Output          string     `json:"output,omitempty"`
	LastRunTime     *time.Time `json:"lastRunTime,omitempty"`
	LastSuccessTime *time.Time `json:"lastSuccessTime,omitempty"`
	Failures        int32      `json:"failures,omitempty"`
}

// ProbeState is the state of one probe.
type ProbeState struct {
	Name         string `json:"name"`
	Healthy      bool   `json:"healthy"`
	SuccessCount int32  `json:"successCount,omitempty"`
	FailureCount int32  `json:"failureCount,omitempty"`
	LastError    string `json:"lastError,omitempty"`
}
