package machinereg

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// Timeout bounds every read and write, like Elemental's 10 s deadline, so a
// stalled peer cannot hold a connection open.
const Timeout = 30 * time.Second

// Conn sends and receives protocol messages over a websocket.
type Conn struct {
	WS *websocket.Conn
}

// NewConn wraps ws and sets the read limit to MaxMessageBytes.
func NewConn(ws *websocket.Conn) *Conn {
	ws.SetReadLimit(MaxMessageBytes)
	return &Conn{WS: ws}
}

// Send writes one message.
func (c *Conn) Send(m *Message) error {
	data, err := Encode(m)
	if err != nil {
		return err
	}
	_ = c.WS.SetWriteDeadline(time.Now().Add(Timeout))
	return c.WS.WriteMessage(websocket.TextMessage, data)
}

// Receive reads one message and checks its type is one of want. An Error
// message from the peer is returned as *Error.
func (c *Conn) Receive(want ...string) (*Message, error) {
	_ = c.WS.SetReadDeadline(time.Now().Add(Timeout))
	kind, data, err := c.WS.ReadMessage()
	if err != nil {
		if errors.Is(err, websocket.ErrReadLimit) {
			return nil, &Error{Code: CodeBadMessage, Message: fmt.Sprintf("message larger than %d bytes", MaxMessageBytes)}
		}
		return nil, err
	}
	if kind != websocket.TextMessage {
		return nil, &Error{Code: CodeBadMessage, Message: "messages must be text frames holding JSON"}
	}
	m, err := Decode(data)
	if err != nil {
		return nil, &Error{Code: CodeBadMessage, Message: err.Error()}
	}
	if m.Type == TypeError {
		return nil, m.Error
	}
	for _, w := range want {
		if m.Type == w {
			return m, nil
		}
	}
	return nil, &Error{Code: CodeBadMessage, Message: fmt.Sprintf("got a %s message, expected %v", m.Type, want)}
}

// Fail sends an Error message and closes the connection with a close code
// matching it.
func (c *Conn) Fail(e *Error) {
	_ = c.Send(&Message{Type: TypeError, Error: e})
	code := websocket.ClosePolicyViolation
	switch e.Code {
	case CodeBadMessage:
		code = websocket.CloseProtocolError
		if strings.Contains(e.Message, "larger than") || strings.Contains(e.Message, "more than the limit") {
			code = websocket.CloseMessageTooBig
		}
	case CodeInternal:
		code = websocket.CloseInternalServerErr
	}
	reason := e.Message
	if len(reason) > 120 { // close reasons must fit a control frame
		reason = reason[:120]
	}
	_ = c.WS.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	_ = c.WS.Close()
}

// Close ends a successful exchange.
func (c *Conn) Close() {
	_ = c.WS.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	_ = c.WS.Close()
}
