package linuxfw

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The library (google/nftables) builds our messages, but its Flush asks
// the kernel to acknowledge every message and to echo every rule back,
// and reads those answers one at a time (two recvmsg and a fresh page
// each): for 200 paths that is some 1,200 reads, ~10 ms of a 65 ms
// apply. A batch is all or nothing, so
// one answer does: the kernel reports failed messages whether asked or
// not. So the library gets a connection (its WithTestDial hook) that
// hands us the batch, and we send it on our own socket asking for one
// acknowledgement, of the last message.

// nftablesMessage is the netlink type of an nf_tables message.
func nftablesMessage(msg int) netlink.HeaderType {
	return netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msg)
}

// batchConn is an nftables.Conn whose Flush goes through flush below.
type batchConn struct {
	*nftables.Conn
	sock *nlSocket
	err  error // the kernel's answer to the last batch
}

// newBatchConn builds a batch to be sent on sock.
func newBatchConn(sock *nlSocket) (*batchConn, error) {
	b := &batchConn{sock: sock}
	c, err := nftables.New(nftables.WithTestDial(b.exchange))
	if err != nil {
		return nil, err
	}
	b.Conn = c
	return b, nil
}

// exchange is the library's side of the connection: it is called once
// with the whole batch, and then once per message for its answer.
func (b *batchConn) exchange(req []netlink.Message) ([]netlink.Message, error) {
	if req == nil {
		// The answer the library waits for after each message: the
		// real one, for the whole batch, is in b.err.
		return []netlink.Message{{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 4)}}, nil
	}
	b.err = b.sock.sendBatch(req)
	return nil, nil
}

// flush sends the batch built so far, atomically: all of it takes
// effect or none.
func (b *batchConn) flush() error {
	b.err = nil
	if err := b.Conn.Flush(); err != nil {
		return err // the library could not build a message
	}
	return b.err
}

// nlSocket is a netlink socket of the netfilter family. It is not safe
// for concurrent use.
type nlSocket struct {
	fd  int
	seq uint32 // the last message's number
}

func dialNetfilter() (*nlSocket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("firewall: nftables: netlink socket: %w", err)
	}
	s := &nlSocket{fd: fd}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		s.close()
		return nil, fmt.Errorf("firewall: nftables: bind netlink socket: %w", err)
	}
	// A whole ruleset goes in one message batch, larger than the default
	// send buffer (EMSGSIZE); root may exceed wmem_max with FORCE.
	const size = 32 << 20
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size); err != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, size)
	}
	// Errors without a copy of the failed message (a set's elements can
	// be large), with the kernel's own words for what was wrong.
	unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	// The kernel answers before sendmsg returns; this only guards
	// against waiting for ever on an answer that never comes.
	tv := unix.NsecToTimeval((10 * time.Second).Nanoseconds())
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return s, nil
}

// close closes the socket. Closing a netfilter netlink socket waits for
// the kernel to free what the last batch replaced (an RCU grace period,
// ~10 ms): hence the backend keeps its socket, and a socket used once is
// closed in the background (closeLater).
func (s *nlSocket) close() { unix.Close(s.fd) }

func (s *nlSocket) closeLater() { go s.close() }

// nextSeq numbers a message: answers are told apart by their number, so
// that one left from an earlier batch is never taken for this one's.
func (s *nlSocket) nextSeq() uint32 {
	s.seq++
	return s.seq
}

// sendBatch sends msgs (a batch: begin, commands, end) and waits for the
// kernel's answer; its errors are for the caller to put in context. Only the last command asks for an acknowledgement and
// none for an echo: an error comes back for each command that failed,
// and the batch is then not applied.
func (s *nlSocket) sendBatch(msgs []netlink.Message) error {
	if len(msgs) < 3 {
		return nil // no commands between begin and end
	}
	var buf []byte
	first := s.seq + 1
	for i, m := range msgs {
		m.Header.Flags &^= netlink.Acknowledge | netlink.Echo
		if i == len(msgs)-2 {
			m.Header.Flags |= netlink.Acknowledge
		}
		buf = appendMessage(buf, m.Header.Type, m.Header.Flags, s.nextSeq(), m.Data)
	}
	if err := unix.Sendto(s.fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("send %d messages (%d bytes): %w", len(msgs)-2, len(buf), err)
	}
	last := s.seq - 1 // the last command's; s.seq is the batch's end
	var errs []error
	for {
		answers, err := s.receive()
		if err != nil {
			return fmt.Errorf("no answer: %w", err)
		}
		for _, a := range answers {
			code, text, ok := nlError(a)
			if !ok {
				continue
			}
			seq := a.Header.Seq
			if seq < first || seq > last {
				continue // an earlier batch's
			}
			if code != 0 {
				what := "batch"
				if i := int(seq - first); i > 0 {
					what = fmt.Sprintf("message %d of %d (%s)", i, len(msgs)-2, messageName(msgs[i].Header.Type))
				}
				if text != "" {
					text = " (" + text + ")"
				}
				errs = append(errs, fmt.Errorf("%s: %w%s", what, code, text))
			}
			// The last command's answer comes last; an error for the
			// batch as a whole (its begin, or the commit) ends it too.
			if seq == last || (seq == first && code != 0) {
				return errors.Join(errs...)
			}
		}
	}
}

