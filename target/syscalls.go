package target

import "debug/elf"

// syscallNames names, per machine, the system calls a Python thread is
// commonly blocked in.
var syscallNames = map[elf.Machine]map[int64]string{
	elf.EM_X86_64: {
		0: "read", 1: "write", 7: "poll", 23: "select", 35: "nanosleep", 42: "connect",
		43: "accept", 44: "sendto", 45: "recvfrom", 46: "sendmsg", 47: "recvmsg", 61: "wait4",
		202: "futex", 230: "clock_nanosleep", 232: "epoll_wait", 247: "waitid", 270: "pselect6",
		271: "ppoll", 281: "epoll_pwait", 288: "accept4", 441: "epoll_pwait2",
		219: "restart_syscall",
	},
	elf.EM_AARCH64: {
		63: "read", 64: "write", 72: "pselect6", 73: "ppoll", 98: "futex", 101: "nanosleep",
		115: "clock_nanosleep", 203: "connect", 202: "accept", 206: "sendto", 207: "recvfrom",
		211: "sendmsg", 212: "recvmsg", 242: "accept4", 260: "wait4", 95: "waitid",
		22: "epoll_pwait", 441: "epoll_pwait2",
		128: "restart_syscall",
	},
}

// SyscallName names system call nr of machine (State.Syscall), "" when
// it is not one a Python thread is commonly blocked in.
func SyscallName(machine elf.Machine, nr int64) string {
	return syscallNames[machine][nr]
}

// Futex is the number of futex(2) on machine, -1 when unknown.
func Futex(machine elf.Machine) int64 {
	switch machine {
	case elf.EM_X86_64:
		return 202
	case elf.EM_AARCH64:
		return 98
	}
	return -1
}
