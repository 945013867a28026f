package procfs

// maxScanned bounds the processes PIDs lists.
const maxScanned = 1 << 20

// Descendants returns the PIDs of pid's children, their children and so
// on, found from the parent PIDs in /proc/*/stat (the kernel's
// /proc/PID/task/TID/children is not always built in). Processes that
// end during the scan are left out.
func Descendants(pid int) ([]int, error) {
	pids, err := PIDs()
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, p := range pids {
		st, err := New(p).Stat()
		if err != nil {
			continue
		}
		children[st.PPid] = append(children[st.PPid], p)
	}
	var out []int
	seen := map[int]bool{pid: true}
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	return out, nil
}
