package pyglass

// syscallNames names the x86-64 system calls a Python thread is commonly
// blocked in.
var syscallNames = map[int64]string{
	0: "read", 1: "write", 7: "poll", 23: "select", 35: "nanosleep", 42: "connect",
	43: "accept", 44: "sendto", 45: "recvfrom", 46: "sendmsg", 47: "recvmsg", 61: "wait4",
	202: "futex", 230: "clock_nanosleep", 232: "epoll_wait", 247: "waitid", 270: "pselect6",
	271: "ppoll", 281: "epoll_pwait", 288: "accept4", 441: "epoll_pwait2",
	219: "restart_syscall",
}

const sysFutex = 202
