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

// NetTables reads the process's socket tables (/proc/PID/net/tcp,
// tcp6, udp, udp6) once each, for a report that describes many
// descriptors: on a busy server a table is thousands of lines.
type NetTables struct {
	p      Proc
	tables map[string][]sockLine
}

// sockLine is the part of a socket table's line pyglass uses.
type sockLine struct {
	local, remote, state, inode string
}

// NetTables returns the process's socket tables, read when first used.
func (p Proc) NetTables() *NetTables {
	return &NetTables{p: p, tables: map[string][]sockLine{}}
}

func (t *NetTables) table(proto string) []sockLine {
	if lines, ok := t.tables[proto]; ok {
		return lines
	}
	var lines []sockLine
	if b, err := t.p.readFile("net/" + proto); err == nil {
		for _, line := range strings.Split(string(b), "\n")[1:] {
			if f := strings.Fields(line); len(f) >= 10 {
				lines = append(lines, sockLine{local: f[1], remote: f[2], state: f[3], inode: f[9]})
			}
		}
	}
	t.tables[proto] = lines
	return lines
}

// Socket describes the TCP or UDP socket of inode ino in the process's
// network namespace (/proc/PID/net/{tcp,tcp6,udp,udp6}): "tcp
// 127.0.0.1:40012 -> 127.0.0.1:5432 ESTABLISHED". ok is false when the
// socket is not an inet one (a Unix socket, say) or is not found.
func (t *NetTables) Socket(ino uint64) (desc string, ok bool) {
	want := strconv.FormatUint(ino, 10)
	for _, proto := range []string{"tcp", "tcp6", "udp", "udp6"} {
		for _, l := range t.table(proto) {
			if l.inode != want {
				continue
			}
			local, err1 := hexAddr(l.local)
			remote, err2 := hexAddr(l.remote)
			if err1 != nil || err2 != nil {
				return "", false
			}
			s := fmt.Sprintf("%s %s -> %s", strings.TrimSuffix(proto, "6"), local, remote)
			if strings.HasPrefix(proto, "tcp") {
				if st := tcpStates[l.state]; st != "" {
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
