package procfs

import (
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// FD returns what file descriptor fd of the process is, as
// /proc/PID/fd/N says: a path, "socket:[INODE]", "pipe:[INODE]"...
// (the link's text only: it is never followed).
func (p Proc) FD(fd int) (string, error) {
	s, err := os.Readlink(p.Path("fd/" + strconv.Itoa(fd)))
	if err != nil {
		return "", p.wrap("fd/"+strconv.Itoa(fd), err)
	}
	return s, nil
}

// tcpStates names the states of /proc/net/tcp (include/net/tcp_states.h).
var tcpStates = map[string]string{"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
	"05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}

// Socket describes the TCP or UDP socket of inode ino in the process's
// network namespace (/proc/PID/net/{tcp,tcp6,udp,udp6}): "tcp
// 127.0.0.1:40012 -> 127.0.0.1:5432 ESTABLISHED". ok is false when the
// socket is not an inet one (a Unix socket, say) or is not found.
func (p Proc) Socket(ino uint64) (desc string, ok bool) {
	want := strconv.FormatUint(ino, 10)
	for _, proto := range []string{"tcp", "tcp6", "udp", "udp6"} {
		b, err := p.readFile("net/" + proto)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[9] != want {
				continue
			}
			local, err1 := hexAddr(f[1])
			remote, err2 := hexAddr(f[2])
			if err1 != nil || err2 != nil {
				return "", false
			}
			s := fmt.Sprintf("%s %s -> %s", strings.TrimSuffix(proto, "6"), local, remote)
			if strings.HasPrefix(proto, "tcp") {
				if st := tcpStates[f[3]]; st != "" {
					s += " " + st
				}
			}
			return s, true
		}
	}
	return "", false
}

// hexAddr decodes an address of /proc/net/tcp: "0100007F:1538" (the IP
// as native-endian 32-bit words, the port big-endian).
func hexAddr(s string) (string, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return "", ErrParse
	}
	raw, err := hex.DecodeString(ipHex)
	if err != nil || len(raw) != 4 && len(raw) != 16 {
		return "", ErrParse
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return "", ErrParse
	}
	ip := make(net.IP, len(raw))
	for i := 0; i < len(raw); i += 4 { // each word is little-endian
		ip[i], ip[i+1], ip[i+2], ip[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(int(port))), nil
}
