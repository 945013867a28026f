package pyglass

func (p *Process) gilHolder() (string, bool) { return "", false }
