package pyglass

func (p *Process) threadNames() map[int]string { return nil }
