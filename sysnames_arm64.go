package pyglass

// syscallNames names the arm64 system calls a Python thread is commonly
// blocked in.
var syscallNames = map[int64]string{
	63: "read", 64: "write", 72: "pselect6", 73: "ppoll", 98: "futex", 101: "nanosleep",
	115: "clock_nanosleep", 203: "connect", 202: "accept", 206: "sendto", 207: "recvfrom",
	211: "sendmsg", 212: "recvmsg", 242: "accept4", 260: "wait4", 95: "waitid",
	22: "epoll_pwait", 441: "epoll_pwait2",
	128: "restart_syscall",
}

const sysFutex = 98
