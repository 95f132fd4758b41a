package demo

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progress prints the step list: on a terminal the running step has a
// spinner and its elapsed time, redrawn in place; otherwise one plain line
// when a step starts and one when it ends, so logs and tests read it.
type progress struct {
	out   io.Writer
	tty   bool
	width int
	mu    sync.Mutex
	title string
	start time.Time
	stop  chan struct{}
	done  chan struct{}
	n     int
}

var spinnerFrames = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// begin starts a step (ending a running one as done).
func (p *progress) begin(title string) {
	p.end(nil)
	p.mu.Lock()
	p.n++
	p.title, p.start = fmt.Sprintf("%2d. %s", p.n, title), time.Now()
	p.mu.Unlock()
	if !p.tty {
		fmt.Fprintf(p.out, "[ .. ] %s\n", p.title)
		return
	}
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	go p.spin(p.stop, p.done)
}

func (p *progress) spin(stop, done chan struct{}) {
	defer close(done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		p.mu.Lock()
		line := fmt.Sprintf(" %s %s (%s)", spinnerFrames[i%len(spinnerFrames)], p.title, time.Since(p.start).Round(time.Second))
		fmt.Fprint(p.out, "\r\033[K"+cut(line, p.width-1))
		p.mu.Unlock()
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// end finishes the running step, if any: done when err is nil.
func (p *progress) end(err error) {
	p.mu.Lock()
	title := p.title
	p.title = ""
	p.mu.Unlock()
	if title == "" {
		return
	}
	if p.tty {
		close(p.stop)
		<-p.done
		fmt.Fprint(p.out, "\r\033[K")
	}
	took := time.Since(p.start).Round(100 * time.Millisecond)
	if err != nil {
		fmt.Fprintf(p.out, "[FAIL] %s (%s): %v\n", title, took, err)
		return
	}
	fmt.Fprintf(p.out, "[ OK ] %s (%s)\n", title, took)
}

// note prints a line between steps (warnings, what is simulated).
func (p *progress) note(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.title != "" {
		fmt.Fprint(p.out, "\r\033[K")
	}
	fmt.Fprintf(p.out, "       "+format+"\n", args...)
}

// cut shortens s to width runes with an ellipsis (width < 1: unchanged).
func cut(s string, width int) string {
	r := []rune(s)
	if width < 1 || len(r) <= width {
		return s
	}
	return string(r[:width-1]) + "…"
}
