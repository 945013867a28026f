package elfsym

import (
	"strings"

	"github.com/ianlancetaylor/demangle"
)

// maxMangled bounds the length of a name given to the demangler (a
// hostile file's names are not expanded without end).
const maxMangled = 4096

// Demangle returns the C++ (Itanium ABI) name mangled as name, as
// c++filt shows it ("ns::Class::method(int)"), or name itself when it is
// no mangled C++ name or cannot be demangled.
func Demangle(name string) (out string) {
	if !strings.HasPrefix(name, "_Z") || len(name) > maxMangled {
		return name
	}
	// The demangler reports bad input as errors; a panic it might still
	// raise on a hostile name leaves the name as it is.
	defer func() {
		if recover() != nil {
			out = name
		}
	}()
	d, err := demangle.ToString(name)
	if err != nil {
		return name
	}
	return d
}
