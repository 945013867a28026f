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
		whole  bool
		want   bool
	}{
		{"runner", []Frame{f("<string>", "<module>"), f(agentFile, "<module>"), f(agentFile, "_start"), f(agentFile, "_serve")}, true, true},
		{"reader", []Frame{f(agentFile, "_reader_main"), f(agentFile, "_recv")}, true, true},
		{"reader-alone", []Frame{f(agentFile, "_reader_main")}, true, true},
		{"main-writing", []Frame{f("/app/x.py", "<module>"), f("/app/x.py", "main"), f(agentFile, "_make_out.<locals>.write")}, true, false},
		{"python-c-writing", []Frame{f("<string>", "<module>"), f(agentFile, "_make_out.<locals>.write")}, true, false},
		{"program", []Frame{f("/app/x.py", "<module>")}, true, false},
		{"none", nil, true, false},
		// Read in part (an error, or too deep): the outermost frames are
		// missing.
		{"runner-cut", []Frame{f("/app/deep.py", "f"), f(agentFile, "_serve"), f(agentFile, "_op_exec"), f("/app/deep.py", "g")}, false, true},
		{"reader-cut", []Frame{f(agentFile, "_reader_main"), f(agentFile, "_recv")}, false, true},
		{"main-writing-cut", []Frame{f("/app/x.py", "main"), f(agentFile, "_make_out.<locals>.write"), f(agentFile, "_write")}, false, false},
		{"runner-cut-whole", []Frame{f("/app/deep.py", "f"), f(agentFile, "_serve")}, true, false},
	}
	for _, c := range cases {
		if got := isAgentThread(c.frames, c.whole); got != c.want {
			t.Errorf("%s: isAgentThread = %v, want %v", c.name, got, c.want)
		}
	}
}
