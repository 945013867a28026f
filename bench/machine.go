package main

import (
	"fmt"
	"os"
	"sort"
	"syscall"
	"time"
)

// minorFaults is the minor page faults of a finished command (its
// children's included), 0 when not known.
func minorFaults(st *os.ProcessState) int64 {
	if st == nil {
		return 0
	}
	if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
		return ru.Minflt
	}
	return 0
}

// pageTouchCost is what this machine takes to touch a fresh anonymous
// page the first time (the page fault and the zeroing), the median of 5
// rounds of 1,024 pages. Starting a process is mostly such faults: on a
// virtual machine that shadows the guest's page tables one costs ten to
// thirty times what it does on bare metal, and every command's start
// time with it.
func pageTouchCost() (time.Duration, error) {
	const pages = 1024
	size := pages * os.Getpagesize()
	var costs []time.Duration
	for round := 0; round < 5; round++ {
		b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
		if err != nil {
			return 0, err
		}
		start := time.Now()
		for i := 0; i < size; i += os.Getpagesize() {
			b[i] = 1
		}
		costs = append(costs, time.Since(start)/pages)
		syscall.Munmap(b)
	}
	sort.Slice(costs, func(i, j int) bool { return costs[i] < costs[j] })
	return costs[len(costs)/2], nil
}

// machineLine says what a page fault costs here, to read the times
// against: a command's minor faults (the faults column) times this cost
// is a floor on its time.
func machineLine() string {
	d, err := pageTouchCost()
	if err != nil {
		return fmt.Sprintf("machine: page fault cost not measured: %v", err)
	}
	return fmt.Sprintf("machine: first touch of a fresh page %.1f µs (median of 5 × 1,024 pages; well under 1 µs on bare metal)", float64(d)/float64(time.Microsecond))
}