func appendMessage(buf []byte, typ netlink.HeaderType, flags netlink.HeaderFlags, seq uint32, data []byte) []byte {
	n := unix.NLMSG_HDRLEN + len(data)
	buf = binary.NativeEndian.AppendUint32(buf, uint32(n))
	buf = binary.NativeEndian.AppendUint16(buf, uint16(typ))
	buf = binary.NativeEndian.AppendUint16(buf, uint16(flags))
	buf = binary.NativeEndian.AppendUint32(buf, seq)
	buf = binary.NativeEndian.AppendUint32(buf, 0) // the kernel fills in our port
	buf = append(buf, data...)
	for len(buf)%unix.NLMSG_ALIGNTO != 0 {
		buf = append(buf, 0)
	}
	return buf
}

func (s *nlSocket) receive() ([]syscall.NetlinkMessage, error) {
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(s.fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		return syscall.ParseNetlinkMessage(buf[:n])
	}
}

// nlError reads an NLMSG_ERROR answer: the error (0 for an
// acknowledgement) and the kernel's message, if any.
func nlError(m syscall.NetlinkMessage) (code syscall.Errno, text string, ok bool) {
	if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
		return 0, "", false
	}
	code = syscall.Errno(-int32(binary.NativeEndian.Uint32(m.Data)))
	// With NETLINK_CAP_ACK the failed message's header only, then the
	// extended acknowledgement's attributes.
	if m.Header.Flags&unix.NLM_F_ACK_TLVS != 0 && len(m.Data) >= 4+unix.NLMSG_HDRLEN {
		ad, err := netlink.NewAttributeDecoder(m.Data[4+unix.NLMSG_HDRLEN:])
		for err == nil && ad.Next() {
			if ad.Type() == unix.NLMSGERR_ATTR_MSG {
				text = ad.String()
			}
		}
	}
	return code, text, true
}

func messageName(t netlink.HeaderType) string {
	names := map[int]string{
		unix.NFT_MSG_NEWTABLE: "add table", unix.NFT_MSG_DELTABLE: "delete table",
		unix.NFT_MSG_NEWCHAIN: "add chain", unix.NFT_MSG_DELCHAIN: "delete chain",
		unix.NFT_MSG_NEWRULE: "add rule", unix.NFT_MSG_DELRULE: "delete rules",
		unix.NFT_MSG_NEWSET: "add set", unix.NFT_MSG_DELSET: "delete set",
		unix.NFT_MSG_NEWSETELEM: "add set elements", unix.NFT_MSG_DELSETELEM: "delete set elements",
	}
	if n, ok := names[int(t)&0xff]; ok {
		return n
	}
	return fmt.Sprintf("type %#x", int(t))
}

// nftaTableHandle is NFTA_TABLE_HANDLE, which x/sys/unix lacks.
const nftaTableHandle = 4

// tableHandle is the kernel's handle of the inet table named name; 0 if
// there is none. A table made anew gets a new handle (the kernel counts
// them up), so an unchanged handle is the table we made.
func (s *nlSocket) tableHandle(name string) (uint64, error) {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_TABLE_NAME, name)
	attrs, err := ae.Encode()
	if err != nil {
		return 0, err
	}
	data := append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, attrs...)
	seq := s.nextSeq()
	req := appendMessage(nil, nftablesMessage(unix.NFT_MSG_GETTABLE), netlink.Request|netlink.Acknowledge, seq, data)
	if err := unix.Sendto(s.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("firewall: nftables: ask for table %s: %w", name, err)
	}
	var handle uint64
	for {
		answers, err := s.receive()
		if err != nil {
			return 0, fmt.Errorf("firewall: nftables: ask for table %s: %w", name, err)
		}
		for _, a := range answers {
			if a.Header.Seq != seq {
				continue // an earlier batch's
			}
			if code, _, ok := nlError(a); ok {
				if code == unix.ENOENT {
					return 0, nil
				}
				if code != 0 {
					return 0, fmt.Errorf("firewall: nftables: ask for table %s: %w", name, code)
				}
				return handle, nil
			}
			if netlink.HeaderType(a.Header.Type) == nftablesMessage(unix.NFT_MSG_NEWTABLE) && len(a.Data) > 4 {
				ad, err := netlink.NewAttributeDecoder(a.Data[4:])
				for err == nil && ad.Next() {
					if ad.Type() == nftaTableHandle {
						ad.ByteOrder = binary.BigEndian
						handle = ad.Uint64()
					}
				}
			}
		}
	}
}
