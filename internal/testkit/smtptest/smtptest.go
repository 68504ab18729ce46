// Package smtptest is a fake SMTP server for tests: the outside world a program sends
// its e-mail to. It listens on a free loopback port, speaks enough SMTP for net/smtp
// and similar clients (HELO/EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT), records every
// message it accepts, and can be told to fail (a 4xx or 5xx reply to MAIL, or refusing
// sessions with 421) and to recover, or to be slow, so that retries and crashes can be
// tested without a real mail server.
package smtptest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// maxMessage bounds one message's data; a client sending more is answered 552.
const maxMessage = 10 << 20

// Message is one accepted message.
type Message struct {
	From     string   // the envelope sender (MAIL FROM)
	To       []string // the envelope recipients (RCPT TO)
	Data     []byte   // the message as sent after DATA, dot-unstuffed, CRLF line ends
	Header   mail.Header
	Body     []byte // Data after the header
	Received time.Time
}

// Parts returns the decoded bodies of a multipart message by content type without
// parameters ("text/plain", "text/html"); a single-part message is its own one part.
// Quoted-printable parts are decoded. It fails when the MIME structure is broken.
func (m Message) Parts() (map[string]string, error) {
	mediaType, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		return nil, fmt.Errorf("smtptest: Content-Type: %w", err)
	}
	if !strings.HasPrefix(mediaType, "multipart/") {
		return map[string]string{mediaType: string(m.Body)}, nil
	}
	parts := map[string]string{}
	r := multipart.NewReader(bytes.NewReader(m.Body), params["boundary"])
	for {
		p, err := r.NextPart() // decodes quoted-printable transparently
		if errors.Is(err, io.EOF) {
			return parts, nil
		}
		if err != nil {
			return nil, fmt.Errorf("smtptest: multipart: %w", err)
		}
		pt, _, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if err != nil {
			return nil, fmt.Errorf("smtptest: part Content-Type: %w", err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return nil, fmt.Errorf("smtptest: part body: %w", err)
		}
		parts[pt] = string(b)
	}
}

// Server is a running fake SMTP server. Its methods are safe for concurrent use.
type Server struct {
	ln   net.Listener
	addr string

	mu       sync.Mutex
	messages []Message
	mailFail string // the reply to MAIL while failing, "" when healthy
	refuse   bool
	delay    time.Duration
	rejected int
	conns    map[net.Conn]struct{}
	closed   bool
	done     chan struct{} // closed by Close
	wg       sync.WaitGroup
}

// Start listens on a free loopback port and serves until Close.
func Start() (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("smtptest: listen: %w", err)
	}
	s := &Server{ln: ln, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// New starts a server that is closed when t ends.
func New(t testing.TB) *Server {
	t.Helper()
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Addr is the server's host:port, what the program's SMTP_ADDR should be.
func (s *Server) Addr() string { return s.addr }

// Close stops listening, drops open sessions and waits for them to end.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	_ = s.ln.Close()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// FailMail makes the server answer MAIL FROM with code and text (e.g. 451 "try again
// later" for a transient failure, 550 for a permanent one) until Recover.
func (s *Server) FailMail(code int, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mailFail = fmt.Sprintf("%d %s", code, text)
}

// Refuse makes the server turn every new session away with a 421 greeting, and close
// it, until Recover: SMTP's way of saying "not now".
func (s *Server) Refuse() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse = true
}

// Recover undoes FailMail and Refuse.
func (s *Server) Recover() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mailFail, s.refuse = "", false
}

