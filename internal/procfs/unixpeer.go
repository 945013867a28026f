package procfs

import (
	"encoding/binary"
	"syscall"
	"time"
)

// unix_diag (include/uapi/linux/unix_diag.h).
const (
	udiagShowPeer = 0x4 // UDIAG_SHOW_PEER
	unixDiagPeer  = 2   // UNIX_DIAG_PEER
	sockDiagByFam = 20  // SOCK_DIAG_BY_FAMILY
	netlinkDiag   = 4   // NETLINK_SOCK_DIAG
)

// UnixPeer returns the inode of the other end of the Unix socket of inode
// ino, asked of the kernel's sock_diag (/proc/net/unix does not say it):
// the socket must be in pyglass's network namespace. ok is false when the
// kernel does not say (no such socket, not connected).
func UnixPeer(ino uint64) (peer uint64, ok bool) {
	if ino == 0 || ino > 0xffffffff {
		return 0, false
	}
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, netlinkDiag)
	if err != nil {
		return 0, false
	}
	defer syscall.Close(fd)
	tv := syscall.NsecToTimeval(int64(time.Second))
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	// nlmsghdr (16) + unix_diag_req (24).
	req := make([]byte, 40)
	le := binary.LittleEndian
	le.PutUint32(req[0:], 40)
	le.PutUint16(req[4:], sockDiagByFam)
	le.PutUint16(req[6:], syscall.NLM_F_REQUEST)
	le.PutUint32(req[8:], 1) // seq
	req[16] = syscall.AF_UNIX
	le.PutUint32(req[20:], 0xffffffff) // every state
	le.PutUint32(req[24:], uint32(ino))
	le.PutUint32(req[28:], udiagShowPeer)
	le.PutUint32(req[32:], 0xffffffff) // no cookie
	le.PutUint32(req[36:], 0xffffffff)
	if err := syscall.Sendto(fd, req, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return 0, false
	}
	buf := make([]byte, 8192)
	n, _, err := syscall.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, false
	}
	return parseUnixPeer(buf[:n], ino)
}

// parseUnixPeer reads the UNIX_DIAG_PEER attribute of the answer about
// ino: nlmsghdr, unix_diag_msg (16 bytes), then attributes.
func parseUnixPeer(b []byte, ino uint64) (uint64, bool) {
	le := binary.LittleEndian
	if len(b) < 32 {
		return 0, false
	}
	mlen := int(le.Uint32(b[0:]))
	if le.Uint16(b[4:]) != sockDiagByFam || mlen < 32 || mlen > len(b) || uint64(le.Uint32(b[20:])) != ino {
		return 0, false
	}
	for off := 32; off+4 <= mlen; {
		alen := int(le.Uint16(b[off:]))
		if alen < 4 || off+alen > mlen {
			return 0, false
		}
		if le.Uint16(b[off+2:]) == unixDiagPeer && alen >= 8 {
			p := uint64(le.Uint32(b[off+4:]))
			return p, p != 0
		}
		off += (alen + 3) &^ 3
	}
	return 0, false
}
