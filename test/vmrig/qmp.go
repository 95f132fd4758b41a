package vmrig

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"time"
)

// qmp is a minimal client of QEMU's machine protocol (QMP) over a unix
// socket: one command at a time, asynchronous events skipped.
type qmp struct {
	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
}

type qmpReply struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string          `json:"event"`
	QMP   json.RawMessage `json:"QMP"`
}

// newQMP negotiates capabilities on a fresh monitor connection.
func newQMP(ctx context.Context, conn net.Conn) (*qmp, error) {
	q := &qmp{conn: conn, r: bufio.NewReader(conn)}
	// The greeting, then capabilities negotiation enters command mode.
	if _, err := q.read(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("QMP greeting: %w", err)
	}
	if _, err := q.Execute(ctx, "qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmp) read(ctx context.Context) (*qmpReply, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = q.conn.SetReadDeadline(dl)
	} else {
		_ = q.conn.SetReadDeadline(time.Now().Add(time.Minute))
	}
	line, err := q.r.ReadBytes('\n')
	if err != nil {
		return nil, err
	}
	var rep qmpReply
	if err := json.Unmarshal(line, &rep); err != nil {
		return nil, fmt.Errorf("QMP: bad message %q: %w", line, err)
	}
	return &rep, nil
}

// Execute runs a QMP command and returns its "return" value.
func (q *qmp) Execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	msg := map[string]any{"execute": command}
	if args != nil {
		msg["arguments"] = args
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("QMP %s: %w", command, err)
	}
	for {
		rep, err := q.read(ctx)
		if err != nil {
			return nil, fmt.Errorf("QMP %s: %w", command, err)
		}
		switch {
		case rep.Event != "":
			continue
		case rep.Error != nil:
			return nil, fmt.Errorf("QMP %s: %s: %s", command, rep.Error.Class, rep.Error.Desc)
		default:
			return rep.Return, nil
		}
	}
}

func (q *qmp) Close() error { return q.conn.Close() }