// SetDelay makes the server wait d after receiving a message's data before it answers
// 250. The message is recorded before the wait, like a real server that has taken the
// message when the client goes away before reading the reply: a client killed in the
// wait has sent a message it does not know was accepted.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Messages is every message accepted so far, oldest first.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// To is the messages accepted so far with rcpt among their envelope recipients.
func (s *Server) To(rcpt string) []Message {
	var out []Message
	for _, m := range s.Messages() {
		for _, r := range m.To {
			if strings.EqualFold(r, rcpt) {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// Rejected counts the MAIL commands answered with the FailMail reply and the sessions
// refused.
func (s *Server) Rejected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected
}

// WaitFor polls until at least n messages have been accepted and returns them, or
// fails when timeout passes first.
func (s *Server) WaitFor(n int, timeout time.Duration) ([]Message, error) {
	deadline := time.Now().Add(timeout)
	for {
		msgs := s.Messages()
		if len(msgs) >= n {
			return msgs, nil
		}
		if time.Now().After(deadline) {
			return msgs, fmt.Errorf("smtptest: %d of %d messages within %s", len(msgs), n, timeout)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				_ = c.Close()
			}()
			s.serve(c)
		}()
	}
}

// session is the state of one SMTP conversation.
type session struct {
	from    string
	to      []string
	hasFrom bool
}

func (s *Server) serve(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Minute)) // a stuck test client cannot hang Close
	tp := textproto.NewConn(c)
	s.mu.Lock()
	refuse := s.refuse
	if refuse {
		s.rejected++
	}
	s.mu.Unlock()
	if refuse {
		_ = tp.PrintfLine("421 4.3.2 smtptest: service not available")
		return
	}
	if tp.PrintfLine("220 smtptest ESMTP ready") != nil {
		return
	}
	var st session
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "HELO":
			err = tp.PrintfLine("250 smtptest")
		case "EHLO":
			err = tp.PrintfLine("250-smtptest greets %s\r\n250 8BITMIME", arg)
		case "NOOP":
			err = tp.PrintfLine("250 2.0.0 OK")
		case "RSET":
			st = session{}
			err = tp.PrintfLine("250 2.0.0 OK")
		case "QUIT":
			_ = tp.PrintfLine("221 2.0.0 bye")
			return
		case "MAIL":
			err = s.mail(tp, &st, arg)
		case "RCPT":
			err = s.rcpt(tp, &st, arg)
		case "DATA":
			err = s.data(tp, &st)
		default:
			err = tp.PrintfLine("502 5.5.2 command not implemented")
		}
		if err != nil {
			return
		}
	}
}

func (s *Server) mail(tp *textproto.Conn, st *session, arg string) error {
	s.mu.Lock()
	fail := s.mailFail
	if fail != "" {
		s.rejected++
	}
	s.mu.Unlock()
	if fail != "" {
		return tp.PrintfLine("%s", fail)
	}
	addr, ok := pathArg(arg, "FROM:")
	if !ok {
		return tp.PrintfLine("501 5.5.4 syntax: MAIL FROM:<address>")
	}
	*st = session{from: addr, hasFrom: true}
	return tp.PrintfLine("250 2.1.0 OK")
}

func (s *Server) rcpt(tp *textproto.Conn, st *session, arg string) error {
	if !st.hasFrom {
		return tp.PrintfLine("503 5.5.1 MAIL first")
	}
	addr, ok := pathArg(arg, "TO:")
	if !ok || addr == "" {
		return tp.PrintfLine("501 5.5.4 syntax: RCPT TO:<address>")
	}
	st.to = append(st.to, addr)
	return tp.PrintfLine("250 2.1.5 OK")
}

func (s *Server) data(tp *textproto.Conn, st *session) error {
	if !st.hasFrom || len(st.to) == 0 {
		return tp.PrintfLine("503 5.5.1 MAIL and RCPT first")
	}
	if err := tp.PrintfLine("354 end data with <CR><LF>.<CR><LF>"); err != nil {
		return err
	}
	raw, err := io.ReadAll(io.LimitReader(tp.DotReader(), maxMessage+1))
	if err != nil {
		return err
	}
	if len(raw) > maxMessage {
		*st = session{}
		return tp.PrintfLine("552 5.3.4 message too big")
	}
	raw = crlf(raw) // DotReader turns CRLF into LF; keep the wire form
	m := Message{From: st.from, To: st.to, Data: raw, Received: time.Now()}
	if parsed, err := mail.ReadMessage(bytes.NewReader(raw)); err == nil {
		m.Header = parsed.Header
		m.Body, _ = io.ReadAll(parsed.Body)
	} else {
		m.Header = mail.Header{}
	}
	s.mu.Lock()
	s.messages = append(s.messages, m)
	delay := s.delay
	s.mu.Unlock()
	*st = session{}
	if delay > 0 { // the simulated slow server
		select {
		case <-s.done:
			return errors.New("closed")
		case <-time.After(delay):
		}
	}
	return tp.PrintfLine("250 2.0.0 OK queued")
}

// pathArg reads "FROM:<addr> params" (or TO:), tolerating a space after the colon.
func pathArg(arg, prefix string) (string, bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", false
	}
	rest := strings.TrimSpace(arg[len(prefix):])
	if !strings.HasPrefix(rest, "<") {
		return "", false
	}
	end := strings.IndexByte(rest, '>')
	if end < 0 {
		return "", false
	}
	return rest[1:end], true
}

// crlf turns bare LF line ends into CRLF.
func crlf(b []byte) []byte {
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), maxMessage+1)
	for sc.Scan() {
		out.Write(bytes.TrimSuffix(sc.Bytes(), []byte("\r")))
		out.WriteString("\r\n")
	}
	return out.Bytes()
}
