package smtpd

import (
	"net"

	"golang.org/x/sys/unix"
)

// pendingInput says whether bytes from the peer are waiting to be read,
// without reading them (FIONREAD on the socket).
func pendingInput(c net.Conn) bool {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	raw.Control(func(fd uintptr) {
		n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	})
	return n > 0
}
