package bundlereader

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
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
// belong to it. Paths named "path" are relative to the tree's root and are
// only ever opened through it.
type bundleDir struct {
	abs       string // absolute path, for bundle names only
	path      string // relative to the root ("" is the root itself)
	display   string // path as the user gave it, for messages
	fleetYAML string // root-relative path of its fleet.yaml, "" if none
	// fleetYAMLOverridden: Options.FleetYAML replaces the directory's own
	// fleet.yaml (which is then not one of its files either).
	fleetYAMLOverridden bool
	files               []bundleFile
}

type bundleFile struct {
	name    string // relative to the bundle dir, '/'-separated
	path    string // relative to the root
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
	t    *tree
	dirs []*bundleDir
}

// scan finds the bundle directories under dir (root-relative): dir itself
// when it has a fleet.yaml or YAML files of its own, and every
// subdirectory with a fleet.yaml. A subdirectory bundle's files are not
// part of its parent. .git and hidden files are skipped and .fleetignore
// files (gitignore syntax) apply to their directory and everything below
// it. A symbolic link that leaves the tree's root is an error naming it.
//
// With override (Options.FleetYAML), dir is a bundle whatever it holds.
func scan(ctx context.Context, t *tree, dir, display string, override bool) ([]*bundleDir, error) {
	info, err := t.stat(dir, display)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("%s is not a directory: pass the directory holding fleet.yaml or the manifests", display)
	}
	s := &scanner{ctx: ctx, t: t}
	top := &bundleDir{abs: filepath.Join(t.abs, dir), path: dir, display: display, fleetYAMLOverridden: override}
	s.dirs = append(s.dirs, top)
	if err := s.walk(dir, display, nil, nil, top, false); err != nil {
		return nil, err
	}
	var out []*bundleDir
	for _, d := range s.dirs {
		if d == top && !override && d.fleetYAML == "" && !d.hasYAMLFiles() {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

func (s *scanner) walk(dir, display string, rel []string, patterns []gitignore.Pattern, owner *bundleDir, inTemplates bool) error {
	entries, err := s.t.readDir(dir, display)
	if err != nil {
		return err
	}
	names := map[string]fs.DirEntry{}
	for _, e := range entries {
		names[e.Name()] = e
	}
	var ignore []gitignore.Pattern
	if e, ok := names[fleetIgnoreName]; ok && !e.IsDir() {
		if ignore, err = s.readFleetIgnore(filepath.Join(dir, fleetIgnoreName), filepath.Join(display, fleetIgnoreName), rel); err != nil {
			return err
		}
	}
	patterns = append(slices.Clip(patterns), ignore...)
	matcher := gitignore.NewMatcher(patterns)

	fleetYAML := ""
	for _, n := range []string{fleetYAMLName, fleetYMLName} {
		if _, ok := names[n]; ok {
			fleetYAML = n
			break
		}
	}
	if fleetYAML != "" && matcher.Match(append(slices.Clip(rel), fleetYAML), false) {
		fleetYAML = ""
	}
	if fleetYAML != "" {
		fleetYAML = filepath.Join(dir, fleetYAML)
		if len(rel) == 0 {
			owner.fleetYAML = fleetYAML
		} else {
			owner = &bundleDir{abs: filepath.Join(s.t.abs, dir), path: dir, display: display, fleetYAML: fleetYAML}
			s.dirs = append(s.dirs, owner)
		}
	}
	_, isChart := names["Chart.yaml"]

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
			keep, err := s.followLink(full, shown)
			if err != nil {
				return err
			}
			if !keep {
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
		if full == owner.fleetYAML {
			continue
		}
		relToOwner, err := filepath.Rel(owner.path, full)
		if owner.path == "" {
			relToOwner, err = full, nil
		}
		if err != nil {
			return err
		}
		owner.files = append(owner.files, bundleFile{
			name:      filepath.ToSlash(relToOwner),
			path:      full,
			display:   shown,
			checkYAML: !inTemplates,
		})
	}
	return nil
}

// followLink decides about a symbolic link: one to a regular file inside
// the root is read like a file; a broken one is skipped, as is one to a
// directory (following them could loop); one that leaves the root is an
// error, whatever it points to.
func (s *scanner) followLink(name, shown string) (bool, error) {
	target, err := s.t.stat(name, shown)
	switch {
	case isEscape(err):
		return false, err
	case errors.Is(err, fs.ErrNotExist):
		ctrl.LoggerFrom(s.ctx).V(1).Info("Skipping broken symlink", "path", shown)
		return false, nil
	case err != nil:
		return false, err
	case target.IsDir():
		ctrl.LoggerFrom(s.ctx).V(1).Info("Skipping symlink to a directory", "path", shown)
		return false, nil
	case !target.Mode().IsRegular():
		return false, nil
	}
	return true, nil
}

// readFleetIgnore parses a .fleetignore in gitignore syntax; its patterns
// apply below domain (the directory's path from the root).
func (s *scanner) readFleetIgnore(name, shown string, domain []string) ([]gitignore.Pattern, error) {
	data, err := s.t.readFile(name, shown, s.t.budget.limits.MaxFleetYAMLBytes, "a .fleetignore")
	if errors.Is(err, fs.ErrNotExist) {
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
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", shown, err)
	}
	return ps, nil
}
