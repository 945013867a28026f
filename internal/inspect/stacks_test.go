package inspect

import "testing"

// TestIsAgentThread: the agent's threads are told by their first frames,
// not by an agent frame anywhere: a program thread writing through the
// agent's sys.stdout router while a session runs keeps its name.
func TestIsAgentThread(t *testing.T) {
	f := func(file, fn string) Frame { return Frame{File: file, Function: fn} }
	cases := []struct {
		name   string
		frames []Frame
		want   bool
	}{
		{"runner", []Frame{f("<string>", "<module>"), f(agentFile, "<module>"), f(agentFile, "_start"), f(agentFile, "_serve")}, true},
		{"reader", []Frame{f(agentFile, "_reader_main"), f(agentFile, "_recv")}, true},
		{"reader-alone", []Frame{f(agentFile, "_reader_main")}, true},
		{"main-writing", []Frame{f("/app/x.py", "<module>"), f("/app/x.py", "main"), f(agentFile, "_make_out.<locals>.write")}, false},
		{"python-c-writing", []Frame{f("<string>", "<module>"), f(agentFile, "_make_out.<locals>.write")}, false},
		{"program", []Frame{f("/app/x.py", "<module>")}, false},
		{"none", nil, false},
	}
	for _, c := range cases {
		if got := isAgentThread(c.frames); got != c.want {
			t.Errorf("%s: isAgentThread = %v, want %v", c.name, got, c.want)
		}
	}
}
