package bundlereader

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
	ctrl "sigs.k8s.io/controller-runtime"
)

const (
	fleetYAMLName   = "fleet.yaml"
	fleetYMLName    = "fleet.yml" // Fleet's fallback spelling
	fleetIgnoreName = ".fleetignore"
	helmIgnoreName  = ".helmignore"
)

// bundleDir is a directory that becomes one bundle, with the files that
// belong to it.
type bundleDir struct {
	abs       string // absolute path
	display   string // path as the user gave it, for messages
	fleetYAML string // absolute path of its fleet.yaml, "" if none
	files     []bundleFile
}

type bundleFile struct {
	name    string // relative to the bundle dir, '/'-separated
	abs     string
	display string
	// checkYAML is false for Helm templates, which are not YAML before
	// rendering.
	checkYAML bool
}

func (d *bundleDir) hasYAMLFiles() bool {
	return slices.ContainsFunc(d.files, func(f bundleFile) bool { return isYAMLName(f.name) })
}

func isYAMLName(name string) bool {
	ext := strings.ToLower(path.Ext(name))
	return ext == ".yaml" || ext == ".yml"
}

// scanner walks one root path and splits it into bundle directories.
type scanner struct {
	ctx  context.Context
	dirs []*bundleDir
}

// scan finds the bundle directories under root: root itself when it has a
// fleet.yaml or YAML files of its own, and every subdirectory with a
// fleet.yaml. A subdirectory bundle's files are not part of its parent.
// .git and hidden files are skipped and .fleetignore files (gitignore
// syntax) apply to their directory and everything below it.
func scan(ctx context.Context, root, display string) ([]*bundleDir, error) {
	info, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", display, err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("%s is not a directory: pass the directory holding fleet.yaml or the manifests", display)
	}
	s := &scanner{ctx: ctx}
	top := &bundleDir{abs: root, display: display}
	s.dirs = append(s.dirs, top)
	if err := s.walk(root, display, nil, nil, top, false); err != nil {
		return nil, err
	}
	var out []*bundleDir
	for _, d := range s.dirs {
		if d == top && d.fleetYAML == "" && !d.hasYAMLFiles() {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

func (s *scanner) walk(dir, display string, rel []string, patterns []gitignore.Pattern, owner *bundleDir, inTemplates bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("reading %s: %w", display, err)
	}
	ignore, err := readFleetIgnore(filepath.Join(dir, fleetIgnoreName), rel)
	if err != nil {
		return fmt.Errorf("reading %s: %w", filepath.Join(display, fleetIgnoreName), err)
	}
	patterns = append(slices.Clip(patterns), ignore...)
	matcher := gitignore.NewMatcher(patterns)

	names := map[string]bool{}
	for _, e := range entries {
		names[e.Name()] = true
	}
	fleetYAML := ""
	switch {
	case names[fleetYAMLName]:
		fleetYAML = filepath.Join(dir, fleetYAMLName)
	case names[fleetYMLName]:
		fleetYAML = filepath.Join(dir, fleetYMLName)
	}
	if fleetYAML != "" && matcher.Match(append(slices.Clip(rel), filepath.Base(fleetYAML)), false) {
		fleetYAML = ""
	}
	if fleetYAML != "" {
		if len(rel) == 0 {
			owner.fleetYAML = fleetYAML
		} else {
			owner = &bundleDir{abs: dir, display: display, fleetYAML: fleetYAML}
			s.dirs = append(s.dirs, owner)
		}
	}
	isChart := names["Chart.yaml"]

	for _, e := range entries {
		name := e.Name()
		// Hidden files are skipped as in Fleet, except .helmignore, which
		// the renderer honours when it packages a local chart.
		if name == ".git" || (strings.HasPrefix(name, ".") && name != helmIgnoreName) {
			continue
		}
		full := filepath.Join(dir, name)
		shown := filepath.Join(display, name)
		isDir := e.IsDir()
		if e.Type()&fs.ModeSymlink != 0 {
			target, err := os.Stat(full)
			if err != nil {
				ctrl.LoggerFrom(s.ctx).V(1).Info("Skipping broken symlink", "path", shown)
				continue
			}
			if target.IsDir() {
				// Following directory links could loop or escape the tree.
				ctrl.LoggerFrom(s.ctx).V(1).Info("Skipping symlink to a directory", "path", shown)
				continue
			}
		} else if !isDir && !e.Type().IsRegular() {
			continue
		}
		childRel := append(slices.Clip(rel), name)
		if matcher.Match(childRel, isDir) {
			continue
		}
		if isDir {
			childTemplates := inTemplates || (isChart && name == "templates")
			if err := s.walk(full, shown, childRel, patterns, owner, childTemplates); err != nil {
				return err
			}
			continue
		}
		if filepath.Join(dir, name) == owner.fleetYAML {
			continue
		}
		relToOwner, err := filepath.Rel(owner.abs, full)
		if err != nil {
			return err
		}
		owner.files = append(owner.files, bundleFile{
			name:      filepath.ToSlash(relToOwner),
			abs:       full,
			display:   shown,
			checkYAML: !inTemplates,
		})
	}
	return nil
}

// readFleetIgnore parses a .fleetignore in gitignore syntax; its patterns
// apply below domain (the directory's path from the root).
func readFleetIgnore(file string, domain []string) ([]gitignore.Pattern, error) {
	data, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ps []gitignore.Pattern
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if !strings.HasSuffix(line, `\ `) {
			line = strings.TrimRight(line, " \t")
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		ps = append(ps, gitignore.ParsePattern(line, slices.Clone(domain)))
	}
	return ps, sc.Err()
}
