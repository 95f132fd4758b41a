package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/spf13/cobra"

	"github.com/edgefleet/edgefleet/internal/node/register"
)

// TestExitCodes: the exit code comes from the error RunE returns; no
// command calls os.Exit itself.
func TestExitCodes(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"success", nil, 0},
		{"failure", errors.New("boom"), 1},
		{"re-provisioning needed", &exitError{code: exitReprovision, err: fmt.Errorf("x: %w", register.ErrReprovisioningNeeded)}, exitReprovision},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := &cobra.Command{Use: "t", SilenceUsage: true, SilenceErrors: true, RunE: func(*cobra.Command, []string) error { return tt.err }}
			root.SetArgs([]string{})
			if got := run(context.Background(), root); got != tt.want {
				t.Errorf("run = %d, want %d", got, tt.want)
			}
		})
	}
}
