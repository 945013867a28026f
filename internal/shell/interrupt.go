package shell

import (
	"os"
	"os/signal"
)

// Interrupts turns SIGINT (Ctrl-C while no line is being edited) into
// interrupt requests for the code running in the target (see
// agent.AwaitOptions), instead of ending pyglass. stop ends it.
func Interrupts() (requests <-chan struct{}, stop func()) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt)
	intr := make(chan struct{}, 4)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-sigs:
				select {
				case intr <- struct{}{}:
				default:
				}
			case <-done:
				return
			}
		}
	}()
	return intr, func() { signal.Stop(sigs); close(done) }
}
