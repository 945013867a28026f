package procfs

import (
	"bytes"
	"testing"
)

// FuzzParsers: what pyglass parses of /proc is the kernel's, but parts of
// it are the target's to choose (its name, the paths of its mappings, a
// container's /etc/passwd); and a kernel newer than the parsers may add
// fields. Whatever the bytes, each parser returns an answer or an error,
// never a panic.
func FuzzParsers(f *testing.F) {
	f.Add([]byte("55d0c0a00000-55d0c0a01000 r-xp 00001000 fd:01 1234    /usr/bin/python3.13 (deleted)\n7ffd1000-7ffd2000 rw-p 00000000 00:00 0 [stack]\n"))
	f.Add([]byte("Name:\tpy\\nthon\nState:\tS (sleeping)\nTgid:\t42\nPPid:\t1\nTracerPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nNSpid:\t42\t1\nThreads:\t3\nSigBlk:\t0000000000000000\nSigCgt:\t0000000180004002\nCapEff:\t000001ffffffffff\n"))
	f.Add([]byte("42 (a) b) c) S 1 42 42 0 -1 4194304 100 0 0 0 5 3 0 0 20 0 3 0 12345 1000000 200 18446744073709551615 1 1 0 0 0 0 0 4096 2 0 0 0 17 1 0 0 0 0 0"))
	f.Add([]byte("202 0x7f0000001000 0x80 0x0 0x0 0x0 0x0 0x7ffd00001000 0x7f0000002000"))
	f.Add([]byte("root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n"))
	f.Add([]byte("se.exec_start                                :      12569410.100861\n"))
	f.Add([]byte("monotonic 100 200\nboottime 0 0\n"))
	f.Add([]byte("pos:\t0\nflags:\t02\nmnt_id:\t15\ntfd:        5 events:       19 data:                5  pos:0 ino:1234 sdev:8\n"))
	f.Add([]byte{9, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		s := string(b)
		ParseMaps(bytes.NewReader(b))
		ParseStatus(bytes.NewReader(b))
		ParseStat(b)
		ParseSyscall(s)
		ParseAuxv(b)
		LookupPasswd(b, 0)
		LookupPasswd(b, 65534)
		parseExecStart(b)
		parseMonotonicOffset(b)
		parseEpollFDs(s)
		parseUnixPeer(b, 1234)
		unescapeName(s)
		hexAddr(s)
	})
}
